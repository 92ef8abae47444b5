package dev.cmc.fusion;

import dev.cmc.compile.Compiler;
import dev.cmc.dsl.SpecLoader;
import dev.cmc.kernel.Kernel;
import dev.cmc.kernel.Program;
import org.junit.jupiter.api.Test;

import java.util.List;

import static org.junit.jupiter.api.Assertions.*;

/**
 * Where fusion folds a LayerNorm into the GEMM after it, and where it must not. The sampler never writes a
 * normalised tensor: each block's normalisation stores only its rows' mean and rstd, and the up-projection
 * GEMM reads the block's input through them. In a training step the EMA target's forward pass folds the
 * same way, while the online network keeps x̂ and γ·x̂ + β, which its backward pass reads. (That the folded
 * kernels compute the same function is ParityTest's and TornadoTrainingTest's business.)
 */
class LayerNormFoldTest {
    private static final String SPEC = "model m { input_dim = 8; hidden_size = 32; num_layers = 3; }\ndata { source = \"builtin:none\"; }";

    @Test
    void theSamplerNeverWritesANormalisedTensor() {
        Program p = Compiler.sampler(SpecLoader.fromText("m.cm", SPEC)).program();
        List<Kernel.Normalize> norms = kernels(p, Kernel.Normalize.class);
        assertEquals(3, norms.size());
        for (Kernel.Normalize n : norms) {
            assertNotNull(n.stats(), n.name() + " keeps no row statistics");
            assertTrue(n.epilogue().isEmpty(), n.name() + " still computes an epilogue");
        }
        List<Kernel.Gemm> folded = kernels(p, Kernel.Gemm.class).stream().filter(g -> g.norm() != null).toList();
        assertEquals(3, folded.size(), "one up-projection per block reads through its LayerNorm");
        for (Kernel.Gemm g : folded) {
            assertFalse(g.transposeA());
            assertTrue(g.name().endsWith("_up_mm"), g.name());
            assertTrue(g.norm().gain().shape().cols() == g.k() && g.norm().bias().shape().cols() == g.k(), "γ and β span K");
        }
        assertTrue(p.arrays().stream().noneMatch(a -> a.name().endsWith("_ln") || a.name().endsWith("_xhat")), "a normalised tensor is still allocated");
    }

    @Test
    void trainingFoldsOnlyTheTargetNetwork() {
        Program p = Compiler.trainStep(SpecLoader.fromText("m.cm", SPEC)).program();
        for (Kernel.Normalize n : kernels(p, Kernel.Normalize.class)) {
            if (n.grad() != null) continue;
            boolean target = n.name().contains("target_");
            assertEquals(target, n.stats() != null, n.name() + (target ? " is not folded" : " is folded, but the backward pass reads its output"));
        }
        for (Kernel.Gemm g : kernels(p, Kernel.Gemm.class)) {
            if (g.norm() != null) assertTrue(g.name().contains("target_") && g.name().endsWith("_up_mm"), g.name());
        }
    }

    private static <K extends Kernel> List<K> kernels(Program p, Class<K> kind) {
        return p.kernels().stream().filter(kind::isInstance).map(kind::cast).toList();
    }
}
