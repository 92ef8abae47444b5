package dev.cmc.bench;

import ai.djl.ndarray.NDArray;
import ai.djl.ndarray.types.Shape;
import dev.cmc.compile.Compiler;
import dev.cmc.dsl.Spec;
import dev.cmc.dsl.SpecLoader;
import dev.cmc.kernel.OptimizerScalars;
import dev.cmc.runtime.Backends;
import dev.cmc.runtime.Executable;
import org.openjdk.jmh.annotations.*;

import java.util.SplittableRandom;
import java.util.concurrent.TimeUnit;

/**
 * The seed-default model (64-d, h = 256, 4 blocks, 2,203,200 parameters) on each CPU implementation, in one
 * JMH run: cmc's jvm backend, cmc's OpenCL kernels on PoCL, and PyTorch through DJL, all from the same weights
 * and inputs, with the same thread count. 1- and 2-step sampling at batch 4096, one CT step at batch 256.
 * Run it through {@link Compare}, which first checks that every implementation computes the same function.
 */
@State(Scope.Benchmark)
@BenchmarkMode(Mode.AverageTime)
@OutputTimeUnit(TimeUnit.MILLISECONDS)
@Warmup(iterations = 4, time = 3)
@Measurement(iterations = 5, time = 3)
@Fork(value = 1, jvmArgsAppend = {"--add-modules", "jdk.incubator.vector", "--enable-native-access=ALL-UNNAMED", "-XX:+UseParallelGC"})
public class SideBySide {
    static final String SEED = """
            model seed_default {
                input_dim   = 64;
                hidden_size = 256;
                num_layers  = 4;
                sigma_min   = 0.002;
                sigma_max   = 80.0;
            }
            """;

    /** jvm, opencl:0 (cmc's backends) or pytorch (DJL). */
    @Param({"jvm"})
    String impl;

    @Param({"4096"})
    int sampleBatch;

    @Param({"256"})
    int trainBatch;

    @Param({"2"})
    int threads;

    Inputs in;
    Executable sampler, trainStep;
    TorchPeer torch;
    NDArray tx, tsigma, tsigma2, tnoise, tx0, tz, thi, tlo, tw;

    @Setup
    public void setup() {
        in = new Inputs(spec(), sampleBatch, trainBatch);
        if (impl.equals("pytorch")) {
            TorchPeer.configure(threads);
            torch = new TorchPeer(in.spec, in.layout, in.params, 1e-5);
            var m = torch.manager();
            int d = in.dim;
            tx = m.create(in.x, new Shape(sampleBatch, d));
            tnoise = m.create(in.noise, new Shape(sampleBatch, d));
            tsigma = m.full(new Shape(sampleBatch), in.sigmaMax);
            tsigma2 = m.full(new Shape(sampleBatch), in.tau2);
            tx0 = m.create(in.x0, new Shape(trainBatch, d));
            tz = m.create(in.z, new Shape(trainBatch, d));
            thi = m.create(in.hi, new Shape(trainBatch));
            tlo = m.create(in.lo, new Shape(trainBatch));
            tw = m.create(in.w, new Shape(trainBatch));
        } else {
            var backend = Backends.select(in.spec, impl);
            sampler = backend.load(Compiler.sampler(in.spec).program(), sampleBatch);
            trainStep = backend.load(dev.cmc.runtime.bench.Bench.trainStep(in.spec, trainBatch).program(), trainBatch);
            in.load(sampler, trainStep);
        }
    }

    static Spec spec() { return SpecLoader.fromText("seed_default.cm", SEED); }

    /** f(σ_max·z, σ_max) for the batch: divide the batch by the time for samples per second. */
    @Benchmark
    public void sampleOneStep() {
        if (torch != null) torch.sampleInPlace(tx, tsigma);
        else sampler.run(sampleBatch);
    }

