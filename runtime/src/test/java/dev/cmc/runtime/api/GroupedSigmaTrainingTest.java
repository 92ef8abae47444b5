package dev.cmc.runtime.api;

import dev.cmc.compile.Compiler;
import dev.cmc.dsl.Spec;
import dev.cmc.dsl.SpecLoader;
import dev.cmc.runtime.jvm.JvmBackend;
import dev.cmc.runtime.train.Schedules;
import org.junit.jupiter.api.Test;

import java.util.SplittableRandom;

import static org.junit.jupiter.api.Assertions.*;

/**
 * The library's training step embeds σ once per distinct value where the grid is small against the batch. Its
 * loss, taken before the update, must be the consistency loss of the same batch evaluated row by row through
 * the denoiser: that holds only if each step's σ tables, indices and groups reach the right inputs.
 */
class GroupedSigmaTrainingTest {
    static final int BATCH = 64;

    static Spec spec() {
        return SpecLoader.fromText("g.cm", """
                model g { input_dim = 2; hidden_size = 32; num_layers = 2; }
                train { method = ct; s1 = 20; batch_size = 64; lr = 1e-3; seed = 3; }
                data { source = "builtin:none"; }
                """);
    }

    @Test
    void eachStepsLossIsTheRowByRowConsistencyLoss() {
        Spec spec = spec();
        assertEquals(20, Compiler.sigmaRows(spec, BATCH), "a grid of 21 levels, at most 20 distinct σ against 64 rows");
        double[] grid = Schedules.karras(21, spec.model().sigmaMin(), spec.model().sigmaMax(), spec.schedule().rho());
        try (var model = ConsistencyModel.build(spec, new JvmBackend(2))) {
            var rng = new SplittableRandom(9);
            for (int step = 0; step < 5; step++) {
                float[][] batch = batch(rng, i -> rng.nextInt(grid.length - 1), grid);
                assertSameLoss(model, batch);
            }
            // σ off any grid: 64 distinct values, more than the table holds; the step is rebuilt to embed per row.
            float[][] continuous = batch(rng, i -> -1, grid);
            for (int i = 0; i < BATCH; i++) { continuous[3][i] = (float) (0.01 + i * 0.3); continuous[2][i] = continuous[3][i] * 1.2f; }
            assertSameLoss(model, continuous);
            assertSameLoss(model, batch(rng, i -> rng.nextInt(grid.length - 1), grid));
        }
    }

    /**
     * The trainer's steps draw z in the kernel from a seed. After a step given its own z, such a step must use
     * the drawn z alone (the given one cleared), and a step given z after it must use that z alone again.
     */
    @Test
    void aStepThatDrawsZUsesTheDrawAloneAndAGivenZAfterIt() {
        Spec spec = spec();
        double[] grid = Schedules.karras(21, spec.model().sigmaMin(), spec.model().sigmaMax(), spec.schedule().rho());
        try (var model = ConsistencyModel.build(spec, new JvmBackend(2))) {
            var rng = new SplittableRandom(4);
            assertSameLoss(model, batch(rng, i -> rng.nextInt(grid.length - 1), grid));
            float[][] b = batch(rng, i -> rng.nextInt(grid.length - 1), grid);
            for (int i = 0; i < b[1].length; i++) b[1][i] = (float) dev.cmc.kernel.Noise.gaussian(123, i);
            double expected = model.consistencyLoss(b[0], b[1], b[2], b[3], b[4]);
            float loss = model.trainStepDrawingZ(b[0], 123, b[2], b[3], b[4], 0.9, true);
            assertEquals(expected, loss, 2e-5 * Math.abs(expected), "a step drawing z from seed 123 against the loss with that z");
            assertSameLoss(model, batch(rng, i -> rng.nextInt(grid.length - 1), grid));
        }
    }

    /** {x0, z, σ_hi, σ_lo, w}: σ_lo at the level pick gives, σ_hi one above it. */
    private static float[][] batch(SplittableRandom rng, java.util.function.IntUnaryOperator level, double[] grid) {
        int d = 2;
        float[] x0 = new float[BATCH * d], z = new float[BATCH * d], hi = new float[BATCH], lo = new float[BATCH], w = new float[BATCH];
        for (int i = 0; i < x0.length; i++) { x0[i] = (float) rng.nextGaussian(); z[i] = (float) rng.nextGaussian(); }
        for (int i = 0; i < BATCH; i++) {
            int k = level.applyAsInt(i);
            if (k >= 0) { lo[i] = (float) grid[k]; hi[i] = (float) grid[k + 1]; }
            w[i] = (float) (0.5 + rng.nextDouble());
        }
        return new float[][]{x0, z, hi, lo, w};
    }

    private static void assertSameLoss(ConsistencyModel model, float[][] b) {
        double expected = model.consistencyLoss(b[0], b[1], b[2], b[3], b[4]);
        float loss = model.trainStep(b[0], b[1], b[2], b[3], b[4], 0.9, true);
        assertEquals(expected, loss, 2e-5 * Math.abs(expected), "the step's loss against the row-by-row loss");
    }
}
