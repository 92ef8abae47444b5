package dev.cmc.render;

import dev.cmc.kernel.*;

import java.util.HashMap;

import static dev.cmc.render.PtxRenderer.*;

/**
 * A kernel that multiplies matrices ({@link PtxGemm}, {@link PtxMlp}): its GEMM arithmetic, the tensor cores'
 * mma.sync fragments, and its accumulators out through a GEMM's epilogue.
 */
abstract class PtxMatrixKernel extends PtxFunction {
    final Matmul matmul;

    PtxMatrixKernel(Program program, int index, Matmul matmul) {
        super(program, index);
        this.matmul = matmul;
    }

    /**
     * A pipeline's stage counter on to the next stage: step on, and back to 0 where it reaches end (a stage
     * index stepping by 1, or a byte offset by a stage's bytes).
     */
    void goRound(String counter, int step, int end) {
        op("add.s32 " + counter + ", " + counter + ", " + step + ";");
        String wrap = pred("eq.s32", counter, Integer.toString(end));
        op("selp.s32 " + counter + ", 0, " + counter + ", " + wrap + ";");
    }

    /** One accumulator register and the output element it belongs to. */
    record Out(String row, String col, String acc) {}

    /** One accumulator through the fused epilogue, if (row, col) lies inside the output. */
    void emit(Kernel.Gemm g, String m, String n, Out o) {
        String skip = newLabel("out");
        op("@" + outside(o.row(), o.col(), m, n) + " bra " + skip + ";");
        epilogue(g, o);
        label(skip);
    }

    /** One accumulator through the fused epilogue, its element known to lie inside the output. */
    void epilogue(Kernel.Gemm g, Out o) {
        lets(g.epilogue(), new Ctx(g.domain(), o.row(), o.col(), o.acc(), new HashMap<>()));
    }

    /** Whether element (row, col) lies outside an m×n output. */
    String outside(String row, String col, String m, String n) {
        String x = p();
        op("setp.ge.s32 " + x + ", " + row + ", " + m + ";");
        op("setp.ge.or.s32 " + x + ", " + col + ", " + n + ", " + x + ";");
        return x;
    }

    /** An A fragment from on-chip operands: as it is (already TF32), or for 3xTF32 split into {heads, remainders}. */
    String[][] fragment(String[] words, boolean split) {
        return split ? tf32(words) : new String[][]{words};
    }

    /** acc += a·b in TF32: one mma, or 3xTF32's three (remainder products first), given {heads[, remainders]}. */
    void mmas(String[] acc, String[][] a, String[][] b) {
        if (a.length > 1) {
            mma(acc, a[1], b[0]);
            mma(acc, a[0], b[1]);
        }
        mma(acc, a[0], b[0]);
    }

    /** An fp32 value rounded to TF32, as the mma reads it. */
    String roundTf32(String x) { return unaryOp("cvt.rna.tf32.f32", x); }

    /** fp32 fragment words as the mma takes them: {TF32 heads} or, for 3xTF32, {heads, TF32 remainders}. */
    String[][] tf32(String[] words) {
        String[] hi = new String[words.length], lo = new String[words.length];
        for (int e = 0; e < words.length; e++) {
            hi[e] = roundTf32(words[e]);
            if (matmul == Matmul.TF32X3) lo[e] = roundTf32(bin("sub.f32", words[e], hi[e]));
        }
        return matmul == Matmul.TF32X3 ? new String[][]{hi, lo} : new String[][]{hi};
    }

    void mma(String[] acc, String[] a, String[] b) {
        String c = "{" + String.join(", ", acc) + "}";
        op("mma.sync.aligned.m16n8k8.row.col.f32.tf32.tf32.f32 " + c + ", {" + String.join(", ", a) + "}, {" + String.join(", ", b) + "}, " + c + ";");
    }

    /** Four 32-bit words by ldmatrix.x4: an NN GEMM's A fragment A(g, t), A(g+8, t), A(g, t+4), A(g+8, t+4). */
    String[] ldmatrix(String base, int byteOffset) {
        String[] v = {r(), r(), r(), r()};
        op("ldmatrix.sync.aligned.m8n8.x4.shared.b16 {" + String.join(", ", v) + "}, [" + base + "+" + byteOffset + "];");
        return v;
    }

    /** A 32-bit word (a TF32 value) from shared memory. */
    String sharedB32(String base, int byteOffset) {
        String v = r();
        op("ld.shared.b32 " + v + ", [" + base + "+" + byteOffset + "];");
        return v;
    }
}
