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
 * down-projection, K = 1,024 into 256 columns) split until their blocks fill one wave of an H100 (132 SMs × the
 * blocks of their tile an SM holds), and the workspace holds every slice at every batch up to the one it is
 * sized for, in every arithmetic and tiling.
 */
class SplitKTest {
    private static Kernel.Gemm nn(int k, int n) {
        Shape domain = Shape.batch(n);
        return new Kernel.Gemm("k_mm", false, Buf.whole("a", Shape.batch(k)), Buf.whole("w", Shape.fixed(k, n)), k, domain,
                List.of(new Expr.Let(0, new Expr.Acc(), Buf.whole("out", domain))));
    }

    @Test
    void blocksPerSmFollowTheTilesRegisters() {
        assertEquals(4, PtxRenderer.Tile.NARROW.blocksPerSm(PtxRenderer.Matmul.FMA), "128 threads of 128 registers");
        assertEquals(4, PtxRenderer.Tile.NARROW.blocksPerSm(PtxRenderer.Matmul.TF32));
        assertEquals(3, PtxRenderer.Tile.NARROW.blocksPerSm(PtxRenderer.Matmul.TF32X3), "128 threads of 168 registers");
        assertEquals(1, PtxRenderer.Tile.WIDE.blocksPerSm(PtxRenderer.Matmul.TF32X3), "256 threads of 168 registers");
        assertEquals(2, PtxRenderer.Tile.WIDE_WARPS.blocksPerSm(PtxRenderer.Matmul.TF32), "128 threads of 232 registers");
        assertEquals(2, PtxRenderer.Tile.WGMMA.blocksPerSm(PtxRenderer.Matmul.TF32), "256 threads of 128 registers");
    }

    @Test
    void longKGemmsSplitUntilTheyFillOneWave() {
        Kernel.Gemm down = nn(1024, 256);
        var fma = PtxRenderer.Matmul.FMA;
        var x3 = PtxRenderer.Matmul.TF32X3;
        var narrow = PtxRenderer.Tiling.NARROW;
        // fp32 FMAs in 128×64 tiles, 4 blocks an SM: 528 places.
        int[][] fmaSplits = {{1, 8}, {256, 8}, {512, 8}, {2048, 8}, {4096, 4}, {8192, 2}, {16384, 1}, {1 << 20, 1}};
        for (int[] bs : fmaSplits) assertEquals(bs[1], PtxRenderer.splits(down, bs[0], fma, narrow), "FMA slices at " + bs[0] + " rows");
        // 3xTF32 in 128×64 tiles, 3 blocks an SM: 396 places, so 3 slices at 4,096 rows (384 blocks), not 4 (512: 1.3 waves).
        int[][] x3Splits = {{256, 8}, {1024, 8}, {2048, 6}, {4096, 3}, {8192, 1}};
        for (int[] bs : x3Splits) assertEquals(bs[1], PtxRenderer.splits(down, bs[0], x3, narrow), "3xTF32 slices at " + bs[0] + " rows");
        // 128×128 tiles: 3xTF32's 8 warps, 1 block an SM; wgmma's two warpgroups, 2.
        assertEquals(2, PtxRenderer.splits(down, 4096, x3, PtxRenderer.Tiling.WIDE));
        assertEquals(4, PtxRenderer.splits(down, 4096, x3, PtxRenderer.Tiling.WGMMA));
        // Never past one wave once split, whatever the batch, arithmetic and tiling.
        for (var m : PtxRenderer.Matmul.values()) {
            for (var t : PtxRenderer.Tiling.values()) {
                var tile = PtxRenderer.tile(down, m, t);
                for (int rows = 1; rows <= 20000; rows += 97) {
                    int s = PtxRenderer.splits(down, rows, m, t), blocks = s * ((rows + 127) / 128) * ((256 + tile.bn() - 1) / tile.bn());
                    assertTrue(s == 1 || blocks <= 132 * tile.blocksPerSm(m), m + " " + t + " at " + rows + " rows: " + blocks + " blocks");
                }
            }
        }
        // On a GPU of fewer SMs, one wave of its own: an A100's 108 SMs hold 324 3xTF32 blocks, so 2 slices at 4,096
        // rows (256 blocks), not 3 (384: 1.2 waves). More than 132 SMs split as 132 do (the counters cover that many).
        assertEquals(2, PtxRenderer.splits(down, 4096, x3, narrow, 108));
        assertEquals(3, PtxRenderer.splits(down, 4096, x3, narrow, 148));
        assertEquals(3, PtxRenderer.splits(down, 4096, fma, narrow, 108), "FMA: 432 places for 128 tiles");
        for (int sms : new int[]{16, 46, 80, 108, 114, 132, 148}) {
            for (var m : PtxRenderer.Matmul.values()) {
                var tile = PtxRenderer.tile(down, m, narrow);
                for (int rows = 1; rows <= 20000; rows += 97) {
                    int s = PtxRenderer.splits(down, rows, m, narrow, sms), blocks = s * ((rows + 127) / 128) * ((256 + tile.bn() - 1) / tile.bn());
                    assertTrue(s == 1 || blocks <= Math.min(sms, 132) * tile.blocksPerSm(m), m + " on " + sms + " SMs at " + rows + " rows: " + blocks + " blocks");
                    assertTrue(s <= PtxRenderer.splits(down, rows, m, narrow), "never more slices than the workspace was sized for");
                }
            }
        }
    }

