package dev.cmc.runtime.train;

import dev.cmc.dsl.Spec;
import dev.cmc.runtime.api.ConsistencyModel;
import dev.cmc.runtime.jvm.JvmBackend;
import dev.cmc.runtime.tornado.TornadoBackend;
import dev.cmc.runtime.tornado.TornadoSdk;
import org.junit.jupiter.api.Assumptions;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

import java.nio.file.Path;
import java.util.List;

import static org.junit.jupiter.api.Assertions.*;

/**
 * Training through TornadoVM (where an SDK is installed: TORNADOVM_HOME) follows the jvm backend's loss
 * curve within 1e-3 relative over 200 steps, same seed, and its device state round-trips through a checkpoint.
 */
class TornadoTrainingTest {
    @Test
    void twoHundredStepsFollowTheJvmLossCurve(@TempDir Path dir) throws Exception {
        String why = TornadoSdk.unavailable();
        Assumptions.assumeTrue(why == null, "tornado skipped: " + why);
        Spec spec = OpenClTrainingTest.spec();
        List<Float> jvm;
        try (var model = ConsistencyModel.build(spec, new JvmBackend(2))) {
            jvm = OpenClTrainingTest.curve(model, spec);
        }
        try (var model = ConsistencyModel.build(spec, new TornadoBackend())) {
            List<Float> tornado = OpenClTrainingTest.curve(model, spec);
            double worst = 0;
            for (int i = 0; i < jvm.size(); i++) {
                double rel = Math.abs(tornado.get(i) - jvm.get(i)) / Math.abs(jvm.get(i));
                worst = Math.max(worst, rel);
                assertTrue(rel <= 1e-3, "TornadoVM: step " + (i + 1) + " loss " + tornado.get(i) + " vs jvm " + jvm.get(i));
            }
            System.out.printf("TornadoTrainingTest: 200 steps within %.2e of the jvm curve%n", worst);
            Path ckpt = dir.resolve("tornado.safetensors");
            Checkpoint.save(model, ckpt);
            try (var again = ConsistencyModel.build(spec, new TornadoBackend())) {
                Checkpoint.load(again, ckpt);
                assertArrayEquals(model.params(), again.params());
                assertEquals(200, again.step());
            }
        }
    }
}
