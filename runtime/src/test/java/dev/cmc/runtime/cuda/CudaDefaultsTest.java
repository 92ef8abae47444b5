package dev.cmc.runtime.cuda;

import dev.cmc.ir.Shape;
import dev.cmc.kernel.Buf;
import dev.cmc.kernel.Expr;
import dev.cmc.kernel.Kernel;
import dev.cmc.render.PtxRenderer;
import dev.cmc.render.PtxRenderer.Matmul;
import dev.cmc.render.PtxRenderer.Tiling;
import org.junit.jupiter.api.Test;

import java.util.List;

import static org.junit.jupiter.api.Assertions.*;

/** What the cuda backend does unless told otherwise, as the H200 runs measured it fastest (see CudaBackend). */
class CudaDefaultsTest {
    @Test
    void wgmmaTilesFrom4096RowsOnComputeCapability9Only() {
        for (Matmul m : new Matmul[]{Matmul.TF32X3, Matmul.TF32}) {
            assertTrue(CudaBackend.defaultTiling(9, 4096, m).wgmma());
            assertTrue(CudaBackend.defaultTiling(9, CudaBackend.SAMPLING_ROWS, m).wgmma());
            assertEquals(Tiling.NARROW, CudaBackend.defaultTiling(9, 4095, m), "the CT step at 256 is faster in 128×64");
            assertEquals(Tiling.NARROW, CudaBackend.defaultTiling(8, CudaBackend.SAMPLING_ROWS, m), "no wgmma before Hopper");
            assertEquals(Tiling.NARROW, CudaBackend.defaultTiling(10, CudaBackend.SAMPLING_ROWS, m), "sm_90a code runs on 9.0 alone");
        }
        assertEquals(Tiling.NARROW, CudaBackend.defaultTiling(9, CudaBackend.SAMPLING_ROWS, Matmul.BF16), "no bf16 wgmma tiles");
        assertEquals(Tiling.NARROW, CudaBackend.defaultTiling(9, CudaBackend.SAMPLING_ROWS, Matmul.FMA));
    }

    @Test
    void fp32TakesWideWgmmaTilesForTheSamplersLaunchesAndTilesByShapeForTheStep() {
        assertEquals(Tiling.WGMMA_MIXED, CudaBackend.defaultTiling(9, 4096, Matmul.TF32X3), "the CT step at 4,096 was slower in 128×256 throughout");
        assertEquals(Tiling.WGMMA_MIXED, CudaBackend.defaultTiling(9, CudaBackend.SAMPLING_ROWS - 1, Matmul.TF32X3));
        assertEquals(Tiling.WGMMA_WIDE, CudaBackend.defaultTiling(9, CudaBackend.SAMPLING_ROWS, Matmul.TF32X3));
        assertEquals(Tiling.WGMMA_WIDE, CudaBackend.defaultTiling(9, 1 << 20, Matmul.TF32X3));
    }

    @Test
    void mixedTilesAreWideForLongRowsAndNarrowForWeightGradientsOfFewRows() {
        Tiling mixed = Tiling.WGMMA_MIXED;
        assertEquals(PtxRenderer.Tile.WGMMA_WIDE, PtxRenderer.tile(upProjection(), Matmul.TF32X3, mixed), "256 into 1,024 columns");
        assertEquals(PtxRenderer.Tile.WGMMA_WIDE_TF32, PtxRenderer.tile(upProjection(), Matmul.TF32, mixed));
        assertEquals(PtxRenderer.Tile.WGMMA, PtxRenderer.tile(nn(1024, 256), Matmul.TF32X3, mixed), "a down-projection, 1,024 into 256");
        assertEquals(PtxRenderer.Tile.WGMMA, PtxRenderer.tile(nn(256, 512), Matmul.TF32X3, mixed), "512 columns: two 128×256 tiles across");
        assertEquals(PtxRenderer.Tile.NARROW, PtxRenderer.tile(weightGradient(64, 256), Matmul.TF32X3, mixed), "the input projection's, 64 rows");
        assertEquals(PtxRenderer.Tile.WGMMA, PtxRenderer.tile(weightGradient(256, 1024), Matmul.TF32X3, mixed), "a TN GEMM stays 128×128 however wide");
        assertEquals(PtxRenderer.Tile.NARROW, PtxRenderer.tile(upProjection(), Matmul.BF16, mixed), "no bf16 wgmma tiles");
        assertEquals(PtxRenderer.Tile.WGMMA, PtxRenderer.tile(weightGradient(64, 256), Matmul.TF32X3, Tiling.WGMMA), "plain wgmma tiles every GEMM 128×128");
        assertEquals(PtxRenderer.Tile.WGMMA, PtxRenderer.tile(upProjection(), Matmul.TF32X3, Tiling.WGMMA));
    }

