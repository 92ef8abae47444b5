package dev.cmc.runtime.api;

import dev.cmc.compile.Compiler;
import dev.cmc.compile.SigmaGroups;
import dev.cmc.dsl.Spec;
import dev.cmc.kernel.Noise;
import dev.cmc.kernel.OptimizerScalars;
import dev.cmc.model.ConsistencyModelGraph;
import dev.cmc.model.ParamLayout;
import dev.cmc.runtime.Backend;
import dev.cmc.runtime.Executable;
import dev.cmc.runtime.jvm.JvmBackend;
import dev.cmc.runtime.jvm.JvmExecutable;
import dev.cmc.runtime.train.Schedules;

import java.util.Map;
import java.util.SplittableRandom;

/**
 * The library view of a consistency model, mirroring the seed's API: build, singleStepSample,
 * multiStepSample, consistencyLoss, noiseSchedule, outputSize, paramCount, recommendedDefaults.
 * Weights live in three flat arrays (online, EMA target θ⁻, sampling EMA) shared with the compiled programs.
 */
public final class ConsistencyModel implements AutoCloseable {
    private static final int SAMPLE_CHUNK = 4096;

    private final Spec spec;
    private final Backend backend;
    private final ParamLayout layout;
    private final float[] params, target, ema, adamM, adamV;
    private Executable sampler, denoiser, trainer;
    /** Distinct σ the loaded training step embeds once each (0: it embeds per row); see {@link Compiler#sigmaRows}. */
    private int trainerSigmaRows;
    private Spec teacherSpec;
    private float[] teacherWeights;

    /** Consistency distillation: the EDM teacher (its spec and EMA weights) whose Heun steps give the targets. */
    public ConsistencyModel withTeacher(Spec teacher, float[] weights) {
        this.teacherSpec = teacher;
        this.teacherWeights = weights;
        return this;
    }
    private long step;

    private ConsistencyModel(Spec spec, Backend backend) {
        this.spec = spec;
        this.backend = backend;
        this.layout = new ConsistencyModelGraph(spec.model()).layout();
        this.params = layout.initialize(spec.train().seed());
        this.target = params.clone();
        this.ema = params.clone();
        this.adamM = new float[layout.total()];
        this.adamV = new float[layout.total()];
    }

    public static ConsistencyModel build(Spec spec) { return new ConsistencyModel(spec, new JvmBackend()); }

    public static ConsistencyModel build(Spec spec, Backend backend) { return new ConsistencyModel(spec, backend); }

    public static Spec recommendedDefaults(int inputDim) { return Spec.recommendedDefaults(inputDim); }

    /** Karras noise levels t_1 < … < t_N. */
    public static double[] noiseSchedule(int nSteps, double sigmaMin, double sigmaMax, double rho) {
        return Schedules.karras(nSteps, sigmaMin, sigmaMax, rho);
    }

    public Spec spec() { return spec; }
    public int outputSize() { return spec.model().inputDim(); }
    public long paramCount() { return layout.total(); }
    public ParamLayout layout() { return layout; }
    // The host copies. On a device backend the trainer owns the truth between steps; reading them copies it
    // back first, and after the caller changes them (loading a checkpoint) it calls weightsChanged().
    public float[] params() { sync(); return params; }
    public float[] target() { sync(); return target; }
    public float[] ema() { sync(); return ema; }
    public float[] adamM() { sync(); return adamM; }
    public float[] adamV() { sync(); return adamV; }

    private static final String[] STATE = {"params", "target", "ema", "adam_m", "adam_v"};
    private boolean deviceAhead, hostAhead;

    private float[][] state() { return new float[][]{params, target, ema, adamM, adamV}; }

    /** Copies the trainer's state back to the host when the device has stepped since the last copy. */
    private void sync() {
        if (!deviceAhead) return;
        float[][] host = state();
        for (int i = 0; i < STATE.length; i++) trainer.read(STATE[i], host[i], host[i].length);
        deviceAhead = false;
    }

    /** The host arrays were changed (a checkpoint was loaded): device copies are uploaded before the next step. */
    public void weightsChanged() {
        deviceAhead = false;
        hostAhead = true;
    }
    public long step() { return step; }
    public void setStep(long step) { this.step = step; }

    // ---- sampling ----

    /** x = f(σ_max·z, σ_max), from the sampling EMA weights. Returns count × d floats, row-major. */
    public float[] singleStepSample(int count, long seed) {
        return multiStepSample(count, seed, new double[]{spec.model().sigmaMax()});
    }

    public float[] multiStepSample(int count, long seed, int steps) {
        return multiStepSample(count, seed, Schedules.samplingSigmas(spec, steps));
    }

