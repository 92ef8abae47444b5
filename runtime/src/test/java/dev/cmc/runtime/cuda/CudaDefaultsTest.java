package dev.cmc.runtime.cuda;

import dev.cmc.render.PtxRenderer.Matmul;
import dev.cmc.render.PtxRenderer.Tiling;
import org.junit.jupiter.api.Test;

import static org.junit.jupiter.api.Assertions.*;

/** What the cuda backend does unless told otherwise, as the third H200 run measured it fastest (see CudaBackend). */
class CudaDefaultsTest {
    @Test
    void wgmmaTilesFrom4096RowsOnComputeCapability9Only() {
        for (Matmul m : new Matmul[]{Matmul.TF32X3, Matmul.TF32}) {
            assertEquals(Tiling.WGMMA, CudaBackend.defaultTiling(9, 4096, m));
            assertEquals(Tiling.WGMMA, CudaBackend.defaultTiling(9, CudaBackend.SAMPLING_ROWS, m));
            assertEquals(Tiling.NARROW, CudaBackend.defaultTiling(9, 4095, m), "the CT step at 256 was measured 128×64 alone");
            assertEquals(Tiling.NARROW, CudaBackend.defaultTiling(8, CudaBackend.SAMPLING_ROWS, m), "no wgmma before Hopper");
            assertEquals(Tiling.NARROW, CudaBackend.defaultTiling(10, CudaBackend.SAMPLING_ROWS, m), "sm_90a code runs on 9.0 alone");
        }
        assertEquals(Tiling.NARROW, CudaBackend.defaultTiling(9, CudaBackend.SAMPLING_ROWS, Matmul.BF16), "no bf16 wgmma tiles");
        assertEquals(Tiling.NARROW, CudaBackend.defaultTiling(9, CudaBackend.SAMPLING_ROWS, Matmul.FMA));
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
