package dev.cmc.bench;

import dev.cmc.dsl.Spec;
import dev.cmc.runtime.Backends;
import dev.cmc.runtime.api.ConsistencyModel;
import org.openjdk.jmh.results.RunResult;
import org.openjdk.jmh.runner.Runner;
import org.openjdk.jmh.runner.options.OptionsBuilder;

import java.nio.file.Files;
import java.nio.file.Path;
import java.util.*;

/**
 * cmc beside PyTorch (through DJL) on this machine's CPU, in one JMH run. First checks that both compute the
 * same function from the same weights (sampling outputs, and the loss over three training steps, so Adam and
 * the EMAs are compared too); then runs {@link SideBySide} for every implementation and prints each time with
 * cmc's time over PyTorch's. Writes side_by_side.md and side_by_side.json into the output folder.
 * <p>Usage: Compare [--impls jvm,opencl:0,pytorch] [--threads 2] [--out runs/bench]
 */
public final class Compare {
    private Compare() {}

    public static void main(String[] args) throws Exception {
        var opts = new LinkedHashMap<String, String>();
        for (int i = 0; i + 1 < args.length; i += 2) opts.put(args[i], args[i + 1]);
        if (args.length % 2 != 0 || !Set.of("--impls", "--threads", "--out").containsAll(opts.keySet())) {
            System.err.println("usage: Compare [--impls jvm,opencl:0,pytorch] [--threads N] [--out DIR]");
            System.exit(2);
        }
        int threads = Integer.parseInt(opts.getOrDefault("--threads", Integer.toString(Runtime.getRuntime().availableProcessors())));
        Path out = Path.of(opts.getOrDefault("--out", "runs/bench"));
        List<String> impls = new ArrayList<>();
        if (opts.containsKey("--impls")) impls.addAll(List.of(opts.get("--impls").split(",")));
        else {
            impls.add("jvm");
            for (String b : Backends.available()) if (b.startsWith("opencl:")) impls.add(b);
            impls.add("pytorch");
        }
        TorchPeer.configure(threads);
        checkSameFunction(SideBySide.spec());

        var options = new OptionsBuilder().include(SideBySide.class.getName() + ".*")
                .param("impl", impls.toArray(String[]::new)).param("threads", Integer.toString(threads)).build();
        Collection<RunResult> results = new Runner(options).run();
        String table = table(results, impls, threads);
        System.out.println();
        System.out.println(table);
        Files.createDirectories(out);
        Files.writeString(out.resolve("side_by_side.md"), table);
        Files.writeString(out.resolve("side_by_side.json"), json(results, threads));
        System.out.println("wrote " + out.resolve("side_by_side.md") + " and side_by_side.json");
    }

    /** Same weights into cmc (jvm) and PyTorch: outputs and three steps' losses must agree, or nothing is timed. */
    static void checkSameFunction(Spec spec) {
        int batch = 256, d = spec.model().inputDim();
        var rng = new SplittableRandom(3);
        float[] x = new float[batch * d], sigma = new float[batch];
        for (int i = 0; i < x.length; i++) x[i] = (float) (2 * rng.nextGaussian());
        Arrays.fill(sigma, 2f);
        try (var cmc = ConsistencyModel.build(spec); var torch = new TorchPeer(spec, cmc.layout(), cmc.params(), spec.train().lr())) {
            double outErr = maxRelative(cmc.denoise(cmc.ema(), x, sigma, batch), torch.sample(x, batch, 2f));
            System.out.printf("same function: 1-step outputs differ by at most %.2e (relative to the largest)%n", outErr);
            if (outErr > 1e-4) fail("sampling outputs differ by " + outErr);
            float[] x0 = new float[batch * d], z = new float[batch * d], hi = new float[batch], lo = new float[batch], w = new float[batch];
            for (int step = 1; step <= 3; step++) {
                for (int i = 0; i < x0.length; i++) { x0[i] = (float) (0.5 * rng.nextGaussian()); z[i] = (float) rng.nextGaussian(); }
                for (int i = 0; i < batch; i++) { lo[i] = (float) (0.002 + 2 * rng.nextDouble()); hi[i] = 1.3f * lo[i]; w[i] = 1; }
                float a = cmc.trainStep(x0, z, hi, lo, w, 0.9, true);
                var m = torch.manager();
                float b = torch.trainStep(m.create(x0, new ai.djl.ndarray.types.Shape(batch, d)), m.create(z, new ai.djl.ndarray.types.Shape(batch, d)),
                        m.create(hi), m.create(lo), m.create(w), 0.9f, (float) spec.train().emaDecay());
                double rel = Math.abs(a - b) / Math.abs(b);
                System.out.printf("same function: CT step %d loss cmc %.6f, PyTorch %.6f (relative difference %.1e)%n", step, a, b, rel);
                if (rel > 1e-3) fail("CT step " + step + " losses differ by " + rel);
            }
        }
    }

