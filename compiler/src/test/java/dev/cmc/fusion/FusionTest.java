package dev.cmc.fusion;

import dev.cmc.compile.Compiler;
import dev.cmc.dsl.SpecLoader;
import dev.cmc.kernel.Expr;
import dev.cmc.kernel.Kernel;
import dev.cmc.kernel.Kernels;
import dev.cmc.kernel.Program;
import dev.cmc.render.PtxasTest;
import org.junit.jupiter.api.Test;

import java.util.HashSet;
import java.util.List;
import java.util.Set;

import static org.junit.jupiter.api.Assertions.*;

/**
 * Elementwise kernels take in the later elementwise ops of their shape that read them: the CT step draws its
 * noise, noises the data at both σ and scales both points for the two networks in one kernel, where it took
 * five, and the noise itself no longer goes to memory. Over every program the tests compile, each kernel's lets read only values defined before them in the
 * same kernel, and nothing an elementwise kernel stores goes unread.
 */
class FusionTest {
    @Test
    void theCtStepNoisesAndScalesItsPointsInOneKernel() {
        var spec = SpecLoader.fromText("seed.cm", "model seed { input_dim = 64; hidden_size = 256; num_layers = 4; }\ntrain { method = ct; }\n");
        Program step = Compiler.trainStep(spec).program();
        List<Kernel> writers = step.kernels().stream().filter(k -> Kernels.writes(k).contains("x_hi")).toList();
        assertEquals(1, writers.size());
        Kernel noise = writers.getFirst();
        assertInstanceOf(Kernel.Elementwise.class, noise);
        // The noise z itself is no longer stored: only this kernel reads it.
        assertEquals(Set.of("x_hi", "x_scaled", "x_lo", "target_x_scaled"), Kernels.writes(noise));
        assertFalse(step.arrays().stream().anyMatch(a -> a.name().equals("z_drawn")), "z_drawn has an array");
        assertEquals(103, step.kernels().size(), "the seed's CT step: 107 kernels (7 of them Adam + EMA, one a module) before elementwise kernels took in their readers");
    }

    /**
     * The LayerNorm's input gradient is a GEMM whose products with the gain and with x̂ each have one reader that
     * takes an expression (the normalisation's gradient, the gain's batch sum): those readers compute them from
     * the GEMM's own output, which it stores anyway for the bias's batch sum, so the GEMM stores that alone.
     */
    @Test
    void theLayerNormsInputGradientStoresOnlyItself() {
        var spec = SpecLoader.fromText("seed.cm", "model seed { input_dim = 64; hidden_size = 256; num_layers = 4; }\ntrain { method = ct; }\n");
        Program step = Compiler.trainStep(spec).program();
        for (int b = 0; b < 4; b++) {
            String name = "k_matmul_nt_d_block" + b + "_ln";
            Kernel gemm = step.kernels().stream().filter(k -> k.name().equals(name)).findFirst().orElseThrow();
            assertEquals(Set.of("d_block" + b + "_ln"), Kernels.writes(gemm), name);
            String ln = "d_block" + b + "_ln", xhat = "block" + b + "_xhat";
            assertTrue(step.kernels().stream().anyMatch(k -> k instanceof Kernel.ReduceBatch && Kernels.reads(k).equals(Set.of(ln, xhat))),
                    "the gain's gradient sums " + ln + "·" + xhat + " itself");
            assertTrue(step.kernels().stream().anyMatch(k -> k instanceof Kernel.Normalize && Kernels.reads(k).contains(ln)),
                    "the normalisation's gradient reads " + ln);
        }
    }

    @Test
    void letsReadWhatTheirKernelDefinedBeforeThemAndStoresAreRead() {
        for (Program p : PtxasTest.programs()) {
            Set<String> read = new HashSet<>();
            for (Kernel k : p.kernels()) read.addAll(Kernels.reads(k));
            for (Kernel k : p.kernels()) {
                Set<Integer> defined = new HashSet<>();
                for (Expr.Let l : k.epilogue()) {
                    for (int v : vars(l.value())) assertTrue(defined.contains(v), p.name() + ": " + k.name() + " reads v" + v + " before defining it");
                    defined.add(l.id());
                }
                if (!(k instanceof Kernel.Elementwise)) continue;
                for (String a : Kernels.writes(k)) {
                    Program.Role role = p.arrays().get(p.arrayIndex(a)).role();
                    assertTrue(read.contains(a) || role != Program.Role.ACTIVATION, p.name() + ": " + k.name() + " stores " + a + ", which nothing reads");
                }
            }
        }
    }

    private static List<Integer> vars(Expr e) {
        return switch (e) {
            case Expr.Var v -> List.of(v.id());
            case Expr.Unary u -> vars(u.a());
            case Expr.Binary b -> java.util.stream.Stream.concat(vars(b.a()).stream(), vars(b.b()).stream()).toList();
            case Expr.Noise n -> java.util.stream.Stream.concat(vars(n.seed()).stream(), vars(n.firstRow()).stream()).toList();
            default -> List.of();
        };
    }
}
