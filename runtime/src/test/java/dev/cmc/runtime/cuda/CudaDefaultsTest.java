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
    void fp32TakesWideWgmmaTilesForTheSamplersLaunchesAndSquareOnesForTheStep() {
        assertEquals(Tiling.WGMMA, CudaBackend.defaultTiling(9, 4096, Matmul.TF32X3), "the CT step at 4,096 was slower in 128×256");
        assertEquals(Tiling.WGMMA, CudaBackend.defaultTiling(9, CudaBackend.SAMPLING_ROWS - 1, Matmul.TF32X3));
        assertEquals(Tiling.WGMMA_WIDE, CudaBackend.defaultTiling(9, CudaBackend.SAMPLING_ROWS, Matmul.TF32X3));
        assertEquals(Tiling.WGMMA_WIDE, CudaBackend.defaultTiling(9, 1 << 20, Matmul.TF32X3));
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
        assertEquals("128x128 wgmma tiles from 4096 rows, 128x256 from 65536", CudaBackend.defaultTilings(9, Matmul.TF32X3));
        assertEquals("128x128 wgmma tiles from 4096 rows, tf32 MLP blocks on wgmma fed by bulk copies, chained", CudaBackend.defaultTilings(9, Matmul.TF32));
        assertEquals("", CudaBackend.defaultTilings(8, Matmul.TF32));
        assertEquals("", CudaBackend.defaultTilings(9, Matmul.BF16));
    }

    /** An up-projection's GEMM as the seed has it: [B, 256] rows into 1,024 columns. */
    private static Kernel.Gemm upProjection() {
        Buf out = Buf.whole("act", Shape.batch(1024));
        return new Kernel.Gemm("k_up", false, Buf.whole("ln", Shape.batch(256)), Buf.whole("w", Shape.fixed(256, 1024)), 256, out.shape(),
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
