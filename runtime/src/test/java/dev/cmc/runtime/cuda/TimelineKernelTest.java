package dev.cmc.runtime.cuda;

import dev.cmc.compile.Compiler;
import dev.cmc.dsl.SpecLoader;
import dev.cmc.kernel.Kernel;
import dev.cmc.kernel.Program;
import dev.cmc.kernel.TaskDag;
import dev.cmc.render.PtxRenderer;
import dev.cmc.runtime.Backend;
import dev.cmc.runtime.Executable;
import dev.cmc.runtime.Timeline;
import dev.cmc.runtime.bench.Bench;
import org.junit.jupiter.api.Test;

import java.util.HashMap;
import java.util.List;
import java.util.Map;
import java.util.SplittableRandom;

import static org.junit.jupiter.api.Assertions.*;

/**
 * Kernels that record their timeline (cmc bench --trace) compute what they compute without it (bit for bit in
 * the simulator; on a GPU to 1e-5, since each program times its own split-K slice counts), and what they record is
 * a run: every kernel launched has a span, and no kernel starts before a kernel it depends on has ended. A CT step
 * in the PTX simulator, whose kernels run one after another in the capture's order, and on a GPU where there is
 * one, whose CUDA graph runs them by its edges.
 */
class TimelineKernelTest {
    private static final int BATCH = 64;

    @Test
    void aStepThatRecordsItsTimelineComputesTheSameAndRecordsItsKernelsInDependencyOrder() {
        var spec = SpecLoader.fromText("timeline.cm", "model m { input_dim = 2; hidden_size = 32; num_layers = 2; }\ntrain { method = ct; }\n");
        Program program = Compiler.trainStep(spec).program();
        var backends = new java.util.ArrayList<Backend[]>();
        backends.add(new Backend[]{new SimulatedCudaBackend(PtxRenderer.Matmul.TF32X3), new SimulatedCudaBackend(PtxRenderer.Matmul.TF32X3).withTimeline()});
        if (!CudaDevices.list().isEmpty()) backends.add(new Backend[]{new CudaBackend(0), new CudaBackend(0).withTimeline(true)});
        for (Backend[] pair : backends) {
            Map<String, float[]> plain = afterOneStep(pair[0], spec, program, null);
            var timelines = new Timeline[1];
            Map<String, float[]> timed = afterOneStep(pair[1], spec, program, timelines);
            for (var a : plain.keySet()) {
                if (pair[0] instanceof SimulatedCudaBackend) {
                    assertArrayEquals(plain.get(a), timed.get(a), a + " on " + pair[1].deviceName());
                    continue;
                }
                // On a GPU each program times its own split-K slice counts, and another count sums in another order.
                float[] want = plain.get(a), got = timed.get(a);
                for (int i = 0; i < want.length; i++) assertEquals(want[i], got[i], 1e-5 * (1 + Math.abs(want[i])), a + "[" + i + "] on " + pair[1].deviceName());
            }
            check(program, timelines[0], pair[1].deviceName());
        }
    }

    /** Every array after one step from the same inputs; with timelines, the step's timeline into it (on a GPU, of the steps after). */
    private static Map<String, float[]> afterOneStep(Backend backend, dev.cmc.dsl.Spec spec, Program program, Timeline[] timelines) {
        var out = new HashMap<String, float[]>();
        try (Executable exe = backend.load(program, BATCH)) {
            Bench.loadTrainingInputs(exe, spec, Compiler.trainStep(spec).layout().initialize(1), BATCH, new SplittableRandom(5));
            exe.run(BATCH);
            for (Program.Array a : program.arrays()) {
                float[] v = new float[(int) Math.max(1, a.size(BATCH))];
                exe.read(a.name(), v, v.length);
                out.put(a.name(), v);
            }
            if (timelines != null) {
                timelines[0] = switch (exe) {
                    case SimulatedCudaBackend.Simulated s -> simulated(program, s.timeline());
                    case CudaExecutable cu -> cu.timeline(BATCH);
                    default -> throw new IllegalStateException(exe.getClass() + " records no timeline");
                };
            }
        }
        return out;
    }