    private static double maxRelative(float[] a, float[] b) {
        double err = 0, scale = 1e-12;
        for (int i = 0; i < a.length; i++) { err = Math.max(err, Math.abs(a[i] - b[i])); scale = Math.max(scale, Math.abs(b[i])); }
        return err / scale;
    }

    private static void fail(String why) {
        System.err.println("cmc and PyTorch do not compute the same function: " + why + "; not timing them");
        System.exit(1);
    }

    private record Row(String benchmark, int batch) {}

    static String table(Collection<RunResult> results, List<String> impls, int threads) {
        var ms = new LinkedHashMap<Row, Map<String, double[]>>();
        for (RunResult r : results) {
            String bench = r.getParams().getBenchmark().substring(r.getParams().getBenchmark().lastIndexOf('.') + 1);
            int batch = Integer.parseInt(r.getParams().getParam(bench.equals("ctTrainStep") ? "trainBatch" : "sampleBatch"));
            ms.computeIfAbsent(new Row(bench, batch), k -> new LinkedHashMap<>())
                    .put(r.getParams().getParam("impl"), new double[]{r.getPrimaryResult().getScore(), r.getPrimaryResult().getScoreError()});
        }
        var sb = new StringBuilder("| measurement | batch |");
        for (String i : impls) sb.append(' ').append(label(i)).append(" (ms) |");
        sb.append(" best cmc ÷ PyTorch |\n|---|---|").append("---|".repeat(impls.size() + 1)).append('\n');
        for (var e : ms.entrySet()) {
            sb.append("| ").append(e.getKey().benchmark()).append(" | ").append(e.getKey().batch()).append(" |");
            double best = Double.POSITIVE_INFINITY;
            for (String i : impls) {
                double[] v = e.getValue().get(i);
                sb.append(v == null ? " – |" : String.format(" %.2f ± %.2f |", v[0], v[1]));
                if (v != null && !i.equals("pytorch")) best = Math.min(best, v[0]);
            }
            double[] torch = e.getValue().get("pytorch");
            sb.append(torch == null || best == Double.POSITIVE_INFINITY ? " – |"
                    : String.format(" %.2f (%.2f× faster) |", best / torch[0], torch[0] / best)).append('\n');
        }
        sb.append(String.format("%nJMH average time per operation with its 99.9%% error, %d threads on every side, %s, %d cores, %s.%n",
                threads, System.getProperty("os.arch"), Runtime.getRuntime().availableProcessors(), cpuName()));
        return sb.toString();
    }

    private static String label(String impl) {
        return impl.equals("pytorch") ? "PyTorch 2.7.1 via DJL" : "cmc " + impl;
    }

    static String cpuName() {
        try {
            for (String l : Files.readAllLines(Path.of("/proc/cpuinfo"))) if (l.startsWith("model name")) return l.substring(l.indexOf(':') + 2).trim();
        } catch (java.io.IOException ignored) {
            // not Linux: the table says less
        }
        return "unknown CPU";
    }

    static String json(Collection<RunResult> results, int threads) {
        var sb = new StringBuilder("[\n");
        var it = results.iterator();
        while (it.hasNext()) {
            RunResult r = it.next();
            sb.append(String.format("  {\"benchmark\":\"%s\",\"impl\":\"%s\",\"sample_batch\":%s,\"train_batch\":%s,\"threads\":%d,\"ms\":%.4f,\"error_ms\":%.4f}%s%n",
                    r.getParams().getBenchmark(), r.getParams().getParam("impl"), r.getParams().getParam("sampleBatch"),
                    r.getParams().getParam("trainBatch"), threads, r.getPrimaryResult().getScore(), r.getPrimaryResult().getScoreError(),
                    it.hasNext() ? "," : ""));
        }
        return sb.append("]\n").toString();
    }
}