    /** Algorithm 1 with two evaluations: x ← f(σ_max·z, σ_max); x ← f(x + √(τ² − σ_min²)·z′, τ). */
    @Benchmark
    public void sampleTwoStep() {
        if (torch != null) {
            torch.twoStepInPlace(tx, tsigma, tnoise, tsigma2, in.noiseScale);
            return;
        }
        // cmc draws the second step's noise in its kernel and keeps x on the device, as ConsistencyModel.sample does.
        sampler.write(Compiler.NOISE, new float[3], 3);
        sampler.write("sigma", new float[]{in.sigmaMax}, 1);
        sampler.write("x", in.x, in.x.length);
        sampler.run(sampleBatch);
        sampler.copy("out", "x", in.x.length);
        sampler.write(Compiler.NOISE, new float[]{1, 0, in.noiseScale}, 3);
        sampler.write("sigma", new float[]{in.tau2}, 1);
        sampler.run(sampleBatch);
    }

    /** Online forward and backward, EMA-target forward, pseudo-Huber loss, Adam and both EMAs. */
    @Benchmark
    public void ctTrainStep() {
        if (torch != null) torch.trainStep(tx0, tz, thi, tlo, tw, 0.9f, 0.999f);
        else trainStep.run(trainBatch);
    }

    @TearDown
    public void tearDown() {
        if (torch != null) torch.close();
        if (sampler != null) sampler.close();
        if (trainStep != null) trainStep.close();
    }

    /** The same weights and inputs for every implementation, from fixed seeds. */
    static final class Inputs {
        final Spec spec;
        final dev.cmc.model.ParamLayout layout;
        final int dim;
        final float[] params, x, noise, x0, z, hi, lo, w;
        final float sigmaMax, tau2, noiseScale;

        Inputs(Spec spec, int sampleBatch, int trainBatch) {
            this.spec = spec;
            var compiled = Compiler.sampler(spec);
            layout = compiled.layout();
            params = layout.initialize(1);
            dim = spec.model().inputDim();
            var rng = new SplittableRandom(1);
            sigmaMax = (float) spec.model().sigmaMax();
            tau2 = (float) dev.cmc.runtime.train.Schedules.defaultSamplingSigmas(spec, 2)[1];
            noiseScale = (float) Math.sqrt(tau2 * tau2 - spec.model().sigmaMin() * spec.model().sigmaMin());
            x = new float[sampleBatch * dim];
            noise = new float[sampleBatch * dim];
            for (int i = 0; i < x.length; i++) { x[i] = (float) (sigmaMax * rng.nextGaussian()); noise[i] = (float) rng.nextGaussian(); }
            x0 = new float[trainBatch * dim];
            z = new float[trainBatch * dim];
            for (int i = 0; i < x0.length; i++) { x0[i] = (float) (0.5 * rng.nextGaussian()); z[i] = (float) rng.nextGaussian(); }
            float[][] sigma = dev.cmc.runtime.bench.Bench.sigmaPairs(spec, trainBatch, rng);
            hi = sigma[0];
            lo = sigma[1];
            w = new float[trainBatch];
            java.util.Arrays.fill(w, 1);
        }

        void load(Executable sampler, Executable trainStep) {
            sampler.write("params", params, params.length);
            sampler.write("x", x, x.length);
            sampler.write("sigma", new float[]{sigmaMax}, 1);
            trainStep.write("params", params, params.length);
            trainStep.write("target", params, params.length);
            trainStep.write("ema", params, params.length);
            trainStep.write("x0", x0, x0.length);
            trainStep.write("z", z, z.length);
            trainStep.write("sigma_hi", hi, hi.length);
            trainStep.write("sigma_lo", lo, lo.length);
            trainStep.write("weight", w, w.length);
            dev.cmc.runtime.bench.Bench.writeSigmaGroups(trainStep, spec, new float[][]{hi, lo}, hi.length);
            float[] sc = new float[OptimizerScalars.SIZE];
            OptimizerScalars.fill(sc, "adam", 1, 1e-5, 0.9, 0.999, 1e-8, 0, 0.9, 0.999, 1);
            trainStep.write("scalars", sc, sc.length);
        }
    }
}
