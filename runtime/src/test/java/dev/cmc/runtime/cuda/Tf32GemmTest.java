package dev.cmc.runtime.cuda;

import dev.cmc.ir.Shape;
import dev.cmc.kernel.Buf;
import dev.cmc.kernel.Expr;
import dev.cmc.kernel.Kernel;
import dev.cmc.kernel.Program;
import org.junit.jupiter.params.ParameterizedTest;
import org.junit.jupiter.params.provider.ValueSource;

import java.util.List;
import java.util.SplittableRandom;

import static org.junit.jupiter.api.Assertions.assertTrue;

/**
 * One GEMM kernel on the tensor cores (mma.sync m16n8k8, TF32 in, fp32 accumulate), in the PTX simulator,
 * against a float64 product: within 5e-3 of the largest element, and not bit-equal to fp32 (the inputs really
 * are rounded). Shapes that are not multiples of the 64×64 tile, in both layouts the compiler emits.
 */
class Tf32GemmTest {
    @ParameterizedTest
    @ValueSource(booleans = {false, true})
    void oneGemmAgreesWithFloat64(boolean transposeA) {
        int rows = 70, k = 40, n = 72;
        Buf a = transposeA ? Buf.whole("a", Shape.fixed(k, rows)) : Buf.whole("a", Shape.batch(k));
        Buf b = Buf.whole("b", Shape.fixed(k, n));
        Shape domain = transposeA ? Shape.fixed(rows, n) : Shape.batch(n);
        Buf out = Buf.whole("out", domain);
        var gemm = new Kernel.Gemm("k_mm", transposeA, a, b, k, domain, List.of(new Expr.Let(0, new Expr.Acc(), out)));
        // TN contracts over the batch: then K is the runtime row count.
        int batch = transposeA ? k : rows;
        var program = new Program("tf32_gemm", List.of(
                new Program.Array("a", Program.Role.INPUT, a.shape(), null),
                new Program.Array("b", Program.Role.PARAMS, b.shape(), null),
                new Program.Array("out", Program.Role.OUTPUT, domain, null)), List.of(gemm));
        var rng = new SplittableRandom(7);
        float[] av = new float[rows * k], bv = new float[k * n];
        for (int i = 0; i < av.length; i++) av[i] = (float) (rng.nextDouble() * 2 - 1);
        for (int i = 0; i < bv.length; i++) bv[i] = (float) (rng.nextDouble() * 2 - 1);
        float[] got = new float[rows * n];
        try (var exe = new SimulatedCudaBackend(true).load(program, batch)) {
            exe.write("a", av, av.length);
            exe.write("b", bv, bv.length);
            exe.run(batch);
            exe.read("out", got, got.length);
        }
        double worst = 0, scale = 0;
        for (int r = 0; r < rows; r++) {
            for (int c = 0; c < n; c++) {
                double ref = 0;
                for (int p = 0; p < k; p++) ref += (double) (transposeA ? av[p * rows + r] : av[r * k + p]) * bv[p * n + c];
                worst = Math.max(worst, Math.abs(ref - got[r * n + c]));
                scale = Math.max(scale, Math.abs(ref));
            }
        }
        double rel = worst / scale;
        assertTrue(rel < 5e-3, "TF32 GEMM off by " + rel + " of the largest element");
        assertTrue(rel > 1e-6, "TF32 GEMM matches fp32 too closely (" + rel + "): are the inputs rounded?");
    }
}
