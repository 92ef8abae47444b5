package dev.cmc.runtime.train;

import dev.cmc.dsl.Spec;
import dev.cmc.runtime.api.ConsistencyModel;
import dev.cmc.runtime.data.Datasets;

import java.util.LinkedHashMap;
import java.util.Map;

/**
 * How good samples are: sliced Wasserstein and energy distance to held-out data, beside the same metrics for
 * two independent draws of the data (the floor: what a perfect model scores) and for the untrained network
 * (the ceiling).
 */
public final class Evaluation {
    private Evaluation() {}

    /** Distances to held-out data, and the wall time to draw the samples (0 for the reference rows). */
    public record Score(double slicedWasserstein, double energy, double millis) {}

    public record Report(int count, Map<String, Score> rows, Map<String, float[]> samples, Datasets.Data heldOut) {
        public String table() {
            var sb = new StringBuilder(String.format("%-26s %18s %16s %12s%n", "samples (" + count + ")", "sliced Wasserstein", "energy distance", "sampling ms"));
            rows.forEach((k, v) -> sb.append(String.format("%-26s %18.4f %16.4f %12s%n", k, v.slicedWasserstein(), v.energy(),
                    v.millis() > 0 ? String.format("%.0f", v.millis()) : "")));
            return sb.toString();
        }

        public String csv() {
            var sb = new StringBuilder("samples,sliced_wasserstein,energy_distance,sampling_ms\n");
            rows.forEach((k, v) -> sb.append(k.replace(' ', '_')).append(',').append(v.slicedWasserstein()).append(',').append(v.energy())
                    .append(',').append(v.millis()).append('\n'));
            return sb.toString();
        }
    }

    /** Held-out data: a fresh draw for builtin sets, the last tenth for files (training then uses the rest). */
    public static Datasets.Data heldOut(Spec spec, Datasets.Data all, int count) {
        String src = spec.data().source();
        if (src.startsWith("builtin:")) return Datasets.builtin(src.substring(8), count, spec.train().seed() + 7919);
        return tail(all, Math.max(1, all.n() / 10));
    }

    public static Datasets.Data tail(Datasets.Data d, int n) {
        float[] v = java.util.Arrays.copyOfRange(d.values(), (d.n() - n) * d.dim(), d.n() * d.dim());
        return new Datasets.Data(n, d.dim(), v);
    }

    /** Consistency models: 1, 2, … step sampling; an EDM teacher: its Heun and Euler samplers with 18 levels. */
    public static Map<String, java.util.function.IntFunction<float[]>> samplers(ConsistencyModel model, int... steps) {
        var out = new LinkedHashMap<String, java.util.function.IntFunction<float[]>>();
        long seed = model.spec().sample().seed();
        if (model.spec().train().method().equals("edm")) {
            out.put("heun-18 (35 evals)", n -> model.odeSample(n, seed, 18, true));
            out.put("euler-18 (18 evals)", n -> model.odeSample(n, seed, 18, false));
        } else {
            for (int s : steps) out.put(s + "-step", n -> model.multiStepSample(n, seed, s));
        }
        return out;
    }

    public static Report evaluate(ConsistencyModel model, Datasets.Data all, int count, int... steps) {
        return evaluate(model, all, count, samplers(model, steps));
    }

    public static Report evaluate(ConsistencyModel model, Datasets.Data all, int count, Map<String, java.util.function.IntFunction<float[]>> samplers) {
        Spec spec = model.spec();
        Datasets.Data held = heldOut(spec, all, count);
        int n = Math.min(count, held.n()), d = held.dim();
        Datasets.Data other = spec.data().source().startsWith("builtin:")
                ? Datasets.builtin(spec.data().source().substring(8), n, spec.train().seed() + 104729)
                : new Datasets.Data(Math.min(n, all.n()), d, all.values());
        int m = Math.min(n, other.n());
        var rows = new LinkedHashMap<String, Score>();
        var samples = new LinkedHashMap<String, float[]>();
        rows.put("data vs data (floor)", score(held.values(), other.values(), m, d));
        try (var untrained = ConsistencyModel.build(spec)) {
            float[] u = untrained.singleStepSample(n, spec.sample().seed());
            rows.put("untrained (ceiling)", score(held.values(), u, n, d));
        }
        for (var e : samplers.entrySet()) {
            e.getValue().apply(n); // compile and warm the JIT, so the timing below is of sampling alone
            long t0 = System.nanoTime();
            float[] x = e.getValue().apply(n);
            double ms = (System.nanoTime() - t0) / 1e6;
            samples.put(e.getKey(), x);
            Score sc = score(held.values(), x, n, d);
            rows.put(e.getKey(), new Score(sc.slicedWasserstein(), sc.energy(), ms));
        }
        return new Report(n, rows, samples, held);
    }

    public static Score score(float[] a, float[] b, int n, int d) {
        return new Score(Metrics.slicedWasserstein(a, n, b, n, d, 128, 1), Metrics.energyDistance(a, b, Math.min(n, 1000), d), 0);
    }
}
