package dev.cmc.render;

import dev.cmc.compile.Compiler;
import dev.cmc.dsl.SpecLoader;
import dev.cmc.kernel.Buf;
import dev.cmc.kernel.Kernel;
import dev.cmc.kernel.Kernels;
import dev.cmc.kernel.Program;
import org.junit.jupiter.api.Test;

import java.util.ArrayList;
import java.util.List;

import static org.junit.jupiter.api.Assertions.*;

/**
 * Weights packed for the wgmma MLP blocks' bulk copies (CMC_CUDA_TILES=wgmma-mlp-bulk, wgmma-chain-bulk): the
 * layout of {@link Kernel.Transpose.Packing}, and how {@link PtxWgmmaMlp#packWeights} rewrites a program. The
 * simulator checks the packed blocks' results (MlpKernelTest).
 */
class PackedWeightsTest {
    private static Program sampler(int h, int layers) {
        return Compiler.sampler(SpecLoader.fromText("packed.cm", "model m { input_dim = 5; hidden_size = " + h + "; num_layers = " + layers
                + "; }\ndata { source = \"builtin:none\"; }\ntarget { precision = tf32; }")).program();
    }

    /**
     * Each element of an up-projection's transposed weight (N = 64 a slice, 64 of K, rows permuted) and a
     * down-projection's (all 256 rows, 16 of K) lands once, inside its own slice, and a core matrix's row holds
     * 4 consecutive K positions of one weight row: the 16 bytes wgmma reads there.
     */
    @Test
    void packingIsOneToOneAndKeepsCoreMatrixRowsWhole() {
        for (var c : List.of(new int[]{1024, 256, 64, 64, 1}, new int[]{256, 1024, 256, 16, 0})) {
            int n = c[0], k = c[1];
            var packing = new Kernel.Transpose.Packing(c[2], c[3], c[4] == 1);
            boolean[] seen = new boolean[n * k];
            int sliceFloats = packing.rows() * packing.depth();
            for (int row = 0; row < n; row++) {
                for (int col = 0; col < k; col++) {
                    int at = packing.index(row, col, k);
                    assertFalse(seen[at], "twice at " + at);
                    seen[at] = true;
                    assertEquals(row / packing.rows() * (k / packing.depth()) + col / packing.depth(), at / sliceFloats, "slice of (" + row + ", " + col + ")");
                    if (col % 4 > 0) assertEquals(packing.index(row, col - 1, k) + 1, at, "a core-matrix row's 4 K positions are contiguous");
                }
            }
            // Row groups of 8 are 128-byte core matrices, depth/4 of them along K; permuted, row w of a group sits at 2(w%4) + w/4.
            assertEquals(packing.permuted() ? 8 : 4, packing.index(1, 0, k) - packing.index(0, 0, k), "weight row 1's position in its core matrix");
            assertEquals(packing.permuted() ? 4 : 16, packing.index(4, 0, k) - packing.index(0, 0, k), "weight row 4's position in its core matrix");
            assertEquals(8 * 4, packing.index(0, 4, k) - packing.index(0, 0, k), "the next core matrix along K");
            assertEquals(packing.depth() / 4 * 32, packing.index(8, 0, k) - packing.index(0, 0, k), "the next group of 8 rows");
        }
    }