    @Test
    void earlyRefillKeepsTheMixedTilesWithOneSliceMoreInFlight() {
        for (Kernel.Gemm g : List.of(upProjection(), nn(1024, 256), weightGradient(64, 256), weightGradient(256, 1024))) {
            PtxRenderer.Tile mixed = PtxRenderer.tile(g, Matmul.TF32X3, Tiling.WGMMA_MIXED), early = PtxRenderer.tile(g, Matmul.TF32X3, Tiling.WGMMA_MIXED_EARLY);
            assertEquals(mixed.warpgroups() ? mixed.refilledEarly() : mixed, early, g.name() + ": the same tile, refilled early where it is wgmma's");
        }
        PtxRenderer.Tile square = PtxRenderer.Tile.WGMMA, wide = PtxRenderer.Tile.WGMMA_WIDE;
        assertEquals(2, square.ahead());
        assertEquals(4, square.refilledEarly().ahead(), "4 of 128x128's 5 stages in flight, not 2 of 4");
        assertEquals(4, wide.ahead());
        assertEquals(6, wide.refilledEarly().ahead(), "6 of 128x256's 7, not 4 of 6");
        // An H100's or H200's SM has 228 KB of shared memory, of which each block's runtime takes 1 KB.
        int early = square.refilledEarly().sharedBytes(Matmul.TF32X3);
        assertTrue(2 * (early + 1024) <= 228 * 1024, "two blocks an SM still: " + early + " bytes");
        assertTrue(early - square.sharedBytes(Matmul.TF32X3) <= 512, "about the same shared memory: " + early);
        assertTrue(wide.refilledEarly().sharedBytes(Matmul.TF32X3) <= PtxRenderer.sharedPerBlock("sm_90"));
        assertTrue(PtxRenderer.Tile.WGMMA_WIDE_TF32.refilledEarly().sharedBytes(Matmul.TF32) <= PtxRenderer.sharedPerBlock("sm_90"));
        assertEquals(PtxRenderer.Tile.NARROW, PtxRenderer.Tile.NARROW.refilledEarly(), "mma.sync tiles refill a trip ahead already");
        assertEquals(wide.refilledEarly(), PtxRenderer.tile(nn(1024, 256), Matmul.TF32X3, Tiling.WGMMA_WIDE_EARLY), "the sampler's, 128x256 from 256 columns");
    }

    @Test
    void clusterSumsKeepTheMixedTilesAndTheirOccupancy() {
        for (Tiling clustered : List.of(Tiling.WGMMA_MIXED_CLUSTER, Tiling.WGMMA_MIXED_EARLY_CLUSTER)) {
            Tiling plain = clustered == Tiling.WGMMA_MIXED_CLUSTER ? Tiling.WGMMA_MIXED : Tiling.WGMMA_MIXED_EARLY;
            for (Matmul m : new Matmul[]{Matmul.TF32X3, Matmul.TF32}) {
                for (Kernel.Gemm g : List.of(upProjection(), nn(1024, 256), weightGradient(64, 256), weightGradient(256, 1024))) {
                    PtxRenderer.Tile tile = PtxRenderer.tile(g, m, clustered), without = PtxRenderer.tile(g, m, plain);
                    boolean summed = without.warpgroups() && PtxRenderer.splitsK(g);
                    assertEquals(summed ? without.summedByCluster() : without, tile, g.name() + ": the same tile, summed by cluster where it is wgmma's and splits");
                    assertEquals(summed, PtxRenderer.sumsByCluster(g, m, clustered), g.name());
                    if (!summed) continue;
                    // The partial tile fits in the pipeline's shared memory (tf32's 128x128 takes 0.8 KB more): the same blocks an SM.
                    int shared = tile.sharedBytes(m), before = without.sharedBytes(m);
                    assertTrue(shared - before <= 1024 && 228 * 1024 / (shared + 1024) == 228 * 1024 / (before + 1024), g.name() + ": " + shared + " bytes");
                    assertTrue(shared >= 4 * tile.bm() * (tile.bn() + 4), g.name() + ": room for the partial tile");
                    assertEquals(0, PtxRenderer.workspaceFloats(g, 1 << 16, m, clustered), g.name() + ": no workspace");
                    for (int batch : new int[]{256, 4096, 1 << 16}) {
                        int own = PtxRenderer.splits(g, batch, m, clustered, 132);
                        var choices = PtxRenderer.splitChoices(g, batch, 1 << 16, m, clustered, 132);
                        assertTrue(own <= PtxRenderer.CLUSTER_SLICES && choices.stream().allMatch(s -> s <= PtxRenderer.CLUSTER_SLICES),
                                g.name() + " at " + batch + ": " + own + ", " + choices + ": a cluster holds at most 8 without opting in");
                    }
                }
            }
        }
        // A weight gradient over many rows takes the most a cluster holds, where serially it takes 16.
        assertEquals(16, PtxRenderer.splits(weightGradient(256, 1024), 1 << 16, Matmul.TF32X3, Tiling.WGMMA_MIXED, 132));
        assertEquals(8, PtxRenderer.splits(weightGradient(256, 1024), 1 << 16, Matmul.TF32X3, Tiling.WGMMA_MIXED_CLUSTER, 132));
    }