    /**
     * GEMMs of short K split too where their tiles leave most of the GPU idle, in slices at least 64 deep: the
     * up-projection (K = 256 into 1,024 columns) at 256 rows makes 32 tiles of 128×64 for 132 SMs, so 4 slices;
     * 3 at 1,024 rows for 3xTF32 (128 tiles, 396 places), none from 2,048. K under 128 never splits.
     */
    @Test
    void shortKGemmsSplitWhereTheirTilesLeaveTheGpuIdle() {
        Kernel.Gemm up = nn(256, 1024), out = nn(256, 64);
        var fma = PtxRenderer.Matmul.FMA;
        var x3 = PtxRenderer.Matmul.TF32X3;
        var narrow = PtxRenderer.Tiling.NARROW;
        assertTrue(PtxRenderer.splitsK(up));
        int[][] x3Splits = {{1, 4}, {256, 4}, {512, 4}, {1024, 3}, {2048, 1}, {1 << 20, 1}};
        for (int[] bs : x3Splits) assertEquals(bs[1], PtxRenderer.splits(up, bs[0], x3, narrow), "3xTF32 slices at " + bs[0] + " rows");
        assertEquals(2, PtxRenderer.splits(up, 2048, fma, narrow), "FMA: 256 tiles for 528 places");
        assertEquals(1, PtxRenderer.splits(up, 4096, fma, narrow));
        assertEquals(4, PtxRenderer.splits(out, 4096, x3, narrow), "an output layer of 64 columns: 32 tiles at 4,096 rows");
        assertEquals(3, PtxRenderer.splits(nn(200, 64), 256, x3, narrow), "slices at least 64 deep");
        assertFalse(PtxRenderer.splitsK(nn(127, 1024)), "K under two 64-deep slices");
        assertEquals(1, PtxRenderer.splits(nn(127, 1024), 1, x3, narrow));
    }

