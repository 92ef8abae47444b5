package dev.cmc.kernel;

import dev.cmc.compile.Compiler;
import dev.cmc.fusion.MlpFusion;
import dev.cmc.render.PtxasTest;
import org.junit.jupiter.api.Test;

import java.util.ArrayList;
import java.util.List;
import java.util.SplittableRandom;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertTrue;

/**
 * Shared memory must never be live twice at once, whatever order a runtime runs the kernels in. The runtimes'
 * own tests (parity against float64 on every backend, the simulated PTX in its 4-stream order) run with the
 * plan; this checks the plan itself, by a route other than the one it was made by.
 */
class MemoryPlanTest {

    @Test
    void sharedArraysAreNeverLiveAtOnceInAnyOrderTheTaskGraphAllows() {
        var programs = new ArrayList<>(PtxasTest.programs());
        programs.add(MlpFusion.fuse(programs.getFirst(), k -> true));   // the sampler with each block one kernel
        var rng = new SplittableRandom(7);
        int shared = 0;
        for (Program p : programs) {
            var plan = MemoryPlan.of(p);
            var deps = TaskDag.dependencies(p);
            for (int trial = 0; trial < 40; trial++) {
                List<Integer> order = trial == 0 ? launchOrder(p) : randomTopologicalOrder(deps, rng);
                checkLifetimes(p, plan, order);
            }
            for (int i = 0; i < p.arrays().size(); i++) if (!plan.owns(i)) shared++;
        }
        assertTrue(shared > 40, "the test programs share memory (" + shared + " arrays), so the check above checked something");
    }

    @Test
    void theSeedSamplerKeepsOneHiddenActivationInsteadOfFour() {
        Program p = PtxasTest.programs().getFirst();
        var plan = MemoryPlan.of(p);
        int act0 = p.arrayIndex("block0_act");
        for (int b = 1; b < 4; b++) assertEquals(act0, plan.storage(p.arrayIndex("block" + b + "_act")), "block" + b + "_act");
        // Per sample, planned: x, its noised and scaled forms and out (64 wide each); two 256-wide arrays (the
        // residual stream, and a LayerNorm's output that the block's output then takes over); one 1,024-wide.
        long perSample = plan.bytes(p, 2) - plan.bytes(p, 1);
        long unplanned = MemoryPlan.separate(p).bytes(p, 2) - MemoryPlan.separate(p).bytes(p, 1);
        assertEquals(4 * (4 * 64 + 2 * 256 + 1024), perSample, "bytes a sample, planned");
        assertEquals(4 * (4 * 64 + 9 * 256 + 4 * 1024), unplanned, "bytes a sample, each array its own");
    }

    @Test
    void inputsOutputsAndStateKeepTheirOwnMemory() {
        for (Program p : PtxasTest.programs()) {
            var plan = MemoryPlan.of(p);
            for (int i = 0; i < p.arrays().size(); i++) {
                var a = p.arrays().get(i);
                int home = plan.storage(i);
                if (a.role() != Program.Role.ACTIVATION || !a.shape().batched()) assertEquals(i, home, p.name() + ": " + a.name());
                else assertEquals(a.shape(), p.arrays().get(home).shape(), p.name() + ": " + a.name() + " shares memory of another shape");
            }
        }
    }

    /** In this order, arrays sharing memory have disjoint spans from their first toucher to their last. */
    private static void checkLifetimes(Program p, MemoryPlan plan, List<Integer> order) {
        int n = p.arrays().size();
        int[] first = new int[n], last = new int[n];
        java.util.Arrays.fill(first, Integer.MAX_VALUE);
        java.util.Arrays.fill(last, -1);
        for (int pos = 0; pos < order.size(); pos++) {
            Kernel k = p.kernels().get(order.get(pos));
            var touched = new java.util.HashSet<>(Kernels.reads(k));
            touched.addAll(Kernels.writes(k));
            for (String name : touched) {
                int i = p.arrayIndex(name);
                first[i] = Math.min(first[i], pos);
                last[i] = Math.max(last[i], pos);
            }
        }
        for (int i = 0; i < n; i++) {
            for (int j = i + 1; j < n; j++) {
                if (plan.storage(i) != plan.storage(j)) continue;
                boolean apart = last[i] < first[j] || last[j] < first[i];
                assertTrue(apart, p.name() + ": " + p.arrays().get(i).name() + " (kernels " + first[i] + ".." + last[i] + ") and "
                        + p.arrays().get(j).name() + " (" + first[j] + ".." + last[j] + ") share memory and overlap in order " + order);
            }
        }
    }

    private static List<Integer> launchOrder(Program p) {
        var out = new ArrayList<Integer>();
        for (int k = 0; k < p.kernels().size(); k++) out.add(k);
        return out;
    }

    /** Kahn's algorithm, taking a random ready kernel each time. */
    private static List<Integer> randomTopologicalOrder(List<java.util.TreeSet<Integer>> deps, SplittableRandom rng) {
        int n = deps.size();
        int[] waiting = new int[n];
        var followers = new ArrayList<List<Integer>>();
        for (int k = 0; k < n; k++) followers.add(new ArrayList<>());
        for (int k = 0; k < n; k++) {
            waiting[k] = deps.get(k).size();
            for (int d : deps.get(k)) followers.get(d).add(k);
        }
        var ready = new ArrayList<Integer>();
        for (int k = 0; k < n; k++) if (waiting[k] == 0) ready.add(k);
        var out = new ArrayList<Integer>();
        while (!ready.isEmpty()) {
            int k = ready.remove(rng.nextInt(ready.size()));
            out.add(k);
            for (int f : followers.get(k)) if (--waiting[f] == 0) ready.add(f);
        }
        assertEquals(n, out.size(), "the task graph has a cycle");
        return out;
    }
}
