package dev.cmc.runtime.cuda;

import java.util.ArrayList;
import java.util.Arrays;
import java.util.Comparator;
import java.util.List;
import java.util.TreeSet;

/**
 * A program's kernels spread over a few streams, for capture into one CUDA graph whose edges are the
 * program's dependencies rather than its launch order ({@link dev.cmc.kernel.TaskDag}). Kernels are taken
 * as late as they may run (by how long a chain of dependent kernels still follows them, longest first), so
 * that the critical path claims streams first and work with slack fills in beside it; each goes onto the
 * stream of one of its dependencies when that stream has nothing newer, else onto an unused stream, else
 * onto the stream whose last kernel started earliest, where a false edge costs least. A kernel
 * waits on an event only for dependencies its stream has not already seen (vector clocks: a stream waiting
 * on a kernel has seen everything before it on that kernel's stream). On one stream the plan is launch order.
 */
public record StreamPlan(int streams, List<Integer> order, int[] streamOf, List<List<Integer>> waits) {

    /** Streams a graph capture uses: CMC_CUDA_STREAMS (1 captures launch order on one stream), default 4. */
    public static int configuredStreams() {
        String v = System.getenv("CMC_CUDA_STREAMS");
        if (v == null || v.isBlank()) return 4;
        try {
            int n = Integer.parseInt(v.strip());
            if (n >= 1 && n <= 16) return n;
        } catch (NumberFormatException e) {
            // the message below says what is valid
        }
        throw new dev.cmc.runtime.SettingException("CMC_CUDA_STREAMS=" + v + ": expected a stream count from 1 to 16");
    }

    /** The plan the cuda backend captures a program's graph with, on this many streams. */
    public static StreamPlan of(dev.cmc.kernel.Program program, int streams) {
        return of(dev.cmc.kernel.TaskDag.reduced(dev.cmc.kernel.TaskDag.dependencies(program)), streams);
    }

    /**
     * The capture as text, in the order it records kernels: each kernel's stream, whether it is urgent (run
     * at the GPU's greatest priority, see {@link CudaExecutable}) and the kernels it waits for.
     */
    public String describe(dev.cmc.kernel.Program program) {
        boolean[] urgent = dev.cmc.kernel.TaskDag.urgent(dev.cmc.kernel.TaskDag.dependencies(program), CudaExecutable.URGENT_SLACK);
        int count = 0;
        for (boolean u : urgent) if (u) count++;
        var out = new StringBuilder("CUDA graph of " + program.name() + ": " + streamOf.length + " kernels captured on " + streams
                + " streams; longest chain of launches " + longestChain() + "; " + count + " urgent kernels, within " + CudaExecutable.URGENT_SLACK
                + " launches of the longest chain\n\n");
        for (int k : order) {
            out.append(String.format("  stream %d  %3d  %-36s %-6s%s%n", streamOf[k], k, program.kernels().get(k).name(), urgent[k] ? "urgent" : "",
                    waits.get(k).isEmpty() ? "" : "  after " + waits.get(k)).replaceAll(" +\n", "\n"));
        }
        return out.toString();
    }

    static StreamPlan of(List<TreeSet<Integer>> deps, int maxStreams) {
        int n = deps.size();
        // level: the longest chain of dependencies ending at a kernel; height: the longest from it to the program's end.
        int[] level = dev.cmc.kernel.TaskDag.depths(deps), height = dev.cmc.kernel.TaskDag.heights(deps);
        var order = new ArrayList<Integer>();
        for (int k = 0; k < n; k++) order.add(k);
        if (maxStreams > 1) {
            order.sort(Comparator.comparingInt((Integer k) -> -height[k]).thenComparingInt(k -> level[k]).thenComparingInt(k -> k));
            placeSinksEarly(order, deps);
        }

        int[] streamOf = new int[n], tail = new int[maxStreams];
        Arrays.fill(tail, -1);
        // clock[k][s]: the latest position (in order) on stream s that kernel k is known to run after, -1 for none.
        int[][] clock = new int[n][];
        int[] position = new int[n];
        var waits = new ArrayList<List<Integer>>();
        for (int k = 0; k < n; k++) waits.add(List.of());
        int used = 0;
        for (int at = 0; at < n; at++) {
            int k = order.get(at);
            position[k] = at;
            TreeSet<Integer> d = deps.get(k);
            int s = -1;
            for (int q = 0; q < used && s < 0; q++) if (d.contains(tail[q])) s = q;
            if (s < 0 && used < maxStreams) s = used;
            if (s < 0) {
                s = 0;
                for (int q = 1; q < maxStreams; q++) if (level[tail[q]] < level[tail[s]]) s = q;
            }
            used = Math.max(used, s + 1);
            int[] c = tail[s] < 0 ? empty(maxStreams) : clock[tail[s]].clone();
            var w = new ArrayList<Integer>();
            for (int i : d.stream().sorted(Comparator.comparingInt((Integer i) -> position[i]).reversed()).toList()) {
                if (c[streamOf[i]] >= position[i]) continue;   // already seen through the stream or an earlier wait
                w.add(i);
                for (int q = 0; q < maxStreams; q++) c[q] = Math.max(c[q], clock[i][q]);
            }
            c[s] = at;
            clock[k] = c;
            streamOf[k] = s;
            tail[s] = k;
            waits.set(k, List.copyOf(w));
        }
        return new StreamPlan(Math.max(1, used), List.copyOf(order), streamOf, waits);
    }

    /**
     * By height alone every kernel that nothing waits for comes last, behind every stream's last kernel: the
     * optimizer's update of each module would wait for the whole backward pass. So a sink with slack moves to just
     * after its last dependency where that one has slack too, onto its stream, beside the work with slack; one
     * whose last dependency is urgent stays at the end, so that no urgent kernel waits behind it on that stream.
     */
    private static void placeSinksEarly(List<Integer> order, List<TreeSet<Integer>> deps) {
        int n = deps.size();
        boolean[] urgent = dev.cmc.kernel.TaskDag.urgent(deps, CudaExecutable.URGENT_SLACK), waitedFor = new boolean[n];
        for (var d : deps) for (int i : d) waitedFor[i] = true;
        for (int k : List.copyOf(order)) {
            if (waitedFor[k] || urgent[k] || deps.get(k).isEmpty()) continue;
            order.remove((Integer) k);
            int last = -1;
            for (int i : deps.get(k)) last = Math.max(last, order.indexOf(i));
            if (urgent[order.get(last)]) order.add(k);
            else order.add(last + 1, k);
        }
    }

    private static int[] empty(int streams) {
        int[] c = new int[streams];
        Arrays.fill(c, -1);
        return c;
    }

    /** Kernels on the longest chain the plan imposes (its streams' order and its waits): launches that run one after another. */
    int longestChain() {
        int[] depth = new int[streamOf.length], last = new int[streams];
        Arrays.fill(last, -1);
        int longest = 0;
        for (int k : order) {
            int d = last[streamOf[k]] >= 0 ? depth[last[streamOf[k]]] : 0;
            for (int i : waits.get(k)) d = Math.max(d, depth[i]);
            depth[k] = d + 1;
            last[streamOf[k]] = k;
            longest = Math.max(longest, depth[k]);
        }
        return longest;
    }

    /** Kernels that another stream waits on: each needs an event recorded after it. */
    boolean[] waitedOn() {
        boolean[] out = new boolean[streamOf.length];
        for (List<Integer> w : waits) for (int i : w) out[i] = true;
        return out;
    }
}
