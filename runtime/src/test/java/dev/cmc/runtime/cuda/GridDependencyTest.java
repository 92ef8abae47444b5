package dev.cmc.runtime.cuda;

import dev.cmc.compile.Compiler;
import dev.cmc.dsl.SpecLoader;
import dev.cmc.kernel.Program;
import dev.cmc.render.Indexing;
import dev.cmc.render.PtxRenderer;
import org.junit.jupiter.api.Test;

import static org.junit.jupiter.api.Assertions.*;

/**
 * Programmatic dependent launch: a kernel launched so may start while the one before it in its stream still
 * runs, so it must wait (griddepcontrol.wait) before it touches global memory. The simulator holds every
 * sm_90 kernel it runs to that order; here, that it refuses a kernel whose wait comes after its loads, so
 * that the rule cannot pass by never firing.
 */
class GridDependencyTest {
    private static final String WAIT = "    griddepcontrol.wait;\n    griddepcontrol.launch_dependents;\n";

    @Test
    void theSimulatorRefusesGlobalMemoryTouchedBeforeTheWait() {
        Program p = Compiler.sampler(SpecLoader.fromText("pdl.cm", "model m { input_dim = 2; hidden_size = 32; num_layers = 1; }\n")).program();
        String ptx = PtxRenderer.render(p, "pdl", "sm_90");
        assertEquals(p.kernels().size(), ptx.split(WAIT, -1).length - 1, "every kernel waits once");
        run(new PtxSimulator(ptx), p);

        // The first kernel's wait moved to its end, after its loads and stores: the same kernel, out of order.
        int entryEnd = ptx.indexOf("\nDONE:\n");
        String late = ptx.substring(0, entryEnd).replaceFirst(java.util.regex.Pattern.quote(WAIT), "") + "\n" + WAIT.stripTrailing() + ptx.substring(entryEnd);
        var e = assertThrows(IllegalStateException.class, () -> run(new PtxSimulator(late), p));
        assertTrue(e.getMessage().contains("global memory accessed before griddepcontrol.wait"), e.getMessage());
        assertTrue(e.getMessage().startsWith(PtxRenderer.kernelName(p, 0)), e.getMessage());
    }

    /** The program's first kernel (elementwise) at 8 rows on zeroed arrays: the order, not the values, is under test. */
    private static void run(PtxSimulator sim, Program p) {
        int rows = 8;
        float[][] arrays = new float[p.arrays().size()][];
        for (int i = 0; i < arrays.length; i++) arrays[i] = new float[(int) Math.max(1, p.arrays().get(i).size(rows))];
        var kernel = p.kernels().getFirst();
        assertFalse(PtxRenderer.splitsK(kernel), kernel.name() + " has no split-K workspace");
        int[] buffers = Indexing.arguments(kernel).stream().mapToInt(p::arrayIndex).toArray();
        var l = PtxRenderer.launch(kernel, rows, PtxRenderer.Matmul.FMA, PtxRenderer.Tiling.NARROW);
        sim.launch(PtxRenderer.kernelName(p, 0), l.gridX(), l.gridY(), l.gridZ(), l.block(), l.sharedBytes(), arrays, buffers, rows);
    }
}
