package dev.cmc.runtime;

import dev.cmc.compile.Compiler;
import dev.cmc.dsl.Spec;
import dev.cmc.dsl.SpecLoader;
import dev.cmc.kernel.Kernel;
import dev.cmc.kernel.MemoryPlan;
import dev.cmc.kernel.OptimizerScalars;
import dev.cmc.kernel.Program;
import dev.cmc.kernel.TaskDag;
import dev.cmc.runtime.jvm.JvmBackend;
import org.junit.jupiter.api.Test;

import java.util.*;

import static org.junit.jupiter.api.Assertions.*;

/**
 * The dependencies {@link TaskDag} finds are all a program needs: a training step whose kernels run in
 * other orders that respect them (the latest ready kernel first, and random ready ones) leaves every array
 * with memory of its own (the loss, gradients, weights, optimizer state) exactly as launch order does. And
 * they leave room to run kernels at once: the weight gradients do not wait for each other, nor the EMA
 * target's forward pass for the online network's.
 */
class TaskDagTest {
    private static final Spec SPEC = SpecLoader.fromText("dag.cm", "model p { input_dim = 3; hidden_size = 16; num_layers = 2; expansion = 2; }\n"
            + "data { source = \"builtin:none\"; }\ntrain { grad_clip = 1.0; }");

    @Test
    void anyOrderThatKeepsTheDependenciesComputesTheSame() {
        var c = Compiler.trainStep(SPEC);
        Program p = c.program();
        var deps = TaskDag.dependencies(p);
        Map<String, float[]> expected = runOnce(p, c.layout().initialize(3));
        var orders = new ArrayList<List<Integer>>();
        orders.add(order(deps, null));
        for (int seed = 1; seed <= 3; seed++) orders.add(order(deps, new Random(seed)));
        for (List<Integer> order : orders) {
            assertNotEquals(identity(p.kernels().size()), order, "the reordering must move kernels to check anything");
            var kernels = new ArrayList<Kernel>();
            for (int i : order) kernels.add(p.kernels().get(i));
            Program reordered = new Program(p.name(), p.arrays(), kernels);
            Map<String, float[]> got = runOnce(reordered, c.layout().initialize(3));
            var alone = alone(p);
            alone.retainAll(alone(reordered));
            assertTrue(alone.containsAll(List.of("loss", "grads", "params", "adam_m", "adam_v", "ema", "target")), "compared: " + alone);
            for (String name : alone) {
                assertArrayEquals(expected.get(name), got.get(name), name + " differs when kernels run in the order " + order);
            }
        }
    }

    @Test
    void independentWorkIsLeftIndependent() {
        Program p = Compiler.trainStep(SpecLoader.fromText("seed.cm", "model m { input_dim = 64; }\ndata { source = \"builtin:none\"; }")).program();
        var deps = TaskDag.dependencies(p);
        var names = p.kernels().stream().map(Kernel::name).toList();
        var weightGrads = new ArrayList<Integer>();
        for (int i = 0; i < names.size(); i++) if (names.get(i).startsWith("k_matmul_tn_")) weightGrads.add(i);
        assertTrue(weightGrads.size() >= 10, "weight-gradient GEMMs: " + weightGrads);
        for (int a : weightGrads) for (int b : weightGrads) assertFalse(deps.get(b).contains(a), names.get(b) + " waits for " + names.get(a));
        int target = names.indexOf("k_matmul_target_block0_up_mm"), online = names.indexOf("k_matmul_block0_up_mm");
        assertFalse(ancestors(deps, target).contains(online), "the target network's forward pass waits for the online network's");
        int chain = TaskDag.criticalPath(deps);
        assertTrue(chain < p.kernels().size() / 2, "longest chain " + chain + " of " + p.kernels().size() + " kernels");
    }

    /**
     * The chain that `cmc bench --profile` weighs by kernel times: the heaviest path, not the one of most kernels.
     * 0 → 1 → 3 and 0 → 2 → 3, with 2 slow: 1 + 5 + 1 = 7 through it, 3 through 1.
     */
    @Test
    void theWeightedCriticalPathFollowsTheSlowestBranch() {
        List<TreeSet<Integer>> deps = List.of(new TreeSet<>(), new TreeSet<>(List.of(0)), new TreeSet<>(List.of(0)), new TreeSet<>(List.of(1, 2)));
        assertEquals(7.0, TaskDag.criticalPath(deps, new double[]{1, 1, 5, 1}), 1e-12);
        assertEquals(4.0, TaskDag.criticalPath(deps, new double[]{1, 2, 1, 1}), 1e-12);
        assertEquals(3, TaskDag.criticalPath(deps));
        // Independent kernels: the slowest alone.
        assertEquals(7.0, TaskDag.criticalPath(List.of(new TreeSet<>(), new TreeSet<>()), new double[]{7, 2}), 1e-12);
    }

