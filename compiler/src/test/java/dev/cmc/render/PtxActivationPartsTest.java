package dev.cmc.render;

import dev.cmc.compile.Compiler;
import dev.cmc.dsl.SpecLoader;
import dev.cmc.kernel.Kernel;
import dev.cmc.kernel.Program;
import org.junit.jupiter.params.ParameterizedTest;
import org.junit.jupiter.params.provider.CsvSource;

import java.util.List;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertTrue;

/**
 * A training step's up-projection stores the activation and its derivative at each pre-activation (the backward
 * pass multiplies by the second); the two share their costly part (SiLU's 1 + e^-x, GELU's tanh), which the
 * epilogue computes once: its GEMM takes as many e^x (ex2) as the EMA target's up-projection, the same GEMM
 * storing the activation alone. Whether the values are right is ParityTest's and the simulator's to check.
 */
class PtxActivationPartsTest {
    @ParameterizedTest(name = "{0}, {1} tiles for {2}")
    @CsvSource({"silu, WGMMA_MIXED, sm_90", "gelu, WGMMA_MIXED, sm_90", "silu, NARROW, sm_80", "gelu, NARROW, sm_80"})
    void upProjectionTakesItsActivationsSharedPartOnce(String activation, PtxRenderer.Tiling tiling, String arch) {
        Program step = Compiler.trainStep(SpecLoader.fromText("parts.cm",
                "model m { input_dim = 64; hidden_size = 256; num_layers = 2; activation = " + activation + "; }\n")).program();
        List<String> modules = PtxRenderer.modules(step, arch, PtxRenderer.Matmul.TF32X3, tiling);
        int online = exponentials(step, modules, "k_matmul_block0_up_mm"), target = exponentials(step, modules, "k_matmul_target_block0_up_mm");
        assertTrue(target > 0, "the target's up-projection takes no e^x: " + target);
        assertEquals(target, online, "e^x in the up-projection storing " + activation + " and its derivative, against the one storing " + activation + " alone");
    }

    private static int exponentials(Program p, List<String> modules, String kernel) {
        for (int k = 0; k < p.kernels().size(); k++) {
            Kernel each = p.kernels().get(k);
            if (each.name().equals(kernel)) return (int) modules.get(k).lines().filter(l -> l.strip().startsWith("ex2.approx")).count();
        }
        throw new AssertionError("no kernel " + kernel + " in " + p.kernels().stream().map(Kernel::name).toList());
    }
}
