package dev.cmc.runtime.bench;

import dev.cmc.compile.Compiler;
import dev.cmc.compile.SigmaGroups;
import dev.cmc.dsl.Spec;
import dev.cmc.kernel.OptimizerScalars;
import dev.cmc.kernel.Program;
import dev.cmc.runtime.Backend;
import dev.cmc.runtime.Executable;
import dev.cmc.runtime.train.Schedules;

import java.io.IOException;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.*;

/**
 * The measurements behind `cmc bench`: kernel generation and load (JIT/build) time, 1- and 2-step sampling
 * at each batch size, one CT training step, achieved GFLOP/s against the device's measured FMA peak, memory.
 * Every case runs on non-trivial inputs (Gaussian noise, initialised weights), warms up, then takes a median.
 */
public final class Bench {
    private Bench() {}

    /** Where a long measurement stands: what it is doing, and how many of its cases are done. */
    public interface Progress { void at(String what, int done, int total); }

    public record Sampling(int batch, double oneStepMs, double twoStepMs) {
        public double samplesPerSecond() { return batch / (oneStepMs / 1e3); }
    }

    public record Result(String model, long params, String backend, String device, int threads, double generateMs, double loadMs,
                         List<Sampling> sampling, int trainBatch, int trainSigmaRows, double stepMs, double flopsPerSample, double trainFlopsPerSample,
                         double peakGflops, long deviceBytes, long peakRssBytes, Map<String, Double> sampleKernels, Map<String, Double> stepKernels,
                         Map<String, Double> sampleGemmFlops, Map<String, Double> stepGemmFlops,
                         Map<String, Double> sampleActivationBytes, Map<String, Double> stepActivationBytes,
                         double sampleChainMs, double stepChainMs, List<dev.cmc.runtime.Timeline> timelines) {

        public double sampleGflops(Sampling s) { return flopsPerSample * s.samplesPerSecond() / 1e9; }
        public double stepGflops() { return trainFlopsPerSample * trainBatch / (stepMs / 1e3) / 1e9; }

        private String ofPeak(double gflops) {
            return Double.isNaN(peakGflops) ? "" : String.format("  %3.0f%% of peak", 100 * gflops / peakGflops);
        }

        public String table() {
            var sb = new StringBuilder(String.format("%s on %s: %s%n", model, backend, device));
            sb.append(String.format("  %,d parameters, %d host threads, measured FMA peak %s%n", params, threads,
                    Double.isNaN(peakGflops) ? "n/a" : String.format("%.0f GFLOP/s", peakGflops)));
            sb.append(String.format("  kernel generation %.0f ms, load (compile, JIT or build) %.0f ms%n", generateMs, loadMs));
            sb.append("  batch     1-step ms     samples/s   GFLOP/s            2-step ms\n");
            for (Sampling s : sampling) {
                sb.append(String.format("  %-8d %10.2f %13s %9.1f%-15s %9.2f%n", s.batch(), s.oneStepMs(), String.format("%,.0f", s.samplesPerSecond()),
                        sampleGflops(s), ofPeak(sampleGflops(s)), s.twoStepMs()));
            }
            sb.append(String.format("  CT training step, batch %d: %.2f ms, %.1f GFLOP/s%s%n", trainBatch, stepMs, stepGflops(), ofPeak(stepGflops())));
            if (trainSigmaRows > 0) sb.append(String.format("    (σ embedded once per distinct value: a %d-entry table, not %d rows)%n", trainSigmaRows, trainBatch));
            sb.append(String.format("  memory: %.1f MiB of arrays on the device, host peak RSS %.0f MiB%n", deviceBytes / 1048576.0, peakRssBytes / 1048576.0));
            return sb.toString();
        }

        /**
         * The slowest kernels of both programs, for --profile: time, a GEMM's achieved GFLOP/s, and the GB/s of
         * the batch-sized arrays (activations) it reads and writes, each counted once: at large batches, how
         * close a kernel comes to the memory's bandwidth.
         */
        public String profile(int top) {
            var sb = new StringBuilder();
            double sampleMs = sampling.isEmpty() ? Double.NaN : sampling.getFirst().oneStepMs();
            for (var s : List.of(new Profiled("sampling", sampleKernels, sampleGemmFlops, sampleActivationBytes, sampleChainMs, sampleMs),
                    new Profiled("training step", stepKernels, stepGemmFlops, stepActivationBytes, stepChainMs, stepMs))) {
                if (!s.times().isEmpty()) {
                    sb.append(String.format("  %s: kernels %.3f ms in all, %.3f ms on the longest chain of dependent ones; the run took %.3f ms%n",
                            s.what(), s.times().values().stream().mapToDouble(Double::doubleValue).sum(), s.chainMs(), s.runMs()));
                }
                sb.append(String.format("  %s: slowest kernels (ms, GFLOP/s for GEMMs, GB/s of activations)%n", s.what()));
                s.times().entrySet().stream().sorted(Map.Entry.<String, Double>comparingByValue().reversed()).limit(top)
                        .forEach(k -> sb.append(String.format("    %8.3f %10s %8s  %s%n", k.getValue(), perSecond(s.flops().get(k.getKey()), k.getValue()),
                                perSecond(s.bytes().get(k.getKey()), k.getValue()), k.getKey())));
            }
            return sb.toString();
        }

        /** One program's profile: kernel times, GEMM FLOPs and activation bytes by kernel, its chain and its run. */
        private record Profiled(String what, Map<String, Double> times, Map<String, Double> flops, Map<String, Double> bytes,
                                double chainMs, double runMs) {}

        /** An amount per ms as billions per second, or blank where there is none. */
        private static String perSecond(Double amount, double ms) {
            return amount == null || amount == 0 || ms <= 0 ? "" : String.format("%.0f", amount / (ms / 1e3) / 1e9);
        }

        public String json() {
            var cases = new StringJoiner(",", "[", "]");
            for (Sampling s : sampling) {
                cases.add(String.format(Locale.ROOT, "{\"batch\":%d,\"one_step_ms\":%.4f,\"two_step_ms\":%.4f,\"samples_per_s\":%.1f,\"gflops\":%.2f}",
                        s.batch(), s.oneStepMs(), s.twoStepMs(), s.samplesPerSecond(), sampleGflops(s)));
            }
            return String.format(Locale.ROOT, "{\"model\":\"%s\",\"params\":%d,\"backend\":\"%s\",\"device\":\"%s\",\"threads\":%d,\"generate_ms\":%.2f,"
                            + "\"load_ms\":%.2f,\"peak_gflops\":%s,\"sampling\":%s,\"train_batch\":%d,\"train_sigma_rows\":%d,\"train_step_ms\":%.4f,\"train_gflops\":%.2f,"
                            + "\"device_bytes\":%d,\"peak_rss_bytes\":%d%s%s%s%s}",
                    model, params, backend, device.replace("\"", "'"), threads, generateMs, loadMs,
                    Double.isNaN(peakGflops) ? "null" : String.format(Locale.ROOT, "%.1f", peakGflops), cases, trainBatch, trainSigmaRows, stepMs, stepGflops(),
                    deviceBytes, peakRssBytes, kernelsJson("sample_kernels_ms", sampleKernels), kernelsJson("step_kernels_ms", stepKernels),
                    sampleKernels.isEmpty() ? "" : String.format(Locale.ROOT, ",\"sample_chain_ms\":%.4f,\"step_chain_ms\":%.4f", sampleChainMs, stepChainMs),
                    timelinesJson());
        }

        /** With recorded timelines, each program's spans (see {@link dev.cmc.runtime.Timeline#json}) and its SMs' busy µs, else nothing. */
        private String timelinesJson() {
            if (timelines.isEmpty()) return "";
            var each = new StringJoiner(",", ",\"timelines\":[", "]");
            for (var t : timelines) {
                var busy = new StringJoiner(",", "[", "]");
                for (double us : t.smBusyUs()) busy.add(String.format(Locale.ROOT, "%.3f", us));
                each.add(String.format(Locale.ROOT, "{\"program\":\"%s\",\"us\":%.3f,\"block_us\":%.3f,\"sm_busy_us\":%s,\"kernels\":%s}",
                        t.program(), t.us(), t.blockUs(), busy, t.json()));
            }
            return each.toString();
        }

        /** With recorded timelines, each one's summary (see {@link dev.cmc.runtime.Timeline#summary}), else nothing. */
        public String timelineSummaries(int top) {
            var sb = new StringBuilder();
            for (var t : timelines) sb.append(t.summary(top));
            return sb.toString();
        }

        /** With --profile, every kernel's time in launch order (the table shows only the slowest), else nothing. */
        private static String kernelsJson(String key, Map<String, Double> times) {
            if (times.isEmpty()) return "";
            var each = new StringJoiner(",", "{", "}");
            times.forEach((kernel, ms) -> each.add(String.format(Locale.ROOT, "\"%s\":%.4f", kernel, ms)));
            return ",\"" + key + "\":" + each;
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

    /**
     * FLOPs per sample of a CT step as cmc runs it at this batch: the online forward, its backward (twice that),
     * the target forward, each with the embedding's h·h layer once per row, or once per table entry where σ is
     * grouped (sigmaRows &gt; 0). What the step computes, so that GFLOP/s against the peak stays honest.
     */
    public static double trainFlopsPerSample(Spec s, int batch, int sigmaRows) {
        double embedding = 2.0 * s.model().hiddenSize() * s.model().hiddenSize() * (sigmaRows > 0 ? (double) sigmaRows / batch : 1);
        return 4 * (flopsPerSample(s) + embedding);
    }

    public static Result run(Spec spec, Backend backend, String label, List<Integer> batches, int trainBatch, double seconds, Progress progress) {
        return run(spec, backend, label, batches, trainBatch, seconds, false, progress);
    }

    /** With profile, one more run of each program records every kernel's time (device events where there are some). */
    public static Result run(Spec spec, Backend backend, String label, List<Integer> batches, int trainBatch, double seconds,
                             boolean profile, Progress progress) {
        int total = 2 * batches.size() + 3, done = 0;
        progress.at(label + ": measuring the device's FMA peak (once per device)", done, total);
        double peak = PeakCache.peakGflops(backend);
        progress.at(label + ": generating and loading kernels", ++done, total);
        long t0 = System.nanoTime();
        var sampler = Compiler.sampler(spec);
        int sigmaRows = Compiler.sigmaRows(spec, trainBatch);
        var train = Compiler.trainStep(spec, null, sigmaRows);
        double generateMs = (System.nanoTime() - t0) / 1e6;
        int maxBatch = Collections.max(batches);
        long t1 = System.nanoTime();
        // One sampler for every batch, unless the backend runs large batches as other kernels (cuda's
        // CMC_CUDA_MLP=fused): then each batch is timed on the program it gets when loaded for that batch.
        Map<Program, Executable> samplers = new LinkedHashMap<>();
        try {
            Map<Integer, Program> programOf = new HashMap<>();
            long samplerBytes = 0;
            for (int b : batches.stream().sorted(Comparator.reverseOrder()).toList()) {
                Program prepared = backend.prepare(sampler.program(), b);
                if (!samplers.containsKey(prepared)) {
                    samplers.put(prepared, backend.load(sampler.program(), b));
                    samplerBytes += backend.arrayBytes(prepared, b);
                }
                programOf.put(b, prepared);
            }
            try (Executable t = backend.load(train.program(), trainBatch)) {
                double loadMs = (System.nanoTime() - t1) / 1e6;
                var rng = new SplittableRandom(1);
                float[] params = sampler.layout().initialize(1);
                int d = spec.model().inputDim();
                float sigmaMax = (float) spec.model().sigmaMax();
                float tau = (float) Schedules.defaultSamplingSigmas(spec, 2)[1];
                float noiseScale = (float) Math.sqrt(tau * tau - spec.model().sigmaMin() * spec.model().sigmaMin());
                // As ConsistencyModel.sample runs Algorithm 1: x = 0 and noise of scale σ_max drawn in the kernel,
                // then the output copied back to x on the device and noise of scale √(τ² − σ_min²).
                float[] first = {1, 0, sigmaMax}, second = {2, 0, noiseScale};
                var cases = new ArrayList<Sampling>();
                for (var e : samplers.values()) e.write("params", params, params.length);
                for (int b : batches) {
                    Executable s = samplers.get(programOf.get(b));
                    progress.at(label + ": 1-step sampling at batch " + b, ++done, total);
                    s.clear("x", b * d);
                    s.write(Compiler.NOISE, first, first.length);
                    s.write("sigma", new float[]{sigmaMax}, 1);
                    double one = time(() -> s.run(b), seconds);
                    progress.at(label + ": 2-step sampling at batch " + b, ++done, total);
                    double two = time(() -> {
                        s.clear("x", b * d);
                        s.write(Compiler.NOISE, first, first.length);
                        s.write("sigma", new float[]{sigmaMax}, 1);
                        s.run(b);
                        s.copy("out", "x", b * d);
                        s.write(Compiler.NOISE, second, second.length);
                        s.write("sigma", new float[]{tau}, 1);
                        s.run(b);
                    }, seconds);
                    cases.add(new Sampling(b, one, two));
                }
                progress.at(label + ": CT training step at batch " + trainBatch, ++done, total);
                loadTrainingInputs(t, spec, train.layout().initialize(1), trainBatch, rng);
                double stepMs = time(() -> t.run(trainBatch), seconds);
                Program sampled = programOf.get(batches.getFirst());
                Map<String, Double> sampleKernels = profile ? kernelTimes(samplers.get(sampled), batches.getFirst()) : Map.of();
                Map<String, Double> stepKernels = profile ? kernelTimes(t, trainBatch) : Map.of();
                // Counted on the programs as the backend runs them (cuda may fuse kernels of the compiler's).
                Program stepped = backend.prepare(train.program(), trainBatch);
                Map<String, Double> sampleFlops = profile ? gemmFlops(sampled, batches.getFirst()) : Map.of();
                Map<String, Double> stepFlops = profile ? gemmFlops(stepped, trainBatch) : Map.of();
                Map<String, Double> sampleBytes = profile ? activationBytes(sampled, batches.getFirst()) : Map.of();
                Map<String, Double> stepBytes = profile ? activationBytes(stepped, trainBatch) : Map.of();
                double sampleChain = profile ? chainMs(sampled, sampleKernels) : Double.NaN;
                double stepChain = profile ? chainMs(stepped, stepKernels) : Double.NaN;
                // Where the kernels record when they run (cmc bench --trace): the sampler at the first batch, then the step.
                var timelines = new ArrayList<dev.cmc.runtime.Timeline>();
                for (var run : List.of(Map.entry(samplers.get(sampled), batches.getFirst()), Map.entry(t, trainBatch))) {
                    if (run.getKey() instanceof dev.cmc.runtime.cuda.CudaExecutable cu && cu.recordsTimeline()) timelines.add(cu.timeline(run.getValue()));
                }
                progress.at(label + ": done", total, total);
                long deviceBytes = samplerBytes + backend.arrayBytes(stepped, trainBatch);
                return new Result(spec.name(), sampler.layout().total(), label, backend.deviceName(), Runtime.getRuntime().availableProcessors(),
                        generateMs, loadMs, cases, trainBatch, sigmaRows, stepMs, flopsPerSample(spec),
                        trainFlopsPerSample(spec, trainBatch, sigmaRows), peak, deviceBytes,
                        Memory.peakRssBytes(), sampleKernels, stepKernels, sampleFlops, stepFlops, sampleBytes, stepBytes, sampleChain, stepChain,
                        List.copyOf(timelines));
            }
        } finally {
            for (Executable e : samplers.values()) e.close();
        }
    }

    /** The median time of one CT step at a batch size, nothing else measured (for the scaling sweep). */
    public static double stepMs(Spec spec, Backend backend, int batch, double seconds) {
        var train = trainStep(spec, batch);
        try (Executable t = backend.load(train.program(), batch)) {
            loadTrainingInputs(t, spec, train.layout().initialize(1), batch, new SplittableRandom(3));
            return time(() -> t.run(batch), seconds);
        }
    }

    /** The training step as {@code cmc train} compiles it for this batch (σ embedded once per distinct σ where that pays). */
    public static Compiler.Compiled trainStep(Spec spec, int batch) {
        return Compiler.trainStep(spec, null, Compiler.sigmaRows(spec, batch));
    }

    /**
     * Weights, a target, a batch of data, σ pairs from the end of the spec's CT curriculum (its finest grid,
     * adjacent levels drawn uniformly) and Adam's scalars: a CT step on real numbers. z is drawn by the step's
     * kernel, as the trainer runs it (and as PyTorch's step draws its own).
     */
    public static void loadTrainingInputs(Executable t, Spec spec, float[] params, int batch, SplittableRandom rng) {
        t.write("params", params, params.length);
        t.write("target", params, params.length);
        t.write("ema", params, params.length);
        int d = spec.model().inputDim();
        float[] x0 = new float[batch * d], w = new float[batch];
        for (int i = 0; i < x0.length; i++) x0[i] = (float) (0.5 * rng.nextGaussian());
        java.util.Arrays.fill(w, 1);
        float[][] sigma = sigmaPairs(spec, batch, rng);
        for (var e : Map.of("x0", x0, "sigma_hi", sigma[0], "sigma_lo", sigma[1], "weight", w).entrySet()) t.write(e.getKey(), e.getValue(), e.getValue().length);
        t.write(Compiler.NOISE, new float[]{rng.nextInt(dev.cmc.kernel.Noise.SEEDS), 0, 1}, 3);
        writeSigmaGroups(t, spec, sigma, batch);
        float[] sc = new float[OptimizerScalars.SIZE];
        OptimizerScalars.fill(sc, "adam", 1, 1e-5, 0.9, 0.999, 1e-8, 0, 0.9, 0.999, 1);
        t.write("scalars", sc, sc.length);
    }

    /** {σ_hi, σ_lo} for a batch: adjacent levels of the spec's finest CT grid (N = s1 + 1), drawn uniformly. */
    public static float[][] sigmaPairs(Spec spec, int batch, SplittableRandom rng) {
        var m = spec.model();
        double[] grid = Schedules.karras(spec.train().s1() + 1, m.sigmaMin(), m.sigmaMax(), spec.schedule().rho());
        float[] hi = new float[batch], lo = new float[batch];
        for (int i = 0; i < batch; i++) {
            int level = rng.nextInt(grid.length - 1);
            lo[i] = (float) grid[level];
            hi[i] = (float) grid[level + 1];
        }
        return new float[][]{hi, lo};
    }

    /** The σ groups a step from {@link #trainStep} reads, where it embeds σ once per distinct value. */
    public static void writeSigmaGroups(Executable t, Spec spec, float[][] sigma, int batch) {
        int rows = Compiler.sigmaRows(spec, batch);
        if (rows > 0) SigmaGroups.inputs(sigma[0], sigma[1], batch, rows).forEach((name, v) -> t.write(name, v, v.length));
    }

    /** One memory sample of a soak run. */
    public record SoakSample(long step, double msPerStep, long rssBytes, long heapBytes, long deviceBytes) {}

    public record Soak(String backend, int batch, List<SoakSample> samples, long warmupSteps) {
        /** RSS growth from the end of warm-up to the end, in bytes. */
        public long rssGrowth() {
            long atWarm = samples.stream().filter(s -> s.step() >= warmupSteps).findFirst().orElse(samples.getFirst()).rssBytes();
            return samples.getLast().rssBytes() - atWarm;
        }

        /** No leak: RSS after warm-up grows by less than 5% and less than 64 MiB, and device memory by under 1 MiB. */
        public boolean steady() {
            SoakSample warm = samples.stream().filter(s -> s.step() >= warmupSteps).findFirst().orElse(samples.getFirst());
            long atWarm = warm.rssBytes();
            boolean device = samples.getLast().deviceBytes() - warm.deviceBytes() < (1L << 20);
            return device && rssGrowth() < Math.min(64L << 20, atWarm / 20);
        }

        public String csv() {
            var sb = new StringBuilder("step,ms_per_step,rss_bytes,heap_bytes,device_bytes\n");
            for (SoakSample s : samples) sb.append(String.format(Locale.ROOT, "%d,%.4f,%d,%d,%d%n", s.step(), s.msPerStep(), s.rssBytes(), s.heapBytes(), s.deviceBytes()));
            return sb.toString();
        }
    }

    /**
     * Runs the CT step {@code steps} times at one batch, sampling host RSS, the JVM heap and device memory every
     * {@code every} steps. The first tenth is warm-up (JIT, allocator pools); growth after it would be a leak.
     */
    public static Soak soak(Spec spec, Backend backend, String label, int batch, long steps, int every, Progress progress) {
        var train = trainStep(spec, batch);
        try (Executable t = backend.load(train.program(), batch)) {
            loadTrainingInputs(t, spec, train.layout().initialize(1), batch, new SplittableRandom(2));
            float[] loss = new float[1];
            long deviceBytes = backend.arrayBytes(backend.prepare(train.program(), batch), batch);
            var samples = new ArrayList<SoakSample>();
            long last = System.nanoTime();
            for (long step = 1; step <= steps; step++) {
                t.run(batch);
                if (step % every == 0 || step == steps) {
                    t.read("loss", loss, 1);
                    long now = System.nanoTime();
                    var rt = Runtime.getRuntime();
                    long inUse = t.deviceBytesInUse();   // the driver's figure where there is one (CUDA), else what cmc allocated
                    long rss = Memory.rssBytes();
                    samples.add(new SoakSample(step, (now - last) / 1e6 / every, rss, rt.totalMemory() - rt.freeMemory(),
                            inUse >= 0 ? inUse : deviceBytes));
                    last = now;
                    progress.at(String.format("%s: soak, loss %.4f, RSS %.0f MiB", label, loss[0], rss / 1048576.0), (int) step, (int) steps);
                }
            }
            return new Soak(label, batch, samples, steps / 10);
        }
    }

    /** FLOPs of each GEMM of a program at a batch: 2·M·N·K, K the batch for a weight gradient; a fused MLP block's two, a chain's all. */
    static Map<String, Double> gemmFlops(Program p, int batch) {
        var out = new LinkedHashMap<String, Double>();
        for (var k : p.kernels()) {
            switch (k) {
                case dev.cmc.kernel.Kernel.Gemm g -> out.merge(k.name(), flops(g, batch), Double::sum);
                case dev.cmc.kernel.Kernel.Mlp m -> out.merge(k.name(), flops(m.up(), batch) + flops(m.down(), batch), Double::sum);
                case dev.cmc.kernel.Kernel.MlpChain c -> {
                    for (var m : c.blocks()) out.merge(k.name(), flops(m.up(), batch) + flops(m.down(), batch), Double::sum);
                    if (c.stem() != null) out.merge(k.name(), flops(c.stem(), batch), Double::sum);
                    if (c.head() != null) out.merge(k.name(), flops(c.head(), batch), Double::sum);
                }
                default -> {}
            }
        }
        return out;
    }

    private static double flops(dev.cmc.kernel.Kernel.Gemm g, int batch) {
        double m = g.domain().batched() ? batch : g.domain().rows(), depth = g.transposeA() ? batch : g.k();
        return 2 * m * g.domain().cols() * depth;
    }

    /**
     * Bytes of each kernel's batch-sized arrays at a batch, read or written, each counted once: the activation
     * traffic a kernel cannot avoid (parameters are left out: many blocks share them through the caches).
     */
    static Map<String, Double> activationBytes(Program p, int batch) {
        var out = new LinkedHashMap<String, Double>();
        for (var k : p.kernels()) {
            var arrays = new java.util.TreeSet<>(dev.cmc.kernel.Kernels.reads(k));
            arrays.addAll(dev.cmc.kernel.Kernels.writes(k));
            double bytes = 0;
            for (String a : arrays) {
                var shape = p.arrays().get(p.arrayIndex(a)).shape();
                if (shape.batched()) bytes += 4.0 * batch * shape.cols();
            }
            out.merge(k.name(), bytes, Double::sum);
        }
        return out;
    }

    /**
     * The longest chain of dependent kernels of a program, each at its profiled time: set beside the run's time,
     * what the rest (launches, waits between kernels, streams that serialise) costs.
     */
    static double chainMs(Program p, Map<String, Double> times) {
        double[] each = new double[p.kernels().size()];
        for (int k = 0; k < each.length; k++) each[k] = times.getOrDefault(p.kernels().get(k).name(), 0.0);
        return dev.cmc.kernel.TaskDag.criticalPath(dev.cmc.kernel.TaskDag.dependencies(p), each);
    }

    /** Per-kernel times of one run: device events on OpenCL, wall time per launch on the JVM. */
    static Map<String, Double> kernelTimes(Executable exe, int batch) {
        if (exe instanceof dev.cmc.runtime.opencl.OpenClExecutable cl) return cl.profile(batch);
        if (exe instanceof dev.cmc.runtime.cuda.CudaExecutable cu) return cu.profile(batch);
        var times = new LinkedHashMap<String, Double>();
        if (exe instanceof dev.cmc.runtime.jvm.JvmExecutable j) {
            for (int k = 0; k < j.program().kernels().size(); k++) {
                long a = System.nanoTime();
                j.launch(k, batch);
                times.merge(j.program().kernels().get(k).name(), (System.nanoTime() - a) / 1e6, Double::sum);
            }
        }
        return times;
    }

    /**
     * Warm up until runs stop getting faster (the JIT compiles the jvm backend's kernels for seconds; a GPU
     * settles at once), then the median of timed runs over two thirds of the budget. Warm-up goes in windows
     * of a ninth of the budget, for at least a third of it and at most five times it (a minute at most), and
     * ends when a window's median is within 5% of the one before.
     */
    private static double time(Runnable r, double seconds) {
        long start = System.nanoTime(), least = (long) (seconds / 3 * 1e9), most = (long) (Math.min(60, 5 * seconds) * 1e9);
        double before = Double.POSITIVE_INFINITY;
        while (true) {
            double window = median(r, seconds / 9, 3);
            long spent = System.nanoTime() - start;
            if (spent >= most || spent >= least && window > 0.95 * before) break;
            before = window;
        }
        return median(r, seconds * 2 / 3, 5);
    }

    /** The median time of runs over this many seconds, at least {@code least} runs, in ms. */
    private static double median(Runnable r, double seconds, int least) {
        var samples = new ArrayList<Double>();
        long end = System.nanoTime() + (long) (seconds * 1e9);
        while (System.nanoTime() < end || samples.size() < least) {
            long a = System.nanoTime();
            r.run();
            samples.add((System.nanoTime() - a) / 1e6);
        }
        samples.sort(null);
        return samples.get(samples.size() / 2);
    }

    /** Host memory of this process, from /proc (0 where there is none). */
    public static final class Memory {
        private Memory() {}

        public static long rssBytes() { return status("VmRSS:"); }

        public static long peakRssBytes() { return status("VmHWM:"); }

        private static long status(String key) {
            try {
                for (String l : Files.readAllLines(Path.of("/proc/self/status"))) {
                    if (l.startsWith(key)) return 1024 * Long.parseLong(l.substring(key.length()).trim().split("\\s+")[0]);
                }
            } catch (IOException | RuntimeException ignored) {
                // not Linux
            }
            return 0;
        }
    }
}
