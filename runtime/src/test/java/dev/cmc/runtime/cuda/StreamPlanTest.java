package dev.cmc.runtime.cuda;

import dev.cmc.compile.Compiler;
import dev.cmc.dsl.SpecLoader;
import dev.cmc.kernel.TaskDag;
import org.junit.jupiter.api.Test;

import java.util.*;

import static org.junit.jupiter.api.Assertions.*;

/**
 * A stream plan orders every dependency: what the captured graph guarantees (a stream's kernels in order,
 * and a wait on an event after a kernel) covers every edge of the task graph, for the seed model's training
 * step and for random task graphs, on 1 to 4 streams. And it spreads the training step out: on 4 streams its
 * longest chain of launches is within 3 of the dependencies' own, and the optimizer's updates of the last blocks
 * run beside the backward pass.
 */
class StreamPlanTest {
    @Test
    void theSeedTrainingStepIsOrderedOnAnyNumberOfStreams() {
        var program = Compiler.trainStep(SpecLoader.fromText("seed.cm", "model m { input_dim = 64; }\ndata { source = \"builtin:none\"; }")).program();
        var deps = TaskDag.dependencies(program);
        for (int streams = 1; streams <= 4; streams++) {
            StreamPlan plan = StreamPlan.of(TaskDag.reduced(deps), streams);
            assertOrdered(deps, plan);
            if (streams == 1) {
                assertTrue(plan.waits().stream().allMatch(List::isEmpty), "one stream needs no events");
                for (int k = 0; k < deps.size(); k++) assertEquals(k, plan.order().get(k), "one stream captures launch order");
            }
        }
        StreamPlan four = StreamPlan.of(TaskDag.reduced(deps), 4);
        assertEquals(4, four.streams(), "the training step has work for four streams");
        long waits = four.waits().stream().mapToLong(List::size).sum();
        assertTrue(waits < program.kernels().size(), waits + " waits for " + program.kernels().size() + " kernels: too many events");
        int chain = four.longestChain(), best = TaskDag.criticalPath(deps);
        System.out.println("seed training step: " + program.kernels().size() + " kernels, longest chain " + best + "; on 4 streams "
                + chain + ", " + waits + " waits");
        assertTrue(chain <= best + 3, "four streams leave a chain of " + chain + " where the dependencies allow " + best);
        // The last blocks' optimizer updates run beside the backward pass, not behind every stream's last kernel:
        // what block 3's update runs after, by its stream's order and its waits, leaves out block 0's gradients.
        var names = program.kernels().stream().map(dev.cmc.kernel.Kernel::name).toList();
        BitSet before = assertOrdered(deps, four).get(names.indexOf("k_adam_ema_block3"));
        for (String later : List.of("k_matmul_nt_d_block0_ln", "k_matmul_tn_d_block0_up_w", "k_matmul_tn_d_in_w")) {
            assertFalse(before.get(names.indexOf(later)), "block 3's update waits for " + later);
        }
        assertTrue(before.get(names.indexOf("k_matmul_tn_d_block3_up_w")));
    }

    @Test
    void randomTaskGraphsAreOrdered() {
        var rng = new Random(11);
        for (int trial = 0; trial < 200; trial++) {
            int n = 1 + rng.nextInt(60);
            var deps = new ArrayList<TreeSet<Integer>>();
            for (int j = 0; j < n; j++) {
                var d = new TreeSet<Integer>();
                for (int i = 0; i < j; i++) if (rng.nextInt(8) == 0) d.add(i);
                deps.add(d);
            }
            for (int streams = 1; streams <= 4; streams++) {
                assertOrdered(deps, StreamPlan.of(deps, streams));
                assertOrdered(deps, StreamPlan.of(TaskDag.reduced(deps), streams));
            }
        }
    }

    /**
     * Every dependency i → k is among the kernels k runs after: before it on its stream, or behind a wait, in the
     * plan's launch order. Returns those kernels, for each kernel.
     */
    private static Map<Integer, BitSet> assertOrdered(List<TreeSet<Integer>> deps, StreamPlan plan) {
        int n = deps.size();
        var after = new HashMap<Integer, BitSet>();
        int[] last = new int[plan.streams()];
        Arrays.fill(last, -1);
        assertEquals(n, new HashSet<>(plan.order()).size(), "the plan launches every kernel once");
        for (int k : plan.order()) {
            int s = plan.streamOf()[k];
            assertTrue(s >= 0 && s < plan.streams(), "stream " + s);
            var seen = new BitSet();
            if (last[s] >= 0) { seen.or(after.get(last[s])); seen.set(last[s]); }
            for (int i : plan.waits().get(k)) {
                assertTrue(after.containsKey(i), "kernel " + k + " waits for " + i + ", not launched yet");
                seen.or(after.get(i));
                seen.set(i);
            }
            for (int i : deps.get(k)) assertTrue(seen.get(i), "kernel " + k + " may start before " + i + " that it depends on");
            after.put(k, seen);
            last[s] = k;
        }
        return after;
    }
}