    /**
     * The kernels a GPU should run first ({@link TaskDag#urgent}): within 2 launches of the longest chain. In a
     * diamond 0 → {1, 2 → 3} → 4 with a side kernel 5 after 0, the side kernel has slack 2 and the short branch
     * 1; in the seed's CT step, the EMA target's forward pass and the backward pass's input gradients are
     * urgent, the weight gradients of the last blocks (with most of the backward pass still to run) are not.
     */
    @Test
    void urgentKernelsAreThoseOnTheLongestChains() {
        List<TreeSet<Integer>> deps = List.of(new TreeSet<>(), new TreeSet<>(List.of(0)), new TreeSet<>(List.of(0)), new TreeSet<>(List.of(2)),
                new TreeSet<>(List.of(1, 3)), new TreeSet<>(List.of(0)));
        assertArrayEquals(new boolean[]{true, false, true, true, true, false}, TaskDag.urgent(deps, 0));
        assertArrayEquals(new boolean[]{true, true, true, true, true, false}, TaskDag.urgent(deps, 1));
        assertArrayEquals(new boolean[]{true, true, true, true, true, true}, TaskDag.urgent(deps, 2));

        Program p = Compiler.trainStep(SpecLoader.fromText("seed.cm", "model m { input_dim = 64; }\ndata { source = \"builtin:none\"; }")).program();
        boolean[] urgent = TaskDag.urgent(TaskDag.dependencies(p), 2);
        var names = p.kernels().stream().map(Kernel::name).toList();
        var chosen = new ArrayList<String>();
        for (int k = 0; k < urgent.length; k++) if (urgent[k]) chosen.add(names.get(k));
        for (String k : List.of("k_matmul_target_block0_up_mm", "k_matmul_target_block3_down_mm", "k_matmul_nt_d_block3_act", "k_matmul_nt_d_block0_ln", "k_adam_ema_embed")) {
            assertTrue(chosen.contains(k), k + " is not urgent: " + chosen);
        }
        for (String k : List.of("k_matmul_tn_d_block3_down_w", "k_matmul_tn_d_block2_up_w", "k_reduce_batch_d_block3_up_b", "k_transpose_block0_up_w", "k_adam_ema_block3")) {
            assertFalse(chosen.contains(k), k + " is urgent: " + chosen);
        }
    }

    /**
     * Each module's Adam + EMA waits for its own gradients and for the kernels that still read its parameters, not
     * for the rest of the backward pass, so that only the first modules' updates are left after it; with gradient
     * clipping one update over all waits for the global norm.
     */
    @Test
    void eachModulesUpdateWaitsForItsOwnGradientsOnly() {
        String seed = "model m { input_dim = 64; }\ndata { source = \"builtin:none\"; }";
        Program p = Compiler.trainStep(SpecLoader.fromText("seed.cm", seed)).program();
        var names = p.kernels().stream().map(Kernel::name).toList();
        var ancestors = TaskDag.ancestors(TaskDag.dependencies(p));
        java.util.function.BiPredicate<String, String> waits = (k, on) -> ancestors.get(names.indexOf(k)).get(names.indexOf(on));
        assertEquals(List.of("k_adam_ema_embed", "k_adam_ema_in", "k_adam_ema_block0", "k_adam_ema_block1", "k_adam_ema_block2",
                "k_adam_ema_block3", "k_adam_ema_out"), names.stream().filter(n -> n.startsWith("k_adam")).toList());
        assertTrue(waits.test("k_adam_ema_block3", "k_matmul_tn_d_block3_up_w") && waits.test("k_adam_ema_block3", "k_reduce_batch_d_block3_norm_g"));
        assertTrue(waits.test("k_adam_ema_block3", "k_matmul_nt_d_block3_ln"), "the input gradient into block 3's LayerNorm reads its γ");
        assertFalse(waits.test("k_adam_ema_block3", "k_matmul_tn_d_block0_up_w"));
        assertFalse(waits.test("k_adam_ema_block3", "k_matmul_nt_d_block2_act"));
        assertTrue(waits.test("k_adam_ema_embed", "k_matmul_tn_d_embed_w"));

        Program clipped = Compiler.trainStep(SpecLoader.fromText("seed.cm", seed + "\ntrain { grad_clip = 1.0; }")).program();
        var optimizer = clipped.kernels().stream().map(Kernel::name).filter(n -> n.startsWith("k_adam")).toList();
        assertEquals(List.of("k_adam_ema"), optimizer);
        int adam = clipped.kernels().size() - 1;
        assertTrue(TaskDag.ancestors(TaskDag.dependencies(clipped)).get(adam).get(adam - 1), "the update waits for the norm");
    }

