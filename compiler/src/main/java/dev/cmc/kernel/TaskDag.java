package dev.cmc.kernel;

import dev.cmc.kernel.Kernels.Range;

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

    /** For each kernel, in launch order, the earlier kernels it conflicts with (not only the nearest ones). */
    public static List<TreeSet<Integer>> dependencies(Program p) {
        var reads = new ArrayList<List<Range>>();
        var writes = new ArrayList<List<Range>>();
        for (Kernel k : p.kernels()) {
            reads.add(Kernels.readRanges(k));
            writes.add(Kernels.writeRanges(k));
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

    /** The same order with implied edges dropped: i → j is kept only if no other path leads from i to j. */
    public static List<TreeSet<Integer>> reduced(List<TreeSet<Integer>> deps) {
        var ancestors = ancestors(deps);
        var out = new ArrayList<TreeSet<Integer>>();
        for (int j = 0; j < deps.size(); j++) {
            var implied = new java.util.BitSet();
            for (int i : deps.get(j)) implied.or(ancestors.get(i));
            var direct = new TreeSet<Integer>();
            for (int i : deps.get(j)) if (!implied.get(i)) direct.add(i);
            out.add(direct);
        }
        return out;
    }

    /** For each kernel, every kernel it waits for, directly or through others. */
    public static List<java.util.BitSet> ancestors(List<TreeSet<Integer>> deps) {
        var out = new ArrayList<java.util.BitSet>();
        for (var d : deps) {
            var all = new java.util.BitSet();
            for (int i : d) {
                all.or(out.get(i));
                all.set(i);
            }
            out.add(all);
        }
        return out;
    }

    /**
     * The longest chain of dependencies weighed by each kernel's time: what the program takes however many
     * kernels run at once and however little a launch costs.
     */
    public static double criticalPath(List<TreeSet<Integer>> deps, double[] times) {
        double[] end = new double[deps.size()];
        double longest = 0;
        for (int j = 0; j < end.length; j++) {
            for (int i : deps.get(j)) end[j] = Math.max(end[j], end[i]);
            end[j] += times[j];
            longest = Math.max(longest, end[j]);
        }
        return longest;
    }

    /**
     * The kernels that lie on a chain of dependencies at most {@code slack} launches shorter than the longest: the
     * ones that delay the whole program if they wait, where the others (a weight gradient with the rest of the
     * backward pass still to run beside it) may. By launches, since what each kernel costs depends on the device.
     */
    public static boolean[] urgent(List<TreeSet<Integer>> deps, int slack) {
        int[] depth = depths(deps), height = heights(deps);
        int longest = 0;
        for (int k = 0; k < depth.length; k++) longest = Math.max(longest, depth[k] + height[k]);
        boolean[] out = new boolean[depth.length];
        for (int k = 0; k < out.length; k++) out[k] = depth[k] + height[k] >= longest - slack;
        return out;
    }

    /** For each kernel, the most kernels on a chain of dependencies that ends with it, itself included. */
    public static int[] depths(List<TreeSet<Integer>> deps) {
        int[] depth = new int[deps.size()];
        for (int k = 0; k < depth.length; k++) {
            for (int i : deps.get(k)) depth[k] = Math.max(depth[k], depth[i]);
            depth[k]++;
        }
        return depth;
    }

    /** For each kernel, the most kernels on a chain of dependencies that follows it, itself excluded. */
    public static int[] heights(List<TreeSet<Integer>> deps) {
        int[] height = new int[deps.size()];
        for (int k = height.length - 1; k >= 0; k--) for (int i : deps.get(k)) height[i] = Math.max(height[i], height[k] + 1);
        return height;
    }

    /** Kernels on the longest chain of dependencies: the launches that must follow one another however many run at once. */
    public static int criticalPath(List<TreeSet<Integer>> deps) {
        double[] one = new double[deps.size()];
        java.util.Arrays.fill(one, 1);
        return (int) criticalPath(deps, one);
    }
}
