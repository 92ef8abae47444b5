package dev.cmc.runtime.train;

import dev.cmc.dsl.Spec;
import dev.cmc.dsl.SpecLoader;
import dev.cmc.runtime.api.ConsistencyModel;
import dev.cmc.runtime.data.Datasets;
import dev.cmc.runtime.jvm.JvmBackend;
import dev.cmc.runtime.opencl.OpenClBackend;
import dev.cmc.runtime.opencl.OpenClDevices;
import org.junit.jupiter.api.Assumptions;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

import java.nio.file.Path;
import java.util.ArrayList;
import java.util.List;

import static org.junit.jupiter.api.Assertions.*;

/** Training on each OpenCL device follows the jvm backend's loss curve, step for step. */
class OpenClTrainingTest {
    static Spec spec() {
        return SpecLoader.fromText("cl.cm", """
                model cl { input_dim = 2; hidden_size = 32; num_layers = 2; }
                train { method = ct; steps = 200; batch_size = 64; lr = 1e-3; seed = 5; }
                data { source = "builtin:eight_gaussians"; samples = 2000; }
                """);
    }

    static List<Float> curve(ConsistencyModel model, Spec spec) {
        return curve(model, spec, 200);
    }

    static List<Float> curve(ConsistencyModel model, Spec spec, int steps) {
        var losses = new ArrayList<Float>();
        new Trainer(model, Datasets.load(spec, 1), 5, 1).run(steps, (s, t, loss, n) -> losses.add(loss));
        return losses;
    }

    @Test
    void twoHundredStepsFollowTheJvmLossCurve(@TempDir Path dir) throws Exception {
        String why = OpenClDevices.unavailable();
        Assumptions.assumeTrue(why == null, "OpenCL skipped: " + why);
        Spec spec = spec();
        List<Float> jvm;
        try (var model = ConsistencyModel.build(spec, new JvmBackend(2))) {
            jvm = curve(model, spec);
        }
        for (var device : OpenClDevices.list()) {
            try (var model = ConsistencyModel.build(spec, new OpenClBackend(device.index()))) {
                List<Float> cl = curve(model, spec);
                for (int i = 0; i < jvm.size(); i++) {
                    double rel = Math.abs(cl.get(i) - jvm.get(i)) / Math.abs(jvm.get(i));
                    assertTrue(rel <= 1e-3, device.name() + ": step " + (i + 1) + " loss " + cl.get(i) + " vs jvm " + jvm.get(i));
                }
                // The device's state comes back for checkpoints, and goes up again after a load.
                Path ckpt = dir.resolve("cl.safetensors");
                Checkpoint.save(model, ckpt);
                try (var again = ConsistencyModel.build(spec, new OpenClBackend(device.index()))) {
                    Checkpoint.load(again, ckpt);
                    assertArrayEquals(model.params(), again.params());
                    assertEquals(200, again.step());
                }
            }
        }
    }
}