    /** Algorithm 1: x ← f(σ₀z, σ₀); for each further τ: x ← f(x + √(τ² − σ_min²)·z, τ). No clamping. */
    public float[] multiStepSample(int count, long seed, double[] sigmas) {
        return sample(ema, count, seed, sigmas);
    }

    /**
     * Algorithm 1 on the device: each chunk of rows starts at x = 0 with noise of scale σ₀, and each later step
     * feeds the last step's output back (copied on the device) with noise of scale √(τ² − σ_min²). The noise is
     * drawn by the sampler's own kernel, element by element from the seed and the row's place among all count
     * rows ({@link dev.cmc.kernel.Noise}), so the samples do not depend on the chunk size, and every backend draws
     * the same ones up to rounding.
     */
    public float[] sample(float[] weights, int count, long seed, double[] sigmas) {
        int d = outputSize();
        if (count > MAX_SAMPLES || (long) count * d > Integer.MAX_VALUE) {
            throw new IllegalArgumentException("at most " + Math.min(MAX_SAMPLES, Integer.MAX_VALUE / d) + " samples of " + d
                    + " values in one call (noise rows are counted exactly in fp32), not " + count);
        }
        sync();
        Executable exe = load(sampler, weights, true);
        int chunk = Math.min(count, exe.maxBatch());
        double sigmaMin = spec.model().sigmaMin();
        int stream = drawSeed(seed);
        float[] out = new float[count * d], noise = new float[3];
        for (int start = 0; start < count; start += chunk) {
            int b = Math.min(chunk, count - start);
            exe.clear("x", b * d);
            for (int s = 0; s < sigmas.length; s++) {
                if (s > 0) exe.copy("out", "x", b * d);
                noise[Compiler.NOISE_SEED] = Noise.seed(stream + s);
                noise[Compiler.NOISE_ROW] = start;
                noise[Compiler.NOISE_SCALE] = (float) (s == 0 ? sigmas[0] : Math.sqrt(Math.max(0, sigmas[s] * sigmas[s] - sigmaMin * sigmaMin)));
                exe.write(Compiler.NOISE, noise, noise.length);
                exe.write("sigma", new float[]{(float) sigmas[s]}, 1);
                exe.run(b);
            }
            float[] x = new float[b * d];
            exe.read("out", x, x.length);
            System.arraycopy(x, 0, out, start * d, x.length);
        }
        return out;
    }

    /** Rows one sampling call may draw: their indices, held in a float, must be exact. */
    public static final int MAX_SAMPLES = Noise.SEEDS;

    /** A 24-bit noise seed (exact in a float) from the caller's 64-bit one; step s of a sampler draws with seed + s. */
    public static int drawSeed(long seed) {
        return Noise.seed(new SplittableRandom(seed).nextInt());
    }

    /**
     * The EDM sampler for a diffusion teacher (train.method = edm): the probability-flow ODE from σ_max to 0
     * on the Karras grid of {@code steps} levels, by Heun's method (2·steps − 1 network evaluations) or by
     * Euler's (steps evaluations). Karras et al. 2022, Algorithm 1, deterministic.
     */
    public float[] odeSample(int count, long seed, int steps, boolean heun) {
        sync();
        var m = spec.model();
        double[] grid = Schedules.karras(steps, m.sigmaMin(), m.sigmaMax(), spec.schedule().rho());
        double[] t = new double[steps + 1];
        for (int i = 0; i < steps; i++) t[i] = grid[steps - 1 - i];
        Executable exe = load(sampler, ema, true);
        int d = outputSize(), chunk = Math.min(SAMPLE_CHUNK, exe.maxBatch());
        float[] out = new float[count * d];
        var rng = new SplittableRandom(seed);
        // The ODE's steps are host arithmetic between network evaluations, so its noise is drawn on the host too.
        for (int start = 0; start < count; start += chunk) {
            int b = Math.min(chunk, count - start);
            float[] x = new float[b * d];
            for (int i = 0; i < x.length; i++) x[i] = (float) (t[0] * rng.nextGaussian());
            for (int i = 0; i < steps; i++) x = odeStep(exe, x, t[i], t[i + 1], b, heun);
            System.arraycopy(x, 0, out, start * d, x.length);
        }
        return out;
    }

    /**
     * One step of the probability-flow ODE dx/dσ = (x − D(x, σ))/σ from σ = from to σ = to: Euler, then Heun's
     * correction unless to = 0. Public for consistency distillation, whose targets are one such step.
     */
    public float[] odeStep(Executable exe, float[] x, double from, double to, int b, boolean heun) {
        if (exe == null) exe = load(sampler, ema, true);
        float[] denoised = denoise(exe, x, new float[]{(float) from}, b);
        float[] slope = new float[x.length], next = new float[x.length];
        for (int i = 0; i < x.length; i++) {
            slope[i] = (float) ((x[i] - denoised[i]) / from);
            next[i] = (float) (x[i] + (to - from) * slope[i]);
        }
        if (!heun || to == 0) return next;
        float[] denoised2 = denoise(exe, next, new float[]{(float) to}, b);
        for (int i = 0; i < x.length; i++) {
            double slope2 = (next[i] - denoised2[i]) / to;
            next[i] = (float) (x[i] + (to - from) * 0.5 * (slope[i] + slope2));
        }
        return next;
    }

