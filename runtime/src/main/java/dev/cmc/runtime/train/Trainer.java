package dev.cmc.runtime.train;

import dev.cmc.dsl.Spec;
import dev.cmc.runtime.api.ConsistencyModel;
import dev.cmc.runtime.data.Datasets;

import java.util.SplittableRandom;

/**
 * The training loop: draws batches, picks noise-level pairs by the CT or iCT curriculum, and runs the
 * compiled step. Everything the next step needs beyond the weights is the step counter and the RNG.
 */
public final class Trainer {
    /** Called after each step; loss is NaN on steps that did not read it back. */
    public interface Progress { void step(long step, long total, float loss, int n); }

    /** The loss stopped being finite: training halts, the last good weights are the caller's to keep. */
    public static final class DivergedException extends RuntimeException {
        public DivergedException(String message) { super(message); }
    }

    private final ConsistencyModel model;
    private final Datasets.Data data;
    private final long seed;
    private final int lossEvery;

    public Trainer(ConsistencyModel model, Datasets.Data data, long seed, int lossEvery) {
        this.model = model;
        this.data = data;
        this.seed = seed;
        this.lossEvery = Math.max(1, lossEvery);
    }

    /**
     * Each step draws from its own stream, derived from the seed and the step number: a run resumed from a
     * checkpoint at step k draws exactly what an uninterrupted run draws from step k on.
     */
    static SplittableRandom streamFor(long seed, long step) {
        return new SplittableRandom(seed * 0x9E3779B97F4A7C15L + step).split();
    }

    /** The seed the step's kernel draws z from (dev.cmc.kernel.Noise): 24 bits of the step's stream. */
    private static int zSeed(SplittableRandom rng) {
        return dev.cmc.kernel.Noise.seed(rng.nextInt());
    }

    private DivergedException diverged(float loss, long k) {
        return new DivergedException("loss became " + loss + " at step " + (k + 1) + "; try a lower train.lr (now "
                + model.spec().train().lr() + ") or set train.grad_clip");
    }

    /**
     * One EDM denoiser step (Karras et al. 2022): ln σ ~ N(P_mean = −1.2, P_std = 1.2),
     * weight λ(σ) = (σ² + σ_d²)/(σ·σ_d)², noise n ~ N(0, I).
     */
    private float edmStep(SplittableRandom rng, float[] x0, float[] sigma, float[] w, boolean read) {
        int b = sigma.length, d = model.outputSize();
        double sd = model.spec().model().sigmaData();
        for (int i = 0; i < b; i++) {
            System.arraycopy(data.values(), rng.nextInt(data.n()) * d, x0, i * d, d);
            double s = Math.exp(-1.2 + 1.2 * rng.nextGaussian());
            sigma[i] = (float) s;
            w[i] = (float) ((s * s + sd * sd) / (s * sd * s * sd));
        }
        return model.trainStepDrawingZ(x0, zSeed(rng), sigma, null, w, 0, read);
    }

    /** Runs steps until the model has taken {@code until} steps in total. */
    public void run(long until, Progress progress) {
        Spec spec = model.spec();
        var t = spec.train();
        var m = spec.model();
        int b = t.batchSize(), d = m.inputDim();
        boolean ict = t.method().equals("ict");
        boolean edm = t.method().equals("edm");
        float[] x0 = new float[b * d], hi = new float[b], lo = new float[b], w = new float[b];
        while (model.step() < until) {
            long k = model.step();
            SplittableRandom rng = streamFor(seed, k);
            if (edm) {
                boolean read = (k + 1) % lossEvery == 0 || k + 1 == until;
                float loss = edmStep(rng, x0, hi, w, read);
                if (read && !Float.isFinite(loss)) throw diverged(loss, k);
                progress.step(model.step(), until, loss, 0);
                continue;
            }
            boolean cd = t.method().equals("cd");
            // CD (Algorithm 2): a fixed N from the schedule and a fixed μ; CT and iCT grow N by their curricula.
            int n = cd ? spec.schedule().nSteps() : ict ? Schedules.ictSteps(k, t.steps(), t.s0(), t.s1()) : Schedules.ctSteps(k, t.steps(), t.s0(), t.s1());
            double mu = cd ? t.mu0() : ict ? 0 : Schedules.ctMu(n, t.s0(), t.mu0());
            double[] sigmas = Schedules.karras(n, m.sigmaMin(), m.sigmaMax(), spec.schedule().rho());
            double[] pick = ict ? Schedules.ictIndexWeights(sigmas) : null;
            for (int i = 0; i < b; i++) {
                int row = rng.nextInt(data.n());
                System.arraycopy(data.values(), row * d, x0, i * d, d);
                int idx = ict ? Schedules.pick(pick, rng) : rng.nextInt(n - 1);
                lo[i] = (float) sigmas[idx];
                hi[i] = (float) sigmas[idx + 1];
                w[i] = ict ? (float) (1 / (sigmas[idx + 1] - sigmas[idx])) : 1f;
            }
            boolean read = (k + 1) % lossEvery == 0 || k + 1 == until;
            float loss = model.trainStepDrawingZ(x0, zSeed(rng), hi, lo, w, mu, read);
            if (read && !Float.isFinite(loss)) throw diverged(loss, k);
            progress.step(model.step(), until, loss, n);
        }
    }
}
