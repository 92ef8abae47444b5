package dev.cmc.render;

import dev.cmc.ir.Shape;
import dev.cmc.kernel.Buf;
import dev.cmc.kernel.Expr;
import dev.cmc.kernel.Kernel;
import org.junit.jupiter.api.Test;

import java.util.List;

import static org.junit.jupiter.api.Assertions.*;

/**
 * How the cuda backend splits K, and the workspace it sets aside for that: the seed's long-K GEMMs (a
 * down-projection, K = 1,024 into 256 columns) split until about 512 blocks run, and the workspace holds every
 * slice at every batch up to the one it is sized for.
 */
class SplitKTest {
    private static Kernel.Gemm nn(int k, int n) {
        Shape domain = Shape.batch(n);
        return new Kernel.Gemm("k_mm", false, Buf.whole("a", Shape.batch(k)), Buf.whole("w", Shape.fixed(k, n)), k, domain,
                List.of(new Expr.Let(0, new Expr.Acc(), Buf.whole("out", domain))));
    }

    @Test
    void longKGemmsSplitUntilTheyFillTheGpu() {
        Kernel.Gemm down = nn(1024, 256);
        int[][] batchAndSplits = {{1, 8}, {256, 8}, {512, 8}, {2048, 8}, {4096, 4}, {8192, 2}, {16384, 1}, {1 << 20, 1}};
        for (int[] bs : batchAndSplits) assertEquals(bs[1], PtxRenderer.splits(down, bs[0]), "slices at " + bs[0] + " rows");
        // Short K never splits (the up-projection, K = 256), whatever the batch.
        assertFalse(PtxRenderer.splitsK(nn(256, 1024)));
        assertEquals(1, PtxRenderer.splits(nn(256, 1024), 256));
    }

    @Test
    void theWorkspaceHoldsEverySliceAtEveryBatch() {
        for (Kernel.Gemm g : List.of(nn(1024, 256), nn(1030, 72), nn(2048, 1000))) {
            for (int maxBatch : new int[]{1, 130, 512, 4096, 5000, 1 << 20}) {
                long floats = PtxRenderer.workspaceFloats(g, maxBatch), needed = 0;
                for (int b = 1; b <= Math.min(maxBatch, 40000); b++) {
                    int s = PtxRenderer.splits(g, b);
                    if (s > 1) needed = Math.max(needed, (long) s * b * g.domain().cols());
                }
                assertTrue(floats >= needed, g.domain() + " at maxBatch " + maxBatch + ": " + floats + " floats for " + needed);
                assertTrue(floats <= needed + 256, "no more than the slices and the tile counters: " + floats + " for " + needed);
            }
        }
    }
}
