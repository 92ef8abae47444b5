package dev.cmc.runtime.train;

import dev.cmc.dsl.Spec;
import dev.cmc.runtime.Backend;
import dev.cmc.runtime.api.ConsistencyModel;
import dev.cmc.runtime.cuda.CudaBackend;
import dev.cmc.runtime.cuda.CudaDevices;
import dev.cmc.runtime.cuda.SimulatedCudaBackend;
import dev.cmc.runtime.jvm.JvmBackend;
import org.junit.jupiter.api.Assumptions;
import org.junit.jupiter.api.Test;

import java.util.List;

import static org.junit.jupiter.api.Assertions.assertTrue;

/**
 * CT steps of the cuda backend's PTX follow the jvm backend's loss curve, same seed: 200 steps on each NVIDIA
 * GPU where there is one, and the first 40 in the PTX simulator on every machine (it interprets every thread).
 * Unlike OpenCL, the PTX does not mirror the jvm kernels operation for operation (warp-shuffle row sums, the
 * SFU's exp and sin), so the curves drift apart slowly: 1.6e-3 relative by step 115 in the simulator.
 */
class CudaTrainingTest {
    private static void follows(Backend backend, String what, int steps, double tolerance) {
        Spec spec = OpenClTrainingTest.spec();
        List<Float> jvm, other;
        try (var model = ConsistencyModel.build(spec, new JvmBackend(2))) {
            jvm = OpenClTrainingTest.curve(model, spec, steps);
        }
        try (var model = ConsistencyModel.build(spec, backend)) {
            other = OpenClTrainingTest.curve(model, spec, steps);
        }
        for (int i = 0; i < jvm.size(); i++) {
            double rel = Math.abs(other.get(i) - jvm.get(i)) / Math.abs(jvm.get(i));
            assertTrue(rel <= tolerance, what + ": step " + (i + 1) + " loss " + other.get(i) + " vs jvm " + jvm.get(i));
        }
    }

    @Test
    void simulatedPtxFollowsTheJvmLossCurve() {
        follows(new SimulatedCudaBackend(), "simulated PTX", 40, 1e-3);
    }

    @Test
    void eachGpuFollowsTheJvmLossCurve() {
        String why = CudaDevices.unavailable();
        Assumptions.assumeTrue(why == null, "cuda on a GPU skipped: " + why);
        for (var d : CudaDevices.list()) if (d.major() >= 8) follows(new CudaBackend(d.index()), d.name(), 200, 1e-2);
    }
}
