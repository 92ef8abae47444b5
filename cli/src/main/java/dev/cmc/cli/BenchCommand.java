package dev.cmc.cli;

import dev.cmc.dsl.Spec;
import dev.cmc.dsl.SpecLoader;
import dev.cmc.runtime.Backend;
import dev.cmc.runtime.Backends;
import dev.cmc.runtime.bench.Bench;
import me.tongfei.progressbar.ProgressBar;
import me.tongfei.progressbar.ProgressBarBuilder;
import me.tongfei.progressbar.ProgressBarStyle;
import picocli.CommandLine.Command;
import picocli.CommandLine.Mixin;
import picocli.CommandLine.Option;

import java.nio.file.Files;
import java.nio.file.Path;
import java.util.*;
import java.util.concurrent.Callable;

@Command(name = "bench", mixinStandardHelpOptions = true,
        description = {"Time a spec's model on each backend: kernels, sampling, one training step, memory.",
                "Kernel generation and load, 1- and 2-step sampling at each batch, one CT training step,",
                "GFLOP/s against the device's measured FMA peak, memory.",
                "--soak N runs N training steps watching memory; --scaling sweeps batch, hidden_size and num_layers."})
final class BenchCommand implements Callable<Integer> {
    @Mixin SpecOptions spec;

    @Option(names = "--backends", split = ",", defaultValue = "all", paramLabel = "B[,B...]",
            description = "jvm, opencl:0, cuda:0, tornado, ... or all (default: all; what this machine lacks is skipped with the reason)")
    List<String> backends;

    @Option(names = "--batch", split = ",", defaultValue = "256,4096", paramLabel = "N[,N...]", description = "sampling batch sizes (default 256,4096)")
    List<Integer> batches;

    @Option(names = "--train-batch", defaultValue = "256", paramLabel = "N", description = "training batch (default 256)")
    int trainBatch;

    @Option(names = "--seconds", defaultValue = "6", paramLabel = "S", description = "measuring time per case, a third of it warm-up (default 6)")
    double seconds;

    @Option(names = "--json", paramLabel = "FILE", description = "also write the results as JSON")
    Path json;

    @Option(names = "--png", paramLabel = "FILE", description = "also draw the results: throughput against batch, step time per backend")
    Path png;

    @Option(names = "--profile", description = "also show the slowest kernels of each program (OpenCL: device event times)")
    boolean profile;

    @Option(names = "--trace", paramLabel = "FILE", description = "also record when each kernel ran in one sampling run and one training step"
            + " (CUDA GPUs: the kernels record it, two atomics and two stores a block, so time without --trace), print a summary and write it as a"
            + " Chrome trace (Perfetto, chrome://tracing)")
    Path trace;

    @Option(names = "--soak", paramLabel = "STEPS", description = "instead: run this many CT steps at --train-batch on the first backend, sampling RSS and device memory")
    Long soakSteps;

    @Option(names = "--scaling", description = "instead: sampling throughput (batch 256..65536) and step time (256..16384) as the batch, hidden_size and num_layers grow")
    boolean scaling;