    private static long blocks(PtxRenderer.Launch l) { return (long) l.gridX() * l.gridY() * l.gridZ(); }

    /**
     * The simulator's timeline, its block records checked first: each kernel's region holds one record for each of
     * its blocks (up to the records a kernel keeps) and no more, each ending no sooner than it started.
     */
    private static Timeline simulated(Program program, long[] all) {
        int n = program.kernels().size(), per = PtxRenderer.TIMELINE_BLOCKS;
        long[] slots = java.util.Arrays.copyOf(all, 2 * n), records = java.util.Arrays.copyOfRange(all, 2 * n, all.length);
        long[] blocks = program.kernels().stream().mapToLong(k -> blocks(PtxRenderer.launch(k, BATCH, PtxRenderer.Matmul.TF32X3, PtxRenderer.Tiling.NARROW))).toArray();
        for (int k = 0; k < n; k++) {
            int written = 0;
            for (int b = 0; b < per; b++) {
                long start = records[2 * (k * per + b)], end = records[2 * (k * per + b) + 1];
                if (start == 0) continue;
                written++;
                assertTrue(b < blocks[k], program.kernels().get(k).name() + ": a record for block " + b + " of " + blocks[k]);
                assertTrue((int) end - (int) start >= 0, program.kernels().get(k).name() + ": block " + b + " ends before it starts");
            }
            assertEquals(Math.min(blocks[k], per), written, program.kernels().get(k).name() + "'s block records");
        }
        return Timeline.of(program.name(), program.kernels().stream().map(Kernel::name).toList(), new int[n], new boolean[n], blocks, slots, records, per);
    }

    private static void check(Program program, Timeline timeline, String device) {
        var spanOf = new HashMap<String, Timeline.Span>();
        for (var s : timeline.spans()) {
            assertNull(spanOf.put(s.kernel(), s), s.kernel() + " twice on " + device);
            assertTrue(s.blocks() > 0, s.kernel() + " ran in " + s.blocks() + " blocks on " + device);
        }
        var kernels = program.kernels();
        for (Kernel k : kernels) {
            if (blocks(PtxRenderer.launch(k, BATCH, PtxRenderer.Matmul.TF32X3, PtxRenderer.Tiling.NARROW)) > 0) assertTrue(spanOf.containsKey(k.name()), k.name() + " launched but not in the timeline on " + device);
        }
        var deps = TaskDag.dependencies(program);
        int edges = 0;
        for (int b = 0; b < kernels.size(); b++) {
            for (int a : deps.get(b)) {
                var before = spanOf.get(kernels.get(a).name()); var after = spanOf.get(kernels.get(b).name());
                if (before == null || after == null) continue;
                edges++;
                assertTrue(before.endUs() <= after.startUs(), kernels.get(b).name() + " started at " + after.startUs() + " µs, before "
                        + kernels.get(a).name() + ", which it depends on, ended at " + before.endUs() + " µs on " + device);
            }
        }
        assertTrue(edges > kernels.size(), edges + " dependencies checked");
        assertTrue(timeline.us() > 0);
        // Each SM's time with a block resident is at most the run's, and all SMs' together at most the blocks'
        // time (equal where blocks never overlap, as in the simulator, which runs one at a time).
        double busy = java.util.Arrays.stream(timeline.smBusyUs()).sum();
        assertTrue(timeline.smBusyUs().length > 0 && busy > 0, "no SM had a block on " + device);
        for (double b : timeline.smBusyUs()) assertTrue(b <= timeline.us() + 1e-9, b + " µs busy in a run of " + timeline.us() + " on " + device);
        assertTrue(busy <= timeline.blockUs() + 1e-6, busy + " µs busy in " + timeline.blockUs() + " µs of blocks on " + device);
        if (device.startsWith("PTX simulator")) assertEquals(timeline.blockUs(), busy, 1e-6, "blocks one at a time");
    }
}