    /** f(x, σ) for a batch with a σ per row, with the given weights (online, target or EMA). */
    public float[] denoise(float[] weights, float[] x, float[] sigma, int batch) {
        sync();
        float[] out = new float[batch * outputSize()];
        Executable exe = load(denoiser, weights, false);
        for (int start = 0; start < batch; start += SAMPLE_CHUNK) {
            int b = Math.min(SAMPLE_CHUNK, batch - start);
            float[] xs = java.util.Arrays.copyOfRange(x, start * outputSize(), (start + b) * outputSize());
            float[] ss = java.util.Arrays.copyOfRange(sigma, start, start + b);
            System.arraycopy(denoise(exe, xs, ss, b), 0, out, start * outputSize(), b * outputSize());
        }
        return out;
    }

    private float[] denoise(Executable exe, float[] x, float[] sigma, int b) {
        if (exe == sampler) exe.write(Compiler.NOISE, new float[3], 3);   // f(x, σ) alone: a noise scale of 0
        exe.write("x", x, x.length);
        exe.write("sigma", sigma, sigma.length);
        exe.run(b);
        float[] out = new float[x.length];
        exe.read("out", out, out.length);
        return out;
    }

    /** Compiles and loads the training step now (it is otherwise done on the first step), for a batch size. */
    public void prepareTraining(int batch) {
        trainer(batch, null, null, new java.util.HashMap<>());
    }

    public String backendName() { return backend.name(); }

    /** Distinct σ the loaded training step embeds once each, in a table of this many entries; 0 when it embeds per row. */
    public int trainingSigmaRows() { return trainerSigmaRows; }

    /** The shared-σ sampler or the per-row denoiser, compiled on first use, reading these weights. */
    private Executable load(Executable cached, float[] weights, boolean sharedSigma) {
        Executable exe = cached;
        if (exe == null) {
            exe = sharedSigma ? backend.load(Compiler.sampler(spec).program(), backend.samplingRows())
                              : backend.load(Compiler.denoiser(spec).program(), SAMPLE_CHUNK);
            if (sharedSigma) sampler = exe; else denoiser = exe;
        }
        if (exe instanceof JvmExecutable j) j.bind("params", weights);
        else exe.write("params", weights, weights.length);
        return exe;
    }

    // ---- training ----

    /**
     * mean_i w_i·d(f_θ(x₀ + σ_hi z, σ_hi), f_θ⁻(x₀ + σ_lo z, σ_lo)) without updating anything: the loss the
     * train step minimises, evaluated through the sampler program.
     */
    public double consistencyLoss(float[] x0, float[] z, float[] sigmaHi, float[] sigmaLo, float[] weight) {
        int d = outputSize(), b = sigmaHi.length;
        float[] xHi = new float[b * d], xLo = new float[b * d];
        for (int i = 0; i < b; i++) for (int j = 0; j < d; j++) {
            xHi[i * d + j] = x0[i * d + j] + sigmaHi[i] * z[i * d + j];
            xLo[i * d + j] = x0[i * d + j] + sigmaLo[i] * z[i * d + j];
        }
        float[] a = denoise(params, xHi, sigmaHi, b), t = denoise(target, xLo, sigmaLo, b);
        double c = spec.train().huberC(), total = 0;
        for (int i = 0; i < b; i++) {
            double sq = 0;
            for (int j = 0; j < d; j++) sq += (a[i * d + j] - t[i * d + j]) * (double) (a[i * d + j] - t[i * d + j]);
            total += weight[i] * (spec.train().loss().equals("l2") ? sq : Math.sqrt(sq + c * c) - c);
        }
        return total / b;
    }

    /**
     * One compiled training step on a batch: loss, gradient, Adam (or RAdam), target EMA with rate mu,
     * sampling EMA. Returns the loss (read back only when asked: pass readLoss = false to skip it).
     */
    public float trainStep(float[] x0, float[] z, float[] sigmaHi, float[] sigmaLo, float[] weight, double mu, boolean readLoss) {
        return step(x0, z, 0, sigmaHi, sigmaLo, weight, mu, readLoss);
    }