    @Override
    public Integer call() throws Exception {
        if (batches.stream().anyMatch(b -> b < 1) || trainBatch < 1) throw new Main.UserError("--batch and --train-batch must be at least 1");
        if (seconds <= 0) throw new Main.UserError("--seconds must be positive");
        if (soakSteps != null && soakSteps < 10) throw new Main.UserError("--soak: at least 10 steps");
        if (soakSteps != null && scaling) throw new Main.UserError("--soak and --scaling: choose one");
        Spec s = spec.load();
        var chosen = new LinkedHashMap<String, Backend>();
        for (String name : expand(backends)) {
            try {
                chosen.put(name, Backends.select(s, name));
            } catch (Backends.UnavailableException e) {
                System.out.println("skipped " + name + ": " + e.getMessage());
            }
        }
        if (chosen.isEmpty()) throw new Main.UserError("--backends " + String.join(",", backends) + ": none of them is available here");
        if (trace != null) {
            if (soakSteps != null || scaling) throw new Main.UserError("--trace records a benchmark run's kernels: not with --soak or --scaling");
            var gpus = chosen.values().stream().filter(b -> b instanceof dev.cmc.runtime.cuda.CudaBackend).toList();
            if (gpus.isEmpty()) {
                throw new Main.UserError("--trace: kernel timelines are recorded on CUDA GPUs only, and none of the backends run here ("
                        + String.join(", ", chosen.keySet()) + ") is one");
            }
            gpus.forEach(b -> ((dev.cmc.runtime.cuda.CudaBackend) b).withTimeline(true));
        }
        if (soakSteps != null) return soak(s, chosen);
        if (scaling) return scaling(s, chosen);

        var results = new ArrayList<Bench.Result>();
        for (var e : chosen.entrySet()) results.add(withBar(e.getKey(), p -> Bench.run(s, e.getValue(), e.getKey(), batches, trainBatch, seconds, profile, p)));
        for (Bench.Result r : results) {
            System.out.println(r.table());
            if (profile) System.out.print(r.profile(8));
            if (trace != null) System.out.print(r.timelineSummaries(5));
        }
        if (trace != null) {
            var labels = new ArrayList<String>();
            var timelines = new ArrayList<dev.cmc.runtime.Timeline>();
            for (Bench.Result r : results) {
                for (var t : r.timelines()) {
                    labels.add(r.backend() + ": " + t.program());
                    timelines.add(t);
                }
            }
            write(trace, dev.cmc.runtime.Timeline.chromeTrace(labels, timelines));
        }
        if (json != null) write(json, "[\n" + String.join(",\n", results.stream().map(Bench.Result::json).toList()) + "\n]\n");
        if (png != null) {
            var throughput = new LinkedHashMap<String, double[][]>();
            var gflops = new LinkedHashMap<String, double[][]>();
            for (Bench.Result r : results) {
                throughput.put(r.backend() + " 1-step", xy(r.sampling(), Bench.Sampling::batch, Bench.Sampling::samplesPerSecond));
                throughput.put(r.backend() + " 2-step", xy(r.sampling(), Bench.Sampling::batch, c -> c.batch() / (c.twoStepMs() / 1e3)));
                gflops.put(r.backend(), xy(r.sampling(), Bench.Sampling::batch, r::sampleGflops));
            }
            var steps = new LinkedHashMap<String, double[][]>();
            for (Bench.Result r : results) steps.put(r.backend(), new double[][]{{r.trainBatch()}, {r.stepMs()}});
            draw(png, List.of(new Plots.Panel(s.name() + ": sampling", "batch", "samples/s", throughput, Plots.Kind.LOG_X),
                    new Plots.Panel("sampling GFLOP/s", "batch", "GFLOP/s", gflops, Plots.Kind.LOG_X),
                    new Plots.Panel("CT training step, batch " + trainBatch, "backend", "ms", steps, Plots.Kind.BARS)));
        }
        return 0;
    }

    /** "all": every backend this machine has, then the ones it lacks, so the report says why each is missing. */
    static List<String> expand(List<String> names) {
        if (!names.equals(List.of("all"))) return names;
        var out = new ArrayList<String>();
        for (String b : Backends.available()) out.add(b.equals("jvm:0") ? "jvm" : b);
        for (String b : List.of("cuda:0", "opencl:0", "tornado")) if (out.stream().noneMatch(o -> o.startsWith(b.replace(":0", "")))) out.add(b);
        return out;
    }

