package dev.cmc.runtime.train;

import dev.cmc.dsl.Spec;
import dev.cmc.runtime.api.ConsistencyModel;
import dev.cmc.runtime.cuda.CudaBackend;
import dev.cmc.runtime.cuda.CudaDevices;
import dev.cmc.runtime.cuda.SimulatedCudaBackend;
import dev.cmc.runtime.jvm.JvmBackend;
import org.junit.jupiter.api.Assumptions;
import org.junit.jupiter.api.Test;

import java.util.List;
import java.util.Random;

import static org.junit.jupiter.api.Assertions.assertTrue;

/**
 * CT steps of the cuda backend's PTX follow the jvm backend's loss curve, same seed: 200 steps on each NVIDIA
 * GPU where there is one, and the first 40 in the PTX simulator on every machine (it interprets every thread),
 * both with the GEMMs cmc runs fp32 with by default (3xTF32).
 * <p>
 * Unlike OpenCL, the PTX does not mirror the jvm kernels operation for operation (warp-shuffle row sums, the
 * SFU's exp and sin, 3xTF32 products), and this training is chaotic: moving every initial weight of the jvm's
 * own run by one ulp moves single losses by up to 7.7e-3 over the first 100 steps and by up to 120% after,
 * and the mean loss of steps 101-200 by up to 6.1% (six such runs, 2026-11-27). No backend that rounds
 * differently can follow the second half step for step, so a GPU is held to the first 100 steps one by one
 * (5e-2, what an H200 met through step 106) and to the second half's mean (15%) and each of its 50-step
 * means (20%); {@link #theJvmsOwnSpreadFitsTheseTolerances} keeps those bounds honest on every machine.
 */
class CudaTrainingTest {
    private static final int STEPS = 200, EARLY = 100;
    private static final double EARLY_TOLERANCE = 5e-2, LATE_MEAN_TOLERANCE = 0.15, LATE_HALVES_TOLERANCE = 0.20;

    private static List<Float> jvmCurve(Spec spec, int steps, long perturbSeed) {
        try (var model = ConsistencyModel.build(spec, new JvmBackend(2))) {
            if (perturbSeed != 0) nudgeEveryWeight(model, perturbSeed);
            return OpenClTrainingTest.curve(model, spec, steps);
        }
    }

    /** Moves each initial weight (and its target and EMA copies) one ulp up or down. */
    private static void nudgeEveryWeight(ConsistencyModel model, long seed) {
        float[] p = model.params();
        var random = new Random(seed);
        for (int i = 0; i < p.length; i++) p[i] = random.nextBoolean() ? Math.nextUp(p[i]) : Math.nextDown(p[i]);
        System.arraycopy(p, 0, model.target(), 0, p.length);
        System.arraycopy(p, 0, model.ema(), 0, p.length);
        model.weightsChanged();
    }

    /** How far one loss curve strays from another: per step over the first 100, then in means over the rest. */
    record Drift(double earlyStep, int earlyAt, double lateMean, double lateHalf) {
        static Drift of(List<Float> got, List<Float> ref) {
            double early = 0;
            int at = 0;
            for (int i = 0; i < Math.min(EARLY, ref.size()); i++) {
                double rel = Math.abs(got.get(i) - ref.get(i)) / Math.abs(ref.get(i));
                if (rel > early || Double.isNaN(rel)) { early = rel; at = i + 1; }
            }
            double half = Math.max(meanGap(got, ref, EARLY, EARLY + 50), meanGap(got, ref, EARLY + 50, STEPS));
            return new Drift(early, at, meanGap(got, ref, EARLY, STEPS), half);
        }

        private static double meanGap(List<Float> got, List<Float> ref, int from, int to) {
            if (ref.size() < to) return 0;
            double a = 0, b = 0;
            for (int i = from; i < to; i++) { a += got.get(i); b += ref.get(i); }
            return Math.abs(a - b) / Math.abs(b);
        }

        @Override
        public String toString() {
            return String.format("steps 1-%d within %.2e of the jvm's (most at step %d), steps %d-%d's mean within %.2e, each 50-step mean within %.2e",
                    EARLY, earlyStep, earlyAt, EARLY + 1, STEPS, lateMean, lateHalf);
        }
    }

    @Test
    void simulatedPtxFollowsTheJvmLossCurve() {
        Spec spec = OpenClTrainingTest.spec();
        List<Float> jvm = jvmCurve(spec, 40, 0), ptx;
        try (var model = ConsistencyModel.build(spec, new SimulatedCudaBackend(CudaBackend.fp32Matmul()))) {
            ptx = OpenClTrainingTest.curve(model, spec, 40);
        }
        var drift = Drift.of(ptx, jvm);
        assertTrue(drift.earlyStep() <= 1e-3, "simulated PTX, " + CudaBackend.fp32Matmul().description + ": " + drift);
    }

    /** One ulp on every initial weight moves the jvm's curve less than a GPU is allowed to stray (see the class comment). */
    @Test
    void theJvmsOwnSpreadFitsTheseTolerances() {
        Spec spec = OpenClTrainingTest.spec();
        var drift = Drift.of(jvmCurve(spec, STEPS, 3), jvmCurve(spec, STEPS, 0));
        assertTrue(drift.earlyStep() <= EARLY_TOLERANCE / 4 && drift.lateMean() <= LATE_MEAN_TOLERANCE / 2
                && drift.lateHalf() <= LATE_HALVES_TOLERANCE / 2, "the jvm with its weights one ulp apart: " + drift);
        // ...while the curves it compares are no copies: the nudge is felt by the end.
        assertTrue(drift.lateMean() > 1e-3, "one ulp on every weight left the curve unmoved: " + drift);
    }

    @Test
    void eachGpuFollowsTheJvmLossCurve() {
        String why = CudaDevices.unavailable();
        Assumptions.assumeTrue(why == null, "cuda on a GPU skipped: " + why);
        Spec spec = OpenClTrainingTest.spec();
        List<Float> jvm = jvmCurve(spec, STEPS, 0);
        for (var d : CudaDevices.list()) {
            if (d.major() < 8) continue;
            List<Float> gpu;
            try (var model = ConsistencyModel.build(spec, new CudaBackend(d.index()))) {
                gpu = OpenClTrainingTest.curve(model, spec, STEPS);
            }
            var drift = Drift.of(gpu, jvm);
            System.out.println("CudaTrainingTest: " + d.name() + ": " + drift);
            assertTrue(drift.earlyStep() <= EARLY_TOLERANCE && drift.lateMean() <= LATE_MEAN_TOLERANCE
                    && drift.lateHalf() <= LATE_HALVES_TOLERANCE, d.name() + ": " + drift);
            double first = gpu.subList(0, 25).stream().mapToDouble(Float::doubleValue).average().orElseThrow();
            double last = gpu.subList(STEPS - 50, STEPS).stream().mapToDouble(Float::doubleValue).average().orElseThrow();
            assertTrue(last < first / 4, d.name() + ": the loss fell from " + first + " (steps 1-25) to only " + last + " (steps 151-200)");
        }
    }
}