    @Test
    void tf32ChainsItsFusedBlocksFedByBulkCopies() {
        for (int rows : new int[]{4096, CudaBackend.SAMPLING_ROWS, 1 << 20}) {
            Tiling t = CudaBackend.defaultTiling(9, rows, Matmul.TF32);
            assertTrue(t.chained() && t.bulk(), rows + " rows: " + t);
            assertEquals(PtxRenderer.Tile.WGMMA, PtxRenderer.tile(upProjection(), Matmul.TF32, t), "its GEMMs are wgmma's 128×128 tiles");
        }
    }

    @Test
    void theDevicesNameSaysWhichTilesEachBatchTakes() {
        assertEquals("128x128 wgmma tiles, 128x256 for 1024+ columns from 4096 rows; 128x256 wgmma tiles from 65536", CudaBackend.defaultTilings(9, Matmul.TF32X3));
        assertEquals("128x128 wgmma tiles, tf32 MLP blocks on wgmma fed by bulk copies, chained from 4096 rows", CudaBackend.defaultTilings(9, Matmul.TF32));
        assertEquals("", CudaBackend.defaultTilings(8, Matmul.TF32));
        assertEquals("", CudaBackend.defaultTilings(9, Matmul.BF16));
    }

    /** An up-projection's GEMM as the seed has it: [B, 256] rows into 1,024 columns. */
    private static Kernel.Gemm upProjection() { return nn(256, 1024); }

    /** An NN GEMM over the batch: [B, k] rows into n columns. */
    private static Kernel.Gemm nn(int k, int n) {
        Buf out = Buf.whole("y", Shape.batch(n));
        return new Kernel.Gemm("k_nn", false, Buf.whole("x", Shape.batch(k)), Buf.whole("w", Shape.fixed(k, n)), k, out.shape(),
                List.of(new Expr.Let(0, new Expr.Acc(), out)));
    }

    /** A weight gradient, [B, rows]ᵀ · [B, cols]: a TN GEMM over the batch into a fixed [rows, cols]. */
    private static Kernel.Gemm weightGradient(int rows, int cols) {
        Buf out = Buf.whole("dw", Shape.fixed(rows, cols));
        return new Kernel.Gemm("k_tn", true, Buf.whole("x", Shape.batch(rows)), Buf.whole("dy", Shape.batch(cols)), Shape.BATCH, out.shape(),
                List.of(new Expr.Let(0, new Expr.Acc(), out)));
    }

    @Test
    void mlpBlocksFuseByDefaultWithTf32GemmsOnly() {
        assertTrue(CudaBackend.autoFuses(Matmul.TF32));
        assertFalse(CudaBackend.autoFuses(Matmul.TF32X3));
        assertFalse(CudaBackend.autoFuses(Matmul.BF16));
        assertFalse(CudaBackend.autoFuses(Matmul.FMA));
    }

    @Test
    void programmaticLaunchesAreOffByDefault() {
        assertFalse(CudaExecutable.PDL.valueOf(null));
        assertFalse(CudaExecutable.PDL.valueOf(""));
        assertTrue(CudaExecutable.PDL.valueOf("1"));
        var e = assertThrows(dev.cmc.runtime.SettingException.class, () -> CudaExecutable.PDL.valueOf("on"));
        assertEquals("CMC_CUDA_PDL=on: expected 1 (launch each captured kernel while the one before it in its stream runs) or 0 "
                + "(launch it once that one has ended, the default)", e.getMessage());
    }
}