    private int soak(Spec s, Map<String, Backend> chosen) throws Exception {
        var e = chosen.entrySet().iterator().next();
        int every = (int) Math.max(1, soakSteps / 200);
        Bench.Soak result = withBar(e.getKey(), p -> Bench.soak(s, e.getValue(), e.getKey(), trainBatch, soakSteps, every, p));
        var first = result.samples().getFirst();
        var last = result.samples().getLast();
        System.out.printf("soak on %s: %,d CT steps at batch %d%n", e.getKey(), soakSteps, trainBatch);
        System.out.printf("  RSS %.0f MiB after %d steps, %.0f MiB at the end: %+.1f MiB since warm-up (%d steps)%n",
                first.rssBytes() / 1048576.0, first.step(), last.rssBytes() / 1048576.0, result.rssGrowth() / 1048576.0, result.warmupSteps());
        System.out.printf("  device arrays %.1f MiB throughout; step time %.2f ms at the start, %.2f ms at the end%n",
                last.deviceBytes() / 1048576.0, result.samples().get(1).msPerStep(), last.msPerStep());
        System.out.println(result.steady() ? "  steady: no growth after warm-up" : "  GROWING: memory rose after warm-up (see the CSV)");
        if (json != null) write(json, result.csv());
        if (png != null) {
            var rss = new LinkedHashMap<String, double[][]>();
            rss.put("RSS MiB", xy(result.samples(), Bench.SoakSample::step, x -> x.rssBytes() / 1048576.0));
            rss.put("JVM heap MiB", xy(result.samples(), Bench.SoakSample::step, x -> Math.max(1, x.heapBytes() / 1048576.0)));
            rss.put("device arrays MiB", xy(result.samples(), Bench.SoakSample::step, x -> x.deviceBytes() / 1048576.0));
            var ms = new LinkedHashMap<String, double[][]>();
            ms.put("ms per step", xy(result.samples(), Bench.SoakSample::step, Bench.SoakSample::msPerStep));
            draw(png, List.of(new Plots.Panel("soak: memory", "step", "MiB", rss, Plots.Kind.LOG_XY),
                    new Plots.Panel("soak: step time", "step", "ms", ms, Plots.Kind.LOG_X)));
        }
        return result.steady() ? 0 : 1;
    }