    /** Under bulk copies every block reads packed copies, which the Transposes before it write, in place of the plain ones. */
    @Test
    void blocksReadPackedCopiesThatTheirTransposesWrite() {
        Program plain = PtxRenderer.fuseMlps(sampler(256, 2), PtxRenderer.Matmul.TF32, PtxRenderer.Tiling.WGMMA_MLP);
        Program packed = PtxRenderer.fuseMlps(sampler(256, 2), PtxRenderer.Matmul.TF32, PtxRenderer.Tiling.WGMMA_MLP_BULK);
        assertEquals(plain.kernels().size(), packed.kernels().size());
        int blocks = 0;
        for (int i = 0; i < packed.kernels().size(); i++) {
            if (!(packed.kernels().get(i) instanceof Kernel.Mlp m)) continue;
            blocks++;
            var up = (Kernel.Transpose) packed.kernels().get(i - 2);
            var down = (Kernel.Transpose) packed.kernels().get(i - 1);
            assertEquals(List.of(m.upT(), m.downT()), List.of(up.dst(), down.dst()));
            assertTrue(m.upT().array().endsWith("_packed"), m.upT().array());
            assertEquals(new Kernel.Transpose.Packing(64, 64, true), up.packing());
            assertEquals(new Kernel.Transpose.Packing(256, 16, false), down.packing());
            var unpacked = (Kernel.Mlp) plain.kernels().get(i);
            assertEquals(unpacked.upT().offset(), m.upT().offset(), "the same offset in the packed copy");
        }
        assertEquals(2, blocks);
        String plainCopy = ((Kernel.Mlp) plain.kernels().stream().filter(k -> k instanceof Kernel.Mlp).findFirst().orElseThrow()).upT().array();
        assertTrue(plain.arrays().stream().anyMatch(a -> a.name().equals(plainCopy)));
        assertTrue(packed.arrays().stream().noneMatch(a -> a.name().equals(plainCopy)), "the plain copy, which nothing uses, is not allocated");
        assertTrue(packed.arrays().stream().anyMatch(a -> a.name().equals(((Kernel.Transpose) packed.kernels().stream()
                .filter(k -> k instanceof Kernel.Transpose).findFirst().orElseThrow()).dst().array())), "the packed array is declared");

        // Rendered, the blocks take their slices by bulk copies alone; the same blocks without BULK, by cp.async alone.
        String bulkPtx = PtxRenderer.render(packed, "packed", "sm_90", PtxRenderer.Matmul.TF32, PtxRenderer.Tiling.WGMMA_MLP_BULK);
        String plainPtx = PtxRenderer.render(plain, "plain", "sm_90", PtxRenderer.Matmul.TF32, PtxRenderer.Tiling.WGMMA_MLP);
        for (String block : List.of("k_mlp_block0_h", "k_mlp_block1_h")) {
            String inBulk = kernelText(bulkPtx, block), inPlain = kernelText(plainPtx, block);
            assertTrue(inBulk.contains("cp.async.bulk.shared::cluster.global.mbarrier::complete_tx::bytes") && !inBulk.contains("cp.async.cg"), block);
            assertTrue(inPlain.contains("cp.async.cg") && !inPlain.contains("cp.async.bulk"), block);
        }

        // Chained, the stem and head (32 data dimensions) are packed too, all rows of theirs a slice.
        Program chained = PtxRenderer.fuseMlps(Compiler.sampler(SpecLoader.fromText("packed.cm", "model m { input_dim = 32; hidden_size = 128; num_layers = 2; }\n"
                + "data { source = \"builtin:none\"; }\ntarget { precision = tf32; }")).program(), PtxRenderer.Matmul.TF32, PtxRenderer.Tiling.WGMMA_CHAIN_BULK);
        var chain = (Kernel.MlpChain) chained.kernels().stream().filter(k -> k instanceof Kernel.MlpChain).findFirst().orElseThrow();
        assertNotNull(chain.stem());
        for (Buf b : List.of(chain.stemT(), chain.headT(), chain.blocks().getFirst().upT())) assertTrue(b.array().endsWith("_packed"), b.toString());
        var headPacking = chained.kernels().stream().filter(k -> k instanceof Kernel.Transpose t && t.dst().equals(chain.headT()))
                .map(k -> ((Kernel.Transpose) k).packing()).findFirst().orElseThrow();
        assertEquals(new Kernel.Transpose.Packing(32, 128, false), headPacking);
    }

    /** One kernel's text in a module: from its name's comment to the next kernel's. */
    private static String kernelText(String ptx, String kernel) {
        int from = ptx.indexOf("// " + kernel + "\n"), to = ptx.indexOf("\n// k_", from + 1);
        assertTrue(from >= 0, kernel + " not in the module");
        return ptx.substring(from, to < 0 ? ptx.length() : to);
    }

    /** A plain transposed copy that another kernel also reads stays, with the packed one after it. */
    @Test
    void aPlainCopyReadElsewhereStays() {
        Program plain = PtxRenderer.fuseMlps(sampler(128, 1), PtxRenderer.Matmul.TF32, PtxRenderer.Tiling.WGMMA_MLP);
        var block = (Kernel.Mlp) plain.kernels().stream().filter(k -> k instanceof Kernel.Mlp).findFirst().orElseThrow();
        var kernels = new ArrayList<>(plain.kernels());
        kernels.add(new Kernel.Transpose("k_reader", block.upT(), new Buf("reader_out", 0, block.up().b().shape())));
        Program packed = PtxWgmmaMlp.packWeights(new Program(plain.name(), plain.arrays(), List.copyOf(kernels)));
        var transposes = packed.kernels().stream().filter(k -> k instanceof Kernel.Transpose t && t.src().equals(block.up().b())).map(k -> (Kernel.Transpose) k).toList();
        assertEquals(2, transposes.size(), "the plain transpose and the packed one");
        assertNull(transposes.get(0).packing());
        assertEquals(block.upT(), transposes.get(0).dst());
        assertNotNull(transposes.get(1).packing());
        assertTrue(Kernels.reads(packed.kernels().getLast()).contains(block.upT().array()), "the reader still reads the plain copy");
        assertTrue(packed.arrays().stream().anyMatch(a -> a.name().equals(block.upT().array())), "which stays allocated");
    }
}