    /** A topological order: the ready kernel with the highest index first, or a random ready one. */
    private static List<Integer> order(List<TreeSet<Integer>> deps, Random rng) {
        int n = deps.size();
        var done = new boolean[n];
        var out = new ArrayList<Integer>();
        while (out.size() < n) {
            var ready = new ArrayList<Integer>();
            for (int j = 0; j < n; j++) {
                if (done[j]) continue;
                boolean ok = true;
                for (int i : deps.get(j)) ok &= done[i];
                if (ok) ready.add(j);
            }
            int pick = rng == null ? ready.getLast() : ready.get(rng.nextInt(ready.size()));
            done[pick] = true;
            out.add(pick);
        }
        return out;
    }

    private static Set<Integer> ancestors(List<TreeSet<Integer>> deps, int j) {
        var seen = new HashSet<Integer>();
        var stack = new ArrayDeque<>(deps.get(j));
        while (!stack.isEmpty()) if (seen.add(stack.peek())) stack.addAll(deps.get(stack.pop())); else stack.pop();
        return seen;
    }

    private static List<Integer> identity(int n) {
        var out = new ArrayList<Integer>();
        for (int i = 0; i < n; i++) out.add(i);
        return out;
    }

    /**
     * The arrays with memory of their own: an activation that shares memory holds, after a run, whichever of its
     * tenants came last, and each order plans its memory afresh.
     */
    private static Set<String> alone(Program p) {
        var plan = MemoryPlan.of(p);
        var tenants = new HashMap<Integer, Integer>();
        for (int i = 0; i < p.arrays().size(); i++) tenants.merge(plan.storage(i), 1, Integer::sum);
        var out = new TreeSet<String>();
        for (int i = 0; i < p.arrays().size(); i++) if (tenants.get(plan.storage(i)) == 1) out.add(p.arrays().get(i).name());
        return out;
    }

    /** One training step from fixed inputs; every array afterwards. */
    private static Map<String, float[]> runOnce(Program p, float[] params) {
        int batch = 7;
        var rng = new SplittableRandom(4);
        try (Executable exe = new JvmBackend(2).load(p, batch)) {
            exe.write("params", params, params.length);
            exe.write("target", params, params.length);
            for (String in : List.of("x0", "z", "weight")) exe.write(in, random(rng, (int) p.array(in).size(batch)), (int) p.array(in).size(batch));
            float[] lo = new float[batch], hi = new float[batch];
            for (int i = 0; i < batch; i++) { lo[i] = 0.01f + i; hi[i] = lo[i] + 0.5f; }
            exe.write("sigma_lo", lo, batch);
            exe.write("sigma_hi", hi, batch);
            float[] scalars = new float[OptimizerScalars.SIZE];
            var t = SPEC.train();
            OptimizerScalars.fill(scalars, t.optimizer(), 1, t.lr(), t.beta1(), t.beta2(), t.eps(), t.weightDecay(), 0.9, 0.99, 1.0);
            exe.write("scalars", scalars, scalars.length);
            exe.run(batch);
            var out = new TreeMap<String, float[]>();
            for (Program.Array a : p.arrays()) {
                float[] v = new float[(int) Math.max(1, a.size(batch))];
                exe.read(a.name(), v, v.length);
                out.put(a.name(), v);
            }
            return out;
        }
    }

    private static float[] random(SplittableRandom rng, int n) {
        float[] v = new float[n];
        for (int i = 0; i < n; i++) v[i] = (float) (rng.nextDouble() * 2 - 1);
        return v;
    }
}
