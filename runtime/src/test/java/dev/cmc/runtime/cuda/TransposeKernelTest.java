package dev.cmc.runtime.cuda;

import dev.cmc.ir.Shape;
import dev.cmc.kernel.Buf;
import dev.cmc.kernel.Kernel;
import dev.cmc.kernel.Program;
import dev.cmc.runtime.Backend;
import org.junit.jupiter.params.ParameterizedTest;
import org.junit.jupiter.params.provider.CsvSource;

import java.util.List;
import java.util.SplittableRandom;

import static org.junit.jupiter.api.Assertions.assertEquals;

/**
 * One transpose of the cuda backend (a weight into the copy that input gradients read) in the PTX simulator, and
 * on a GPU where there is one, element by element. The weights sit inside flat arrays at offsets, as a model's do.
 * The shapes take each path of the tiled kernel: whole 32 × 32 tiles both ways (1,024 × 256, 256 × 64), partial
 * tiles at the bottom (the σ table's 150 rows), at the right and in the corner (13 × 37), and a single row.
 * Every element of the destination around the copy is checked to be untouched.
 */
class TransposeKernelTest {
    @ParameterizedTest(name = "{0}x{1} from offset {2} to {3}")
    @CsvSource({"1024, 256, 12, 4", "256, 64, 0, 0", "150, 256, 7, 3", "13, 37, 5, 11", "1, 5, 2, 1"})
    void transposeMovesEveryElementAndNothingElse(int rows, int cols, int srcOffset, int dstOffset) {
        int srcSize = srcOffset + rows * cols + 9, dstSize = dstOffset + rows * cols + 9;
        Buf src = new Buf("w", srcOffset, Shape.fixed(rows, cols)), dst = new Buf("w_t", dstOffset, Shape.fixed(cols, rows));
        var arrays = List.of(new Program.Array("w", Program.Role.INPUT, Shape.fixed(1, srcSize), null),
                new Program.Array("w_t", Program.Role.OUTPUT, Shape.fixed(1, dstSize), null));
        var program = new Program("transpose", arrays, List.of(new Kernel.Transpose("k_transpose_w", src, dst)));
        var rng = new SplittableRandom(rows * 131L + cols);
        float[] w = new float[srcSize], before = new float[dstSize];
        for (int i = 0; i < w.length; i++) w[i] = (float) rng.nextDouble();
        for (int i = 0; i < before.length; i++) before[i] = -1 - i;
        for (Backend backend : backends()) {
            try (var exe = backend.load(program, 1)) {
                exe.write("w", w, w.length);
                exe.write("w_t", before, before.length);
                for (int run = 0; run < 2; run++) {
                    exe.run(1);
                    float[] got = new float[dstSize];
                    exe.read("w_t", got, dstSize);
                    for (int i = 0; i < dstSize; i++) {
                        int k = i - dstOffset;
                        float want = k < 0 || k >= rows * cols ? before[i] : w[srcOffset + (k % rows) * cols + k / rows];
                        assertEquals(want, got[i], "element " + i + " of w_t, run " + run + " on " + backend.deviceName());
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
}
