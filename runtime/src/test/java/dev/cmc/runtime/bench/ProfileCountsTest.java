package dev.cmc.runtime.bench;

import dev.cmc.compile.Compiler;
import dev.cmc.dsl.SpecLoader;
import org.junit.jupiter.api.Test;

import static org.junit.jupiter.api.Assertions.assertEquals;

/**
 * What `cmc bench --profile` divides kernel times by: a GEMM's FLOPs and a kernel's activation bytes, checked
 * against the seed model's shapes worked out by hand (hidden 256, expansion 4, input 64), unfused and with
 * cuda's fused MLP blocks.
 */
class ProfileCountsTest {
    @Test
    void gemmFlopsAndActivationBytesFollowTheShapes() {
        var spec = SpecLoader.fromText("seed.cm", "model seed { input_dim = 64; hidden_size = 256; num_layers = 4; }");
        var sampler = Compiler.sampler(spec).program();
        int batch = 1000;
        var flops = Bench.gemmFlops(sampler, batch);
        var bytes = Bench.activationBytes(sampler, batch);
        // The up-projection: x̂ [B,256] · W [256,1024], with bias and activation fused: reads x̂, writes the hidden activation.
        assertEquals(2.0 * batch * 1024 * 256, flops.get("k_matmul_block0_up_mm"));
        assertEquals(4.0 * batch * (256 + 1024), bytes.get("k_matmul_block0_up_mm"));
        // The down-projection with the residual: reads the hidden activation and h, writes the next h.
        assertEquals(2.0 * batch * 256 * 1024, flops.get("k_matmul_block0_down_mm"));
        assertEquals(4.0 * batch * (1024 + 256 + 256), bytes.get("k_matmul_block0_down_mm"));
        // LayerNorm: reads h, writes x̂; not a GEMM.
        assertEquals(4.0 * batch * (256 + 256), bytes.get("k_normalize_block0_xhat"));
        assertEquals(null, flops.get("k_normalize_block0_xhat"));

        // The same block fused (CMC_CUDA_MLP=fused): both GEMMs' FLOPs, and only h read and the next h written.
        var fused = dev.cmc.render.PtxRenderer.fuseMlps(sampler, dev.cmc.render.PtxRenderer.Matmul.TF32);
        assertEquals(2 * 2.0 * batch * 256 * 1024, Bench.gemmFlops(fused, batch).get("k_mlp_block0_h"));
        assertEquals(4.0 * batch * (256 + 256), Bench.activationBytes(fused, batch).get("k_mlp_block0_h"));
        // Drawing the step's noise and scaling the noised point for the network in one kernel: reads x, writes
        // x + s·z (the skip connection's) and c_in·(x + s·z) (the network's input). 0.75 kB a sample.
        assertEquals(4.0 * batch * (64 + 64 + 64), bytes.get("k_ew_x_noised"));
        assertEquals(null, bytes.get("k_ew_x_scaled"));
        // The whole sampler: 56.8 kB a sample unfused (57.1 when the noised point was read back to be scaled), 11.8 kB fused.
        assertEquals(56.8, total(Bench.activationBytes(sampler, batch)) / batch / 1000, 0.05);
        assertEquals(11.8, total(Bench.activationBytes(fused, batch)) / batch / 1000, 0.05);
    }

    private static double total(java.util.Map<String, Double> bytes) {
        return bytes.values().stream().mapToDouble(Double::doubleValue).sum();
    }
}