    /**
     * The same step with z drawn by the step's own kernel from this seed (below 2²⁴; {@link dev.cmc.kernel.Noise}),
     * as the trainer runs it: no noise is made on the host or copied to the device.
     */
    public float trainStepDrawingZ(float[] x0, int zSeed, float[] sigmaHi, float[] sigmaLo, float[] weight, double mu, boolean readLoss) {
        if (zSeed != Noise.seed(zSeed)) throw new IllegalArgumentException("z seed " + zSeed + " outside 0.." + (Noise.SEEDS - 1));
        return step(x0, null, zSeed, sigmaHi, sigmaLo, weight, mu, readLoss);
    }

    /** Whether the loaded step's z array holds a caller's z, which a step that draws its own must clear first. */
    private boolean zWritten;

    private float step(float[] x0, float[] z, int zSeed, float[] sigmaHi, float[] sigmaLo, float[] weight, double mu, boolean readLoss) {
        int b = sigmaHi.length, d = outputSize();
        // The step's inputs, written in one transfer: on a GPU each write is a round trip of its own.
        var inputs = new java.util.LinkedHashMap<String, float[]>();
        Executable exe = trainer(b, sigmaHi, sigmaLo, inputs);
        var t = spec.train();
        step++;
        float[] scalars = new float[OptimizerScalars.SIZE];
        OptimizerScalars.fill(scalars, t.optimizer(), (int) Math.min(step, Integer.MAX_VALUE), t.lr(), t.beta1(), t.beta2(), t.eps(),
                t.weightDecay(), mu, t.emaDecay(), 1.0);
        inputs.put("x0", rows(x0, b * d));
        if (z != null) {
            inputs.put("z", rows(z, b * d));
            zWritten = true;
        } else if (zWritten) {
            exe.clear("z", exe.maxBatch() * d);
            zWritten = false;
        }
        inputs.put(Compiler.NOISE, new float[]{zSeed, 0, z == null ? 1 : 0});
        inputs.put("sigma_hi", rows(sigmaHi, b));
        if (sigmaLo != null) inputs.put("sigma_lo", rows(sigmaLo, b));
        inputs.put("weight", rows(weight, b));
        inputs.put("scalars", scalars);
        exe.writeAll(inputs);
        exe.run(b);
        if (!(exe instanceof JvmExecutable)) deviceAhead = true;
        if (!readLoss) return Float.NaN;
        float[] loss = new float[1];
        exe.read("loss", loss, 1);
        return loss[0];
    }

    /** The first n values of a, without a copy when that is all of it. */
    private static float[] rows(float[] a, int n) {
        return a.length == n ? a : java.util.Arrays.copyOf(a, n);
    }

    /**
     * The training step, compiled and loaded for at least this batch, with this batch's σ groups put in inputs
     * (which the step writes with its others) where it embeds σ once per distinct value; compiled anew to embed per row when σ holds more distinct values than
     * its table (a caller's own σ, a run past its schedule). The σ arrays are null when preparing ahead of any batch.
     */
    private Executable trainer(int batch, float[] sigmaHi, float[] sigmaLo, Map<String, float[]> inputs) {
        Map<String, float[]> groups = null;
        boolean rebuild = trainer == null || trainer.maxBatch() < batch;
        if (!rebuild && trainerSigmaRows > 0 && sigmaHi != null) {
            groups = SigmaGroups.inputsIfTheyFit(sigmaHi, sigmaLo, batch, trainerSigmaRows);
            rebuild = groups == null;
        }
        if (rebuild) {
            sync();
            if (trainer != null) trainer.close();
            if (spec.train().method().equals("cd") && teacherSpec == null) {
                throw new IllegalStateException("method = cd: load the teacher first (withTeacher)");
            }
            int rows = Compiler.sigmaRows(spec, batch);
            if (rows > 0 && sigmaHi != null) {
                groups = SigmaGroups.inputsIfTheyFit(sigmaHi, sigmaLo, batch, rows);
                if (groups == null) rows = 0;
            }
            trainerSigmaRows = rows;
            trainer = backend.load(Compiler.trainStep(spec, teacherSpec, trainerSigmaRows).program(), batch);
            zWritten = false;
            if (teacherWeights != null) trainer.write("teacher", teacherWeights, teacherWeights.length);
            hostAhead = true;
            if (trainer instanceof JvmExecutable j) {
                j.bind("params", params);
                j.bind("target", target);
                j.bind("ema", ema);
                j.bind("adam_m", adamM);
                j.bind("adam_v", adamV);
                hostAhead = false;
            }
        }
        if (hostAhead) {
            float[][] host = state();
            for (int k = 0; k < STATE.length; k++) trainer.write(STATE[k], host[k], host[k].length);
            hostAhead = false;
        }
        if (groups != null) inputs.putAll(groups);
        return trainer;
    }

    @Override
    public void close() {
        for (Executable e : new Executable[]{sampler, denoiser, trainer}) if (e != null) e.close();
    }
}
