package dev.cmc.render;

import dev.cmc.kernel.*;

import java.util.HashMap;
import java.util.List;
import java.util.Map;

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

    /** One register, or several as a PTX vector's braces: a load's destination, a store's source. */
    static String operands(String[] regs) { return regs.length == 1 ? regs[0] : "{" + String.join(", ", regs) + "}"; }

    /** The vector suffix of a load or store of these registers: none for one, .v2 or .v4 for more. */
    static String vector(String[] regs) { return regs.length == 1 ? "" : ".v" + regs.length; }

    /** One accumulator register and the output element it belongs to. */
    record Out(String row, String col, String acc) {}

    /**
     * Loads an epilogue group may hold in flight: its accumulators go through the epilogue together, all their loads
     * issued before the first of their stores. 8 accumulators of a residual block's down-projection (a bias and a
     * residual each) spill nowhere; 16 of them spilled in the 128-register wgmma GEMMs, and 8 of a CT step's output
     * projection (c_skip, c_out, x and the target's output each) in bf16's 128x64 tiles.
     */
    static final int EPILOGUE_LOADS = 16, EPILOGUE_GROUP = 8;

    /** Accumulators an epilogue group of this GEMM takes: as many as {@link #EPILOGUE_LOADS} allow, 1 to 8. */
    static int epilogueGroup(Kernel.Gemm g) {
        int loads = g.epilogue().stream().mapToInt(l -> loads(l.value())).sum();
        return Math.clamp(EPILOGUE_LOADS / Math.max(1, loads), 1, EPILOGUE_GROUP);
    }

    /** Global loads an expression makes: its Loads and Gathers (a Gather's index load counted with it). */
    private static int loads(Expr e) {
        return switch (e) {
            case Expr.Load _, Expr.Gather _ -> 1;
            case Expr.Unary u -> loads(u.a());
            case Expr.Binary b -> loads(b.a()) + loads(b.b());
            case Expr.Noise n -> loads(n.seed()) + loads(n.firstRow());
            case Expr.Const _, Expr.Acc _, Expr.Var _, Expr.Rows _ -> 0;
        };
    }

    /**
     * Accumulators out through the fused epilogue into an m×n output, {@link #epilogueGroup} at a time: a group's
     * values first, then its stores, each where its (row, col) lies inside the output. A store might alias a later
     * load as far as ptxas knows, so it keeps them in order: an epilogue written element by element (load the
     * residual, add, store) waited one memory latency per element, 64 in a row a thread. Values are computed at
     * coordinates clamped into the output, so that a group's loads need no branches and stay in bounds.
     */
    void emitAll(Kernel.Gemm g, String m, String n, List<Out> outs) {
        // A row vector (a bias) is loaded once per column, not once per accumulator: a tile's thread holds few
        // columns, so most groups of an epilogue that loads nothing else (an up-projection's) load nothing.
        Map<String, String> outer = rowVectors;
        rowVectors = new HashMap<>();
        var clamped = new HashMap<String, String>();
        String lastRow = less(m, 1), lastCol = less(n, 1);
        int size = epilogueGroup(g);
        for (int from = 0; from < outs.size(); from += size) {
            List<Out> group = outs.subList(from, Math.min(outs.size(), from + size));
            var ctxs = new java.util.ArrayList<Ctx>();
            var values = new java.util.ArrayList<Map<Expr.Let, String>>();
            for (Out o : group) {
                String row = clamped.computeIfAbsent(o.row(), r -> bin("min.s32", r, lastRow));
                String col = clamped.computeIfAbsent(o.col(), c -> bin("min.s32", c, lastCol));
                Ctx c = new Ctx(g.domain(), row, col, o.acc(), new HashMap<>());
                ctxs.add(c);
                values.add(valuesOf(g.epilogue(), c));
            }
            storeEach(values, ctxs, "out", i -> outside(group.get(i).row(), group.get(i).col(), m, n));
        }
        rowVectors = outer;
    }

    /** Whether element (row, col) lies outside an m×n output. */
    String outside(String row, String col, String m, String n) {
        String x = p();
        op("setp.ge.s32 " + x + ", " + row + ", " + m + ";");
        op("setp.ge.or.s32 " + x + ", " + col + ", " + n + ", " + x + ";");
        return x;
    }

    /**
     * A LayerNorm's {mean, 1/std} of a row of n values spread over `lanes` lanes, each holding some of them (v) and
     * their sum: the variance from the values' squared distances to the mean, a second pass over the registers.
     */
    String[] rowMoments(String sum, String[] v, int lanes, int n) {
        String mean = bin("div.rn.f32", laneSum(sum, lanes), imm(n)), sq = accumulator();
        for (String x : v) {
            String t = bin("sub.f32", x, mean);
            op("fma.rn.f32 " + sq + ", " + t + ", " + t + ", " + sq + ";");
        }
        return new String[]{mean, rstd(bin("div.rn.f32", laneSum(sq, lanes), imm(n)))};
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

    /**
     * wgmma's shared-memory matrix descriptor of core matrices (8 rows × 16 bytes, 128 contiguous bytes each) at a
     * shared address: the start address, LBO (the next core matrix along K, {@link PtxRenderer#WG_LBO} bytes on)
     * and SBO (the next 8 rows) in 16-byte units (bits 0-13, 16-29, 32-45), no swizzle (bits 62-63 zero).
     */
    String descriptor(String sharedAddress, int sbo) {
        String low = r();
        op("cvt.u32.u64 " + low + ", " + sharedAddress + ";");
        String start = bin("and.b32", bin("shr.u32", low, "4"), "16383");
        String word = bin("or.b32", start, Integer.toString((WG_LBO >> 4) << 16));
        return bin("or.b64", wideBytes(word), Long.toString((long) (sbo >> 4) << 32));
    }

    /** A descriptor moved on by a number of bytes (a multiple of 16): its start address counts 16-byte units. */
    String advanced(String desc, int bytes) {
        return bytes == 0 ? desc : bin("add.s64", desc, Integer.toString(bytes >> 4));
    }

    /** acc (+)= A·B on wgmma, m64nNk8 in TF32: A as four registers a thread, or a descriptor; B by descriptor. */
    void wgmma(int n, String[] acc, String a, String bDesc, boolean accumulate) {
        op("wgmma.mma_async.sync.aligned.m64n" + n + "k8.f32.tf32.tf32 {" + String.join(", ", acc) + "}, " + a + ", " + bDesc + ", "
                + (accumulate ? 1 : 0) + ", 1, 1;");
    }

    void wgmma(int n, String[] acc, String[] a, String bDesc) {
        wgmma(n, acc, "{" + String.join(", ", a) + "}", bDesc, true);
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
