package dev.cmc.model;

import dev.cmc.ir.Shape;

import java.util.*;

/**
 * Where each parameter lives in the one flat float array that holds them all. One flat array is what lets
 * Adam and the EMA updates run as a single vectorised pass over every parameter.
 */
public final class ParamLayout {
    public record Entry(String name, Shape shape, int offset, Init init, int fanIn) {
        public int size() { return shape.rows() * shape.cols(); }
    }

    public enum Init { UNIFORM_FAN_IN, ONES, ZEROS }

    private final Map<String, Entry> entries = new LinkedHashMap<>();
    private int total;

    void add(String name, Shape shape, Init init, int fanIn) {
        entries.put(name, new Entry(name, shape, total, init, fanIn));
        total += shape.rows() * shape.cols();
    }

    public Entry get(String name) {
        Entry e = entries.get(name);
        if (e == null) throw new IllegalArgumentException("no parameter " + name);
        return e;
    }

    public Collection<Entry> entries() { return entries.values(); }

    public int total() { return total; }

    /** PyTorch's nn.Linear and nn.LayerNorm defaults: U(±1/√fan_in) for weights and biases, γ = 1, β = 0. */
    public float[] initialize(long seed) {
        var rng = new SplittableRandom(seed);
        float[] p = new float[total];
        for (Entry e : entries.values()) {
            double bound = e.fanIn > 0 ? 1.0 / Math.sqrt(e.fanIn) : 0;
            for (int i = 0; i < e.size(); i++) {
                p[e.offset + i] = switch (e.init) {
                    case UNIFORM_FAN_IN -> (float) ((rng.nextDouble() * 2 - 1) * bound);
                    case ONES -> 1f;
                    case ZEROS -> 0f;
                };
            }
        }
        return p;
    }
}
