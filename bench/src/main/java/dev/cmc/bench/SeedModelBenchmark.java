package dev.cmc.bench;

import dev.cmc.compile.Compiler;
import dev.cmc.dsl.Spec;
import dev.cmc.dsl.SpecLoader;
import dev.cmc.kernel.OptimizerScalars;
import dev.cmc.runtime.jvm.JvmBackend;
import dev.cmc.runtime.jvm.JvmExecutable;
import org.openjdk.jmh.annotations.*;

import java.util.Arrays;
import java.util.SplittableRandom;
import java.util.concurrent.TimeUnit;

/**
 * The seed-default model (64-d, h = 256, 4 blocks, 2,203,200 parameters) on the jvm backend:
 * 1-step sampling at batch 4096 and one CT training step at batch 256.
 * Run: java --add-modules jdk.incubator.vector -jar bench/target/benchmarks.jar
 */
@State(Scope.Benchmark)
@BenchmarkMode(Mode.AverageTime)
@OutputTimeUnit(TimeUnit.MILLISECONDS)
@Warmup(iterations = 5, time = 3)
@Measurement(iterations = 5, time = 3)
@Fork(value = 1, jvmArgsAppend = {"--add-modules", "jdk.incubator.vector", "--enable-native-access=ALL-UNNAMED", "-XX:+UseParallelGC"})
public class SeedModelBenchmark {
    static final String SEED = """
            model seed_default {
                input_dim   = 64;
                hidden_size = 256;
                num_layers  = 4;
                sigma_min   = 0.002;
                sigma_max   = 80.0;
            }
            """;

    @Param({"4096"})
    int sampleBatch;

    @Param({"256"})
    int trainBatch;

    JvmExecutable sampler, trainStep;

    @Setup
    public void setup() {
        Spec spec = SpecLoader.fromText("seed_default.cm", SEED);
        var backend = new JvmBackend();
        var s = Compiler.sampler(spec);
        sampler = backend.load(s.program(), sampleBatch);
        sampler.bind("params", s.layout().initialize(1));
        var rng = new SplittableRandom(1);
        float[] x = new float[sampleBatch * 64];
        for (int i = 0; i < x.length; i++) x[i] = (float) (80 * rng.nextGaussian());
        sampler.write("x", x, x.length);
        sampler.write("sigma", new float[]{80f}, 1);

        var t = Compiler.trainStep(spec);
        trainStep = backend.load(t.program(), trainBatch);
        trainStep.bind("params", t.layout().initialize(1));
        trainStep.bind("target", t.layout().initialize(1));
        float[] x0 = new float[trainBatch * 64], z = new float[trainBatch * 64];
        for (int i = 0; i < x0.length; i++) { x0[i] = (float) rng.nextGaussian(); z[i] = (float) rng.nextGaussian(); }
        float[] lo = new float[trainBatch], hi = new float[trainBatch], w = new float[trainBatch];
        for (int i = 0; i < trainBatch; i++) { lo[i] = (float) (0.002 + 2 * rng.nextDouble()); hi[i] = 1.3f * lo[i]; w[i] = 1; }
        trainStep.write("x0", x0, x0.length);
        trainStep.write("z", z, z.length);
        trainStep.write("sigma_lo", lo, trainBatch);
        trainStep.write("sigma_hi", hi, trainBatch);
        trainStep.write("weight", w, trainBatch);
        float[] sc = new float[OptimizerScalars.SIZE];
        OptimizerScalars.fill(sc, "adam", 1, 1e-5, 0.9, 0.999, 1e-8, 0, 0.9, 0.999, 1);
        trainStep.write("scalars", sc, sc.length);
    }

    /** f(σ_max·z, σ_max) for 4096 samples: divide 4096 by the time for samples per second. */
    @Benchmark
    public float sampleOneStep() {
        sampler.run(sampleBatch);
        return sampler.array("out")[0];
    }

    /** Online forward and backward, EMA-target forward, pseudo-Huber loss, Adam and both EMAs. */
    @Benchmark
    public float ctTrainStep() {
        trainStep.run(trainBatch);
        return trainStep.array("loss")[0];
    }

    @TearDown
    public void tearDown() {
        sampler.close();
        trainStep.close();
    }
}