    /**
     * Weight gradients (TN, K = the batch): one slice per 512 rows, or as many as fill one wave where that is
     * more, at least 64 rows deep, at most 16. A 256×256 weight (8 tiles) over 256 rows: 4, not 1; over 4,096
     * rows, 16. A 1,024×256 weight (32 tiles) over 4,096 rows: 12 for 3xTF32 (384 blocks for 396 places).
     */
    @Test
    void weightGradientsSplitByRowsOrToFillOneWave() {
        var x3 = PtxRenderer.Matmul.TF32X3;
        var narrow = PtxRenderer.Tiling.NARROW;
        Kernel.Gemm small = tn(256, 256), large = tn(1024, 256);
        int[][] smallSplits = {{1, 1}, {127, 1}, {128, 2}, {256, 4}, {4096, 16}, {1 << 20, 16}};
        for (int[] bs : smallSplits) assertEquals(bs[1], PtxRenderer.splits(small, bs[0], x3, narrow), "256x256 at " + bs[0] + " rows");
        assertEquals(12, PtxRenderer.splits(large, 4096, x3, narrow));
        assertEquals(16, PtxRenderer.splits(large, 8192, x3, narrow), "one slice per 512 rows");
        for (int rows = 1; rows <= 40000; rows += 89) {
            assertTrue(PtxRenderer.splits(large, rows, x3, narrow) <= PtxRenderer.splits(large, rows + 89, x3, narrow), "never fewer slices at more rows");
        }
    }

    private static Kernel.Gemm tn(int m, int n) {
        Shape domain = Shape.fixed(m, n);
        return new Kernel.Gemm("k_mm_tn", true, Buf.whole("a", Shape.batch(m)), Buf.whole("dy", Shape.batch(n)), Shape.BATCH, domain,
                List.of(new Expr.Let(0, new Expr.Acc(), Buf.whole("dw", domain))));
    }

    @Test
    void theWorkspaceHoldsEverySliceAtEveryBatch() {
        for (Kernel.Gemm g : List.of(nn(1024, 256), nn(1030, 72), nn(2048, 1000), nn(256, 1024), nn(200, 70), tn(256, 256), tn(150, 70), tn(64, 256))) {
            for (var m : PtxRenderer.Matmul.values()) {
                for (var t : PtxRenderer.Tiling.values()) {
                    for (int maxBatch : new int[]{1, 130, 512, 4096, 5000, 1 << 20}) {
                        long floats = PtxRenderer.workspaceFloats(g, maxBatch, m, t), needed = 0;
                        for (int b = 1; b <= Math.min(maxBatch, 40000); b++) {
                            int s = PtxRenderer.splits(g, b, m, t);
                            if (s > 1) needed = Math.max(needed, (long) s * (g.domain().batched() ? b : g.domain().rows()) * g.domain().cols());
                        }
                        // A split TN or fixed-row GEMM of at most 256×256 outputs: room for 32 slices (fewer where K has fewer 64 deep), to be timed.
                        long size = (long) g.domain().rows() * g.domain().cols();
                        if (needed > 0 && (g.transposeA() || !g.domain().batched()) && size <= 256 * 256)
                            needed = Math.max(needed, Math.min(32, (g.transposeA() ? maxBatch : g.k()) / 64) * size);
                        String what = g.domain() + " (" + m + ", " + t + ") at maxBatch " + maxBatch;
                        if (PtxRenderer.sumsByCluster(g, m, t)) {   // its slices meet in the cluster's shared memory
                            assertEquals(0, floats, what + ": a cluster-summed GEMM takes no workspace");
                            continue;
                        }
                        assertTrue(floats >= needed, what + ": " + floats + " floats for " + needed);
                        assertTrue(floats <= needed + 288 + 31, what + ": no more than the slices, the tile counters and a line's round-up: " + floats + " for " + needed);
                        assertEquals(0, floats % 32, what + ": a whole number of 128-byte lines, so that the next kernel's part starts on one");
                        assertEquals(0, PtxRenderer.counterFloats(g) % 32, what + ": the slices start on a line");
                    }
                }
            }
        }
    }

