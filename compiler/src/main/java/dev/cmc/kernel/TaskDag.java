package dev.cmc.kernel;

import java.util.ArrayList;
import java.util.List;
import java.util.TreeSet;

/**
 * Which kernels of a program must wait for which, so that a runtime may run the others at the same time:
 * a kernel waits for an earlier one when either writes elements the other reads or writes (read after
 * write, write after read, write after write). Element ranges rather than arrays decide: every weight
 * gradient lives in the one "grads" array, but the backward pass's weight-gradient GEMMs and bias sums
 * touch disjoint parts of it and need not wait for each other.
 */
public final class TaskDag {
    private TaskDag() {}

    /** Elements [from, to) of an array; to is Long.MAX_VALUE for a batched tensor, whose extent the batch decides. */
    public record Range(String array, long from, long to) {
        static Range of(Buf b) {
            long size = b.shape().batched() ? Long.MAX_VALUE - b.offset() : (long) b.shape().rows() * b.shape().cols();
            return new Range(b.array(), b.offset(), b.offset() + size);
        }

        static Range whole(String array) { return new Range(array, 0, Long.MAX_VALUE); }

        boolean overlaps(Range o) { return array.equals(o.array) && from < o.to && o.from < to; }
    }

    /** For each kernel, in launch order, the earlier kernels it conflicts with (not only the nearest ones). */
    public static List<TreeSet<Integer>> dependencies(Program p) {
        var reads = new ArrayList<List<Range>>();
        var writes = new ArrayList<List<Range>>();
        for (Kernel k : p.kernels()) {
            reads.add(reads(k));
            writes.add(writes(k));
        }
        var deps = new ArrayList<TreeSet<Integer>>();
        for (int j = 0; j < p.kernels().size(); j++) {
            var d = new TreeSet<Integer>();
            for (int i = 0; i < j; i++) {
                if (any(writes.get(i), reads.get(j)) || any(writes.get(i), writes.get(j)) || any(reads.get(i), writes.get(j))) d.add(i);
            }
            deps.add(d);
        }
        return deps;
    }

    private static boolean any(List<Range> a, List<Range> b) {
        for (Range x : a) for (Range y : b) if (x.overlaps(y)) return true;
        return false;
    }

    public static List<Range> writes(Kernel k) {
        var out = new ArrayList<Range>();
        for (Expr.Let l : k.epilogue()) if (l.store() != null) out.add(Range.of(l.store()));
        switch (k) {
            case Kernel.Transpose t -> out.add(Range.of(t.dst()));
            case Kernel.SumSquares s -> out.add(Range.of(s.out()));
            case Kernel.AdamEma a -> { for (String name : Kernels.writes(a)) out.add(Range.whole(name)); }
            default -> {}
        }
        return out;
    }

    public static List<Range> reads(Kernel k) {
        var out = new ArrayList<Range>();
        switch (k) {
            case Kernel.Gemm g -> { out.add(Range.of(g.a())); out.add(Range.of(g.b())); }
            case Kernel.Normalize n -> { collect(n.x(), out); if (n.grad() != null) collect(n.grad(), out); }
            case Kernel.ReduceCols r -> collect(r.x(), out);
            case Kernel.ReduceBatch r -> collect(r.x(), out);
            case Kernel.Transpose t -> out.add(Range.of(t.src()));
            case Kernel.SumSquares s -> out.add(new Range(s.array(), 0, s.count()));
            case Kernel.AdamEma a -> { for (String name : Kernels.reads(a)) out.add(Range.whole(name)); }
            case Kernel.Elementwise e -> {}
        }
        for (Expr.Let l : k.epilogue()) collect(l.value(), out);
        return out;
    }

    private static void collect(Expr e, List<Range> out) {
        switch (e) {
            case Expr.Load l -> out.add(Range.of(l.buf()));
            case Expr.Unary u -> collect(u.a(), out);
            case Expr.Binary b -> { collect(b.a(), out); collect(b.b(), out); }
            default -> {}
        }
    }

    /** The same order with implied edges dropped: i → j is kept only if no other path leads from i to j. */
    public static List<TreeSet<Integer>> reduced(List<TreeSet<Integer>> deps) {
        int n = deps.size();
        var ancestors = new ArrayList<java.util.BitSet>();
        var out = new ArrayList<TreeSet<Integer>>();
        for (int j = 0; j < n; j++) {
            var implied = new java.util.BitSet();
            for (int i : deps.get(j)) implied.or(ancestors.get(i));
            var direct = new TreeSet<Integer>();
            for (int i : deps.get(j)) if (!implied.get(i)) direct.add(i);
            var all = (java.util.BitSet) implied.clone();
            for (int i : deps.get(j)) all.set(i);
            ancestors.add(all);
            out.add(direct);
        }
        return out;
    }

    /** Kernels on the longest chain of dependencies: the launches that must follow one another however many run at once. */
    public static int criticalPath(List<TreeSet<Integer>> deps) {
        int[] depth = new int[deps.size()];
        int longest = 0;
        for (int j = 0; j < depth.length; j++) {
            for (int i : deps.get(j)) depth[j] = Math.max(depth[j], depth[i]);
            depth[j]++;
            longest = Math.max(longest, depth[j]);
        }
        return longest;
    }
}
