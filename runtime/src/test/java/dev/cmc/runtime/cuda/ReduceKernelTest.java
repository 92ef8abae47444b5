package dev.cmc.runtime.cuda;

import dev.cmc.ir.Op;
import dev.cmc.ir.Shape;
import dev.cmc.kernel.Buf;
import dev.cmc.kernel.Expr;
import dev.cmc.kernel.Kernel;
import dev.cmc.kernel.Program;
import dev.cmc.render.PtxRenderer;
import dev.cmc.runtime.Backend;
import org.junit.jupiter.params.ParameterizedTest;
import org.junit.jupiter.params.provider.CsvSource;

import java.util.List;
import java.util.SplittableRandom;

import static org.junit.jupiter.api.Assertions.assertEquals;

/**
 * One batch reduction of the cuda backend (a bias's or LayerNorm's gradient: the column sums of a product of two
 * [B, n] arrays; or a mean) in the PTX simulator, and on a GPU where there is one, against float64 sums. The
 * shapes take each path of the kernel: a block of 8 columns (n = 256), of 4 lanes' worth (n = 3), of one (n = 1,
 * a loss's mean) and 2; columns past the last block's (n = 13); whole trips of 8 rows and a last, partial one
 * (2,500 and 9,000 rows), a partial trip alone (300 rows) and a single row. Run twice, as a step would be.
 */
class ReduceKernelTest {
    @ParameterizedTest(name = "n={0} rows={1} mean={2}")
    @CsvSource({"256, 2500, false", "3, 9000, false", "1, 9000, true", "13, 300, false", "2, 1, true", "1024, 1100, false"})
    void batchReductionAgreesWithFloat64(int n, int batch, boolean mean) {
        Buf a = Buf.whole("a", Shape.batch(n)), b = Buf.whole("b", Shape.batch(n)), out = Buf.whole("out", Shape.fixed(1, n));
        var arrays = List.of(new Program.Array("a", Program.Role.INPUT, a.shape(), null), new Program.Array("b", Program.Role.INPUT, b.shape(), null),
                new Program.Array("out", Program.Role.OUTPUT, out.shape(), null));
        Expr product = new Expr.Binary(Op.MUL, new Expr.Load(a), new Expr.Load(b));
        var reduce = new Kernel.ReduceBatch("k_reduce", product, mean, out.shape(), List.of(new Expr.Let(0, new Expr.Acc(), out)));
        var program = new Program("reduce", arrays, List.of(reduce));
        var rng = new SplittableRandom(n * 31L + batch);
        float[] av = random(rng, batch * n), bv = random(rng, batch * n);
        double[] ref = new double[n];
        double[] magnitude = new double[n];
        for (int r = 0; r < batch; r++) {
            for (int c = 0; c < n; c++) {
                double p = (double) av[r * n + c] * bv[r * n + c];
                ref[c] += p;
                magnitude[c] += Math.abs(p);
            }
        }
        for (Backend backend : backends()) {
            try (var exe = backend.load(program, batch)) {
                exe.write("a", av, av.length);
                exe.write("b", bv, bv.length);
                for (int run = 0; run < 2; run++) {
                    exe.run(batch);
                    float[] got = new float[n];
                    exe.read("out", got, n);
                    for (int c = 0; c < n; c++) {
                        double want = mean ? ref[c] / batch : ref[c], scale = mean ? magnitude[c] / batch : magnitude[c];
                        assertEquals(want, got[c], 1e-6 * scale + 1e-30, "column " + c + " of " + n + " over " + batch + " rows, run " + run + " on " + backend.deviceName());
                    }
                }
            }
        }
    }

    /** The PTX simulator, and where this machine has one, the GPU. */
    private static List<Backend> backends() {
        var out = new java.util.ArrayList<Backend>(List.of(new SimulatedCudaBackend()));
        if (!CudaDevices.list().isEmpty()) out.add(new CudaBackend(0));
        return out;
    }

    private static float[] random(SplittableRandom rng, int count) {
        float[] v = new float[count];
        for (int i = 0; i < v.length; i++) v[i] = (float) (rng.nextDouble() * 2 - 1);
        return v;
    }
}