    /**
     * The slice counts a runtime may time and launch instead of {@link PtxRenderer#splits}'s: a down-projection
     * at 256 rows may take 1, 2, 3, 4, 6, 8 or 16 slices (12 would leave its last slice empty), a small weight
     * gradient over 4,096 rows 24 and 32 too, and at any batch
     * every choice includes the heuristic's and 1, cuts K into slices at least 64 deep and none empty, and keeps
     * its partial products and tile counters inside the workspace sized for the largest batch (or, summed across a
     * cluster, at most the cluster's 8 blocks).
     */
    @Test
    void everySliceCountOnOfferFitsTheWorkspace() {
        var x3 = PtxRenderer.Matmul.TF32X3;
        assertEquals(List.of(1, 2, 3, 4, 6, 8, 16), PtxRenderer.splitChoices(nn(1024, 256), 256, 4096, x3, PtxRenderer.Tiling.NARROW, 132));
        assertEquals(List.of(1), PtxRenderer.splitChoices(nn(1024, 256), 1 << 20, 1 << 20, x3, PtxRenderer.Tiling.NARROW, 132), "no room at a million rows");
        assertEquals(List.of(1), PtxRenderer.splitChoices(nn(127, 1024), 256, 4096, x3, PtxRenderer.Tiling.NARROW, 132), "a GEMM that never splits");
        // A small weight gradient (the input projection's, 64×256) may be timed at 24 and 32 slices too; at 2,048
        // rows 24 would leave its last slice empty. A large one's workspace holds the formula's 16 slices alone.
        var mixed = PtxRenderer.Tiling.WGMMA_MIXED;
        assertEquals(List.of(1, 2, 3, 4, 6, 8, 12, 16, 24, 32), PtxRenderer.splitChoices(tn(64, 256), 4096, 4096, x3, mixed, 132));
        assertEquals(List.of(1, 2, 3, 4, 6, 8, 12, 16, 32), PtxRenderer.splitChoices(tn(64, 256), 2048, 4096, x3, mixed, 132));
        assertEquals(List.of(1, 2, 3, 4, 6, 8, 12, 16), PtxRenderer.splitChoices(tn(1024, 256), 4096, 4096, x3, mixed, 132));
        for (Kernel.Gemm g : List.of(nn(1024, 256), nn(1030, 72), nn(2048, 1000), nn(256, 1024), nn(200, 70), tn(256, 256), tn(150, 70), tn(1024, 256), tn(64, 256))) {
            for (var m : PtxRenderer.Matmul.values()) {
                for (var t : PtxRenderer.Tiling.values()) {
                    var tile = PtxRenderer.tile(g, m, t);
                    for (int maxBatch : new int[]{130, 4096, 5000, 1 << 16}) {
                        long floats = PtxRenderer.workspaceFloats(g, maxBatch, m, t), counters = PtxRenderer.counterFloats(g);
                        for (int b = 1; b <= maxBatch; b += b < 600 ? 37 : 613) {
                            int rows = g.domain().batched() ? b : g.domain().rows(), k = g.transposeA() ? b : g.k();
                            int tiles = ((rows + tile.bm() - 1) / tile.bm()) * ((g.domain().cols() + tile.bn() - 1) / tile.bn());
                            List<Integer> choices = PtxRenderer.splitChoices(g, b, maxBatch, m, t, 132);
                            String what = g.domain() + " (" + m + ", " + t + ") at " + b + " of " + maxBatch + " rows: " + choices;
                            assertTrue(choices.contains(1) && choices.contains(PtxRenderer.splits(g, b, m, t)), what);
                            for (int s : choices) {
                                if (s == 1 || s == PtxRenderer.splits(g, b, m, t)) continue;
                                int chunk = (k + s * tile.sliceK() - 1) / (s * tile.sliceK()) * tile.sliceK();
                                assertTrue(k / s >= 64 && (long) (s - 1) * chunk < k, what + ": " + s + " slices of " + k);
                                if (PtxRenderer.sumsByCluster(g, m, t)) {
                                    assertTrue(s <= PtxRenderer.CLUSTER_SLICES, what + ": " + s + " slices, more than a cluster holds");
                                    continue;
                                }
                                assertTrue(tiles <= counters && counters + (long) s * rows * g.domain().cols() <= floats, what + ": " + s + " slices overrun the workspace");
                            }
                        }
                    }
                }
            }
        }
    }
}