    /** Batch 256..65536 at the spec's size, then hidden_size and num_layers around it at batch 4096. */
    private int scaling(Spec s, Map<String, Backend> chosen) throws Exception {
        List<Integer> sweep = List.of(256, 1024, 4096, 16384, 65536);
        int h = s.model().hiddenSize(), l = s.model().numLayers();
        var sizes = new LinkedHashMap<String, List<String>>();
        for (int hh : new java.util.TreeSet<>(List.of(Math.max(2, h / 2), h, 2 * h))) sizes.computeIfAbsent("hidden_size", k -> new ArrayList<>()).add("model.hidden_size=" + hh);
        for (int ll : new java.util.TreeSet<>(List.of(Math.max(1, l / 2), l, 2 * l))) sizes.computeIfAbsent("num_layers", k -> new ArrayList<>()).add("model.num_layers=" + ll);
        var perSample = new LinkedHashMap<String, double[][]>();
        var stepMs = new LinkedHashMap<String, double[][]>();
        var bySize = new LinkedHashMap<String, double[][]>();
        var text = new StringBuilder("backend,sweep,value,batch,one_step_ms,us_per_sample,train_step_ms\n");
        for (var e : chosen.entrySet()) {
            Bench.Result r = withBar(e.getKey(), p -> Bench.run(s, e.getValue(), e.getKey(), sweep, trainBatch, seconds, p));
            System.out.println(r.table());
            perSample.put(e.getKey(), xy(r.sampling(), Bench.Sampling::batch, c -> c.oneStepMs() * 1e3 / c.batch()));
            for (var c : r.sampling()) text.append(String.format(Locale.ROOT, "%s,batch,%d,%d,%.4f,%.4f,%.4f%n", e.getKey(), c.batch(), c.batch(), c.oneStepMs(), c.oneStepMs() * 1e3 / c.batch(), r.stepMs()));
            var trainSweep = new ArrayList<double[]>();
            for (int tb : sweep.subList(0, sweep.size() - 1)) {   // a training step at 65,536 needs ~4 GB of activations (seed model)
                double ms = withBar(e.getKey() + " CT step at batch " + tb, p -> Bench.stepMs(s, e.getValue(), tb, seconds / 2));
                trainSweep.add(new double[]{tb, ms});
                text.append(String.format(Locale.ROOT, "%s,train_batch,%d,%d,,,%.4f%n", e.getKey(), tb, tb, ms));
            }
            stepMs.put(e.getKey(), new double[][]{trainSweep.stream().mapToDouble(v -> v[0]).toArray(), trainSweep.stream().mapToDouble(v -> v[1]).toArray()});
            for (var sz : sizes.entrySet()) {
                var pts = new ArrayList<double[]>();
                for (String set : sz.getValue()) {
                    var over = new ArrayList<>(spec.overrides);
                    over.add(set);
                    Spec resized = SpecLoader.fromText(s.fileName(), s.source(), over);
                    Bench.Result t = withBar(e.getKey() + " " + set, p -> Bench.run(resized, e.getValue(), e.getKey(), List.of(4096), trainBatch, seconds / 2, p));
                    double v = Double.parseDouble(set.substring(set.indexOf('=') + 1));
                    pts.add(new double[]{t.params(), t.sampling().getFirst().oneStepMs() * 1e3 / 4096});
                    text.append(String.format(Locale.ROOT, "%s,%s,%.0f,4096,%.4f,%.4f,%.4f%n", e.getKey(), sz.getKey(), v, t.sampling().getFirst().oneStepMs(),
                            t.sampling().getFirst().oneStepMs() * 1e3 / 4096, t.stepMs()));
                }
                bySize.put(e.getKey() + " " + sz.getKey(), new double[][]{pts.stream().mapToDouble(v -> v[0]).toArray(), pts.stream().mapToDouble(v -> v[1]).toArray()});
            }
        }
        System.out.print(text);
        if (json != null) write(json, text.toString());
        if (png != null) {
            draw(png, List.of(new Plots.Panel(s.name() + ": 1-step cost per sample", "batch", "µs per sample", perSample, Plots.Kind.LOG_XY),
                    new Plots.Panel("CT step time", "training batch", "ms", stepMs, Plots.Kind.LOG_XY),
                    new Plots.Panel("cost per sample as the model grows (batch 4096)", "parameters", "µs per sample", bySize, Plots.Kind.LOG_XY)));
        }
        return 0;
    }

    private interface Measured<T> { T run(Bench.Progress p) throws Exception; }

    /** Runs a measurement under a progress bar on stderr that names the case it is on. */
    private static <T> T withBar(String name, Measured<T> body) throws Exception {
        try (ProgressBar bar = new ProgressBarBuilder().setTaskName(name).setInitialMax(1).setStyle(ProgressBarStyle.ASCII)
                .setUpdateIntervalMillis(300).setConsumer(new me.tongfei.progressbar.ConsoleProgressBarConsumer(System.err)).build()) {
            return body.run((what, done, total) -> {
                bar.maxHint(total);
                bar.stepTo(done);
                bar.setExtraMessage(" " + what);
            });
        }
    }

    private static <T> double[][] xy(List<T> rows, java.util.function.ToDoubleFunction<T> x, java.util.function.ToDoubleFunction<T> y) {
        return new double[][]{rows.stream().mapToDouble(x).toArray(), rows.stream().mapToDouble(y).toArray()};
    }

    private static void write(Path file, String text) throws java.io.IOException {
        Path dir = file.toAbsolutePath().getParent();
        CompileCommand.writeAll(dir, Map.of(file.getFileName().toString(), text));
        System.out.println("wrote " + file);
    }

    private static void draw(Path file, List<Plots.Panel> panels) throws java.io.IOException {
        Path dir = file.toAbsolutePath().getParent();
        Files.createDirectories(dir);
        Plots.panels(file.toAbsolutePath(), panels);
        System.out.println("wrote " + file);
    }
}
