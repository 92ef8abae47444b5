package dev.cmc.runtime.bench;

import dev.cmc.compile.Compiler;
import dev.cmc.dsl.Spec;
import dev.cmc.runtime.Backend;
import dev.cmc.runtime.Executable;
import dev.cmc.kernel.OptimizerScalars;

import java.util.Arrays;
import java.util.SplittableRandom;
import java.util.function.Consumer;

/** The measurements behind `cmc bench`: compile time, 1-step sampling throughput, CT training-step time. */
public final class Bench {
    private Bench() {}

    public record Result(String model, String backend, long params, double compileMs, int batch, double sampleMs, int trainBatch, double stepMs,
                         double flopsPerSample, int threads, java.util.Map<String, Double> sampleKernels, java.util.Map<String, Double> stepKernels) {
        /** The slowest kernels of both programs, for --profile. */
        public String profile(int top) {
            var sb = new StringBuilder();
            for (var e : java.util.Map.of("sampling", sampleKernels, "training step", stepKernels).entrySet()) {
                sb.append(String.format("  %s: slowest kernels (ms)%n", e.getKey()));
                e.getValue().entrySet().stream().sorted(java.util.Map.Entry.<String, Double>comparingByValue().reversed()).limit(top)
                        .forEach(k -> sb.append(String.format("    %8.3f  %s%n", k.getValue(), k.getKey())));
            }
            return sb.toString();
        }

        public double samplesPerSecond() { return batch / (sampleMs / 1e3); }
        public double sampleGflops() { return flopsPerSample * samplesPerSecond() / 1e9; }

        public String table() {
            return String.format("""
                    model %s, %,d parameters, %s backend, %d host threads
                      compile and load (both programs)           %8.1f ms
                      1-step sampling, batch %-6d             %8.2f ms   %,.0f samples/s   %.1f GFLOP/s
                      CT training step, batch %-6d            %8.2f ms""",
                    model, params, backend, threads, compileMs, batch, sampleMs, samplesPerSecond(), sampleGflops(), trainBatch, stepMs);
        }

        public String json() {
            return String.format("{\"model\":\"%s\",\"params\":%d,\"backend\":\"%s\",\"threads\":%d,\"compile_ms\":%.2f,"
                    + "\"sample_batch\":%d,\"sample_ms\":%.3f,\"samples_per_s\":%.1f,\"sample_gflops\":%.2f,\"train_batch\":%d,\"train_step_ms\":%.3f}\n",
                    model, params, backend, threads, compileMs, batch, sampleMs, samplesPerSecond(), sampleGflops(), trainBatch, stepMs);
        }
    }

    /**
     * Forward FLOPs per sample that the sampler does: 2·(in·out) per dense layer, without the σ embedding's
     * layer (h·h), which the shared-σ sampler computes once per batch (the seed's 4.39 MFLOP counts it).
     */
    public static double flopsPerSample(Spec s) {
        long d = s.model().inputDim(), h = s.model().hiddenSize(), e = (long) s.model().expansion() * h;
        return 2.0 * (d * h + s.model().numLayers() * 2L * h * e + h * d);
    }

    public static Result run(Spec spec, Backend backend, String label, int batch, int trainBatch, double seconds, Consumer<String> log) {
        long t0 = System.nanoTime();
        var sampler = Compiler.sampler(spec);
        var train = Compiler.trainStep(spec);
        Executable s = backend.load(sampler.program(), batch);
        Executable t = backend.load(train.program(), trainBatch);
        double compileMs = (System.nanoTime() - t0) / 1e6;
        var rng = new SplittableRandom(1);
        float[] params = sampler.layout().initialize(1);
        s.write("params", params, params.length);
        float[] x = new float[batch * spec.model().inputDim()];
        for (int i = 0; i < x.length; i++) x[i] = (float) (spec.model().sigmaMax() * rng.nextGaussian());
        s.write("x", x, x.length);
        s.write("sigma", new float[]{(float) spec.model().sigmaMax()}, 1);
        log.accept(label + ": measuring 1-step sampling at batch " + batch + " ...");
        double sampleMs = time(() -> s.run(batch), seconds);

        t.write("params", params, params.length);
        t.write("target", params, params.length);
        int d = spec.model().inputDim();
        float[] x0 = new float[trainBatch * d], z = new float[trainBatch * d], hi = new float[trainBatch], lo = new float[trainBatch], w = new float[trainBatch];
        for (int i = 0; i < x0.length; i++) { x0[i] = (float) rng.nextGaussian(); z[i] = (float) rng.nextGaussian(); }
        for (int i = 0; i < trainBatch; i++) { lo[i] = (float) (0.002 + rng.nextDouble()); hi[i] = lo[i] * 1.5f; w[i] = 1; }
        for (var e : java.util.Map.of("x0", x0, "z", z, "sigma_hi", hi, "sigma_lo", lo, "weight", w).entrySet()) t.write(e.getKey(), e.getValue(), e.getValue().length);
        float[] sc = new float[OptimizerScalars.SIZE];
        OptimizerScalars.fill(sc, "adam", 1, 1e-5, 0.9, 0.999, 1e-8, 0, 0.9, 0.999, 1);
        t.write("scalars", sc, sc.length);
        log.accept(label + ": measuring the CT training step at batch " + trainBatch + " ...");
        double stepMs = time(() -> t.run(trainBatch), seconds);
        var sampleKernels = kernelTimes(s, batch);
        var stepKernels = kernelTimes(t, trainBatch);
        s.close();
        t.close();
        return new Result(spec.name(), label, sampler.layout().total(), compileMs, batch, sampleMs, trainBatch, stepMs, flopsPerSample(spec),
                Runtime.getRuntime().availableProcessors(), sampleKernels, stepKernels);
    }

    /** Per-kernel times of one run: device events on OpenCL, wall time per launch on the JVM. */
    static java.util.Map<String, Double> kernelTimes(Executable exe, int batch) {
        if (exe instanceof dev.cmc.runtime.opencl.OpenClExecutable cl) return cl.profile(batch);
        var times = new java.util.LinkedHashMap<String, Double>();
        if (exe instanceof dev.cmc.runtime.jvm.JvmExecutable j) {
            for (int k = 0; k < j.program().kernels().size(); k++) {
                long a = System.nanoTime();
                j.launch(k, batch);
                times.merge(j.program().kernels().get(k).name(), (System.nanoTime() - a) / 1e6, Double::sum);
            }
        }
        return times;
    }

    /** Warm up for a third of the budget (JIT), then the median of timed runs over the rest. */
    private static double time(Runnable r, double seconds) {
        long warmEnd = System.nanoTime() + (long) (seconds / 3 * 1e9);
        int warm = 0;
        while (System.nanoTime() < warmEnd || warm < 3) { r.run(); warm++; }
        var samples = new java.util.ArrayList<Double>();
        long end = System.nanoTime() + (long) (seconds * 2 / 3 * 1e9);
        while (System.nanoTime() < end || samples.size() < 5) {
            long a = System.nanoTime();
            r.run();
            samples.add((System.nanoTime() - a) / 1e6);
        }
        samples.sort(null);
        return samples.get(samples.size() / 2);
    }
}
