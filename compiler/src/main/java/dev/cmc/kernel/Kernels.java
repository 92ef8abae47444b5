package dev.cmc.kernel;

import java.util.ArrayList;
import java.util.LinkedHashSet;
import java.util.List;
import java.util.Set;

/**
 * What a kernel reads and writes: element ranges of arrays (the edges of the task graph, {@link TaskDag}),
 * and the arrays they lie in (a kernel's arguments).
 */
public final class Kernels {
    private Kernels() {}

    private static final List<String> OPTIMIZER_WRITES = List.of("params", "adam_m", "adam_v", "target", "ema");
    private static final List<String> OPTIMIZER_READS = List.of("params", "grads", "adam_m", "adam_v", "target", "ema", "scalars");

    /** Elements [from, to) of an array; to is Long.MAX_VALUE for a batched tensor, whose extent the batch decides. */
    public record Range(String array, long from, long to) {
        static Range of(Buf b) {
            long size = b.shape().batched() ? Long.MAX_VALUE - b.offset() : (long) b.shape().rows() * b.shape().cols();
            return new Range(b.array(), b.offset(), b.offset() + size);
        }

        static Range whole(String array) { return new Range(array, 0, Long.MAX_VALUE); }

        boolean overlaps(Range o) { return array.equals(o.array) && from < o.to && o.from < to; }
    }

    public static Set<String> writes(Kernel k) { return arrays(writeRanges(k)); }

    public static Set<String> reads(Kernel k) { return arrays(readRanges(k)); }

    public static List<Range> writeRanges(Kernel k) {
        var out = new ArrayList<Range>();
        for (Expr.Let l : k.epilogue()) if (l.store() != null) out.add(Range.of(l.store()));
        switch (k) {
            case Kernel.Transpose t -> out.add(Range.of(t.dst()));
            case Kernel.SumSquares s -> out.add(Range.of(s.out()));
            case Kernel.AdamEma a -> { for (String name : OPTIMIZER_WRITES) out.add(optimized(name, a)); }
            default -> {}
        }
        return out;
    }

    /** What an optimizer kernel touches of one of its arrays: its parameters' elements, or all the scalars. */
    private static Range optimized(String array, Kernel.AdamEma a) {
        return array.equals("scalars") ? Range.whole(array) : new Range(array, a.offset(), (long) a.offset() + a.count());
    }

    public static List<Range> readRanges(Kernel k) {
        var out = new ArrayList<Range>();
        switch (k) {
            case Kernel.Gemm g -> { out.add(Range.of(g.a())); out.add(Range.of(g.b())); }
            case Kernel.Normalize n -> { collect(n.x(), out); if (n.grad() != null) collect(n.grad(), out); }
            case Kernel.ReduceCols r -> collect(r.x(), out);
            case Kernel.ReduceBatch r -> collect(r.x(), out);
            case Kernel.SegmentSum s -> { collect(s.x(), out); out.add(Range.of(s.order())); out.add(Range.of(s.starts())); }
            case Kernel.Transpose t -> out.add(Range.of(t.src()));
            case Kernel.SumSquares s -> out.add(new Range(s.array(), 0, s.count()));
            case Kernel.AdamEma a -> { for (String name : OPTIMIZER_READS) out.add(optimized(name, a)); }
            case Kernel.Elementwise e -> {}
            case Kernel.MlpChain c -> {   // what its stem, blocks and head read, but the outputs one hands the next on chip
                var handed = new java.util.HashSet<String>();
                for (int b = 0; b + 1 < c.blocks().size(); b++) handed.add(c.blocks().get(b).output().array());
                var parts = new ArrayList<Range>();
                for (Kernel.Mlp m : c.blocks()) parts.addAll(readRanges(m));
                if (c.stem() != null) {
                    handed.add(c.stem().output().array());
                    parts.add(Range.of(c.stem().a()));
                    parts.add(Range.of(c.stemT()));
                    for (Expr.Let l : c.stem().epilogue()) collect(l.value(), parts);
                }
                if (c.head() != null) {
                    handed.add(c.blocks().getLast().output().array());
                    parts.add(Range.of(c.headT()));
                    for (Expr.Let l : c.head().epilogue()) collect(l.value(), parts);
                }
                for (Range r : parts) if (!handed.contains(r.array())) out.add(r);
                return out;
            }
            case Kernel.Mlp m -> {   // what its three parts read, but the two intermediates, which stay on chip
                var parts = new ArrayList<Range>();
                collect(m.norm().x(), parts);
                for (Expr.Let l : m.norm().epilogue()) collect(l.value(), parts);
                for (Expr.Let l : m.up().epilogue()) collect(l.value(), parts);
                parts.add(Range.of(m.transposedWeights() ? m.upT() : m.up().b()));
                parts.add(Range.of(m.transposedWeights() ? m.downT() : m.down().b()));
                for (Range r : parts) if (!r.array().equals(m.normalized().array()) && !r.array().equals(m.hidden().array())) out.add(r);
            }
        }
        for (Expr.Let l : k.epilogue()) collect(l.value(), out);
        return out;
    }

    private static void collect(Expr e, List<Range> out) {
        switch (e) {
            case Expr.Load l -> out.add(Range.of(l.buf()));
            case Expr.Gather g -> { out.add(Range.of(g.table())); out.add(Range.of(g.index())); }
            case Expr.Unary u -> collect(u.a(), out);
            case Expr.Binary b -> { collect(b.a(), out); collect(b.b(), out); }
            case Expr.Noise n -> { collect(n.seed(), out); collect(n.firstRow(), out); }
            default -> {}
        }
    }

    /** Does the kernel's epilogue draw noise? Renderers run such kernels on their scalar paths. */
    public static boolean drawsNoise(List<Expr.Let> lets) {
        for (Expr.Let l : lets) if (drawsNoise(l.value())) return true;
        return false;
    }

    private static boolean drawsNoise(Expr e) {
        return switch (e) {
            case Expr.Noise n -> true;
            case Expr.Unary u -> drawsNoise(u.a());
            case Expr.Binary b -> drawsNoise(b.a()) || drawsNoise(b.b());
            default -> false;
        };
    }

    private static Set<String> arrays(List<Range> ranges) {
        var out = new LinkedHashSet<String>();
        for (Range r : ranges) out.add(r.array());
        return out;
    }
}
