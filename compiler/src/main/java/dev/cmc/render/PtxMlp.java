package dev.cmc.render;

import dev.cmc.kernel.*;

import java.util.HashMap;

import static dev.cmc.render.PtxRenderer.*;

/** A residual MLP block in one kernel ({@link Kernel.Mlp}, sm_90): see {@link #mlp}. */
final class PtxMlp extends PtxMatrixKernel {
    PtxMlp(Program program, int index, Matmul matmul) {
        super(program, index, matmul);
    }

    @Override
    int threads() { return MLP_THREADS; }

    /** 512 threads: at most 128 registers each, to fit the register file. */
    @Override
    int maxRegisters() { return 128; }

    @Override
    void body() {
        mlp((Kernel.Mlp) kernel);
    }

    /**
     * A residual MLP block in one kernel ({@link Kernel.Mlp}), on the tensor cores (tf32): 128 rows per block,
     * 16 warps. The block's rows are normalised once into shared memory; then for each 64-column chunk of the
     * hidden activation, the up-projection's 128×64 piece (each warp 32×16 of it) goes through its epilogue
     * (bias, activation) into shared memory, and the down-projection adds that chunk's product into 128×h
     * accumulators that stay in registers to the end (each warp 32×h/4), where the down-projection's epilogue
     * (bias, residual) stores the block's output. So a row costs one read and one write of h floats, where the
     * three kernels it replaces moved 2h + 2e more: the normalised rows and the hidden activation, each
     * written and read back. The weights (L2-resident) stream through one 6-stage cp.async pipeline of equal
     * slices, up slices and down slices in turn, 5 slices (45 KB) in flight while one is multiplied.
     */
    private void mlp(Kernel.Mlp m) {
        int h = m.domain().cols(), e = m.up().domain().cols();
        int lnStride = h + 4, actStride = MLP_CHUNK + 4, upStride = MLP_CHUNK + 8, downStride = h + 8;
        int downK = MLP_SLICE / h, upSteps = h / MLP_UP_K, steps = upSteps + MLP_CHUNK / downK, chunks = e / MLP_CHUNK;
        int stageBytes = 4 * mlpStageFloats(h), ahead = MLP_STAGES - 1, downTiles = h / 32;
        // tf32 keeps both on-chip operands rounded to TF32, so their fragments go to the mma as loaded; 3xTF32
        // keeps them in fp32 and splits each fragment into head and remainder as it loads it, as gemmMma does.
        boolean x3 = matmul == Matmul.TF32X3;
        java.util.function.Function<String, String> onChip = y -> x3 ? y : roundTf32(y);
        String tid = special("%tid.x"), lane = bin("and.b32", tid, "31"), warp = bin("shr.u32", tid, "5");
        String grp = bin("shr.u32", lane, "2"), tig = bin("and.b32", lane, "3");
        String rows = domainRows(m.domain()), row0 = bin("mul.lo.s32", special("%ctaid.x"), Integer.toString(MLP_ROWS));
        String ln = symbol(DYNAMIC_SHARED), act = bin("add.s64", ln, Integer.toString(4 * MLP_ROWS * lnStride));
        String stages = bin("add.s64", act, Integer.toString(4 * MLP_ROWS * actStride));

        // Slice s of a chunk (up slices first, then down), of this chunk or the next, into a stage, if valid: this
        // thread's one 16-byte copy of it, its addresses worked out afresh from %tid.x and the chunk each time,
        // which costs a few integer instructions a slice and keeps them out of the registers the loop holds.
        String chunk = constI(0);
        record Slice(int s, boolean next, String valid, String stageBase) {}
        java.util.function.Consumer<Slice> issue = sl -> {
            boolean up = sl.s() < upSteps;
            int j = up ? sl.s() : sl.s() - upSteps, perRow = up ? MLP_CHUNK / 4 : h / 4;
            Buf w = (up ? m.up() : m.down()).b();
            String t = special("%tid.x"), row = bin("shr.u32", t, log2(perRow)), q = bin("shl.b32", bin("and.b32", t, Integer.toString(perRow - 1)), "2");
            // The chunk's first column (up) or K row (down) of the weights: 64 per chunk.
            String chunkAt = bin("shl.b32", sl.next() ? bin("add.s32", chunk, "1") : chunk, log2(MLP_CHUNK));
            String src = up ? bin("add.s32", mad(row, Integer.toString(e), q), chunkAt)
                            : mad(chunkAt, Integer.toString(h), mad(row, Integer.toString(h), q));
            int offset = w.offset() + (up ? MLP_UP_K * j * e : downK * j * h);
            String dst = bin("add.s64", sl.stageBase(), wideBytes(bin("shl.b32", mad(row, Integer.toString(up ? upStride : downStride), q), "2")));
            op((sl.valid() == null ? "" : "@" + sl.valid() + " ") + "cp.async.cg.shared.global [" + dst
                    + "], [" + address(w.array(), bin("add.s32", src, Integer.toString(offset))) + "], 16, 16;");
            op("cp.async.commit_group;");
        };
        comment("the first " + ahead + " weight slices on their way while the rows are normalised");
        for (int s = 0; s < ahead; s++) issue.accept(new Slice(s, false, null, bin("add.s64", stages, Integer.toString(s * stageBytes))));

        comment("LayerNorm of the block's rows into shared memory" + (x3 ? "" : ", rounded to TF32") + ": warp w takes rows w, w+16, ...; rows past the end are zero");
        Kernel.Normalize norm = m.norm();
        int perLane = h / 32;
        loop(warp, Integer.toString(MLP_ROWS), MLP_THREADS / 32, local -> {
            String row = bin("add.s32", row0, local), skip = newLabel("ln_pad"), next = newLabel("ln_next");
            String slot = bin("add.s64", ln, wideBytes(bin("shl.b32", mad(local, Integer.toString(lnStride), lane), "2")));
            op("@" + pred("ge.s32", row, rows) + " bra " + skip + ";");
            String[] v = new String[perLane], col = new String[perLane];
            String sum = accumulator();
            for (int q = 0; q < perLane; q++) {
                col[q] = bin("add.s32", lane, Integer.toString(32 * q));
                v[q] = expr(norm.x(), new Ctx(norm.domain(), row, col[q], null, new HashMap<>()));
                addInto(sum, v[q]);
            }
            String[] moments = rowMoments(sum, v, 32, h);
            String mean = moments[0], rstd = moments[1];
            for (int q = 0; q < perLane; q++) {
                int at = 4 * 32 * q;
                String xh = bin("mul.f32", bin("sub.f32", v[q], mean), rstd);
                lets(norm.epilogue(), new Ctx(norm.domain(), row, col[q], xh, new HashMap<>()), m.normalized().array(),
                        y -> op("st.shared.b32 [" + slot + "+" + at + "], " + onChip.apply(y) + ";"));
            }
            op("bra " + next + ";");
            label(skip);
            for (int q = 0; q < perLane; q++) op("st.shared.b32 [" + slot + "+" + 4 * 32 * q + "], 0;");
            label(next);
        });

        // Warp w: rows 32·(w/4) of both products; columns 16·(w%4) of the up chunk, h/4·(w%4) of the output.
        String warpRow = bin("shl.b32", bin("shr.u32", warp, "2"), "5"), warpAcross = bin("and.b32", warp, "3");
        String aRow = bin("add.s32", bin("add.s32", warpRow, bin("and.b32", lane, "7")), bin("and.b32", lane, "8"));
        String aK = bin("shl.b32", bin("shr.u32", lane, "4"), "2");   // ldmatrix: lanes 8q…8q+7 address matrix q's rows
        String lnRead = bin("add.s64", ln, wideBytes(bin("shl.b32", mad(aRow, Integer.toString(lnStride), aK), "2")));
        String actRead = bin("add.s64", act, wideBytes(bin("shl.b32", mad(aRow, Integer.toString(actStride), aK), "2")));
        String upCol = mad(warpAcross, "16", grp), downCol = mad(warpAcross, Integer.toString(h / 4), grp);
        String upRead = bin("add.s64", stages, wideBytes(bin("shl.b32", mad(tig, Integer.toString(upStride), upCol), "2")));
        String downRead = bin("add.s64", stages, wideBytes(bin("shl.b32", mad(tig, Integer.toString(downStride), downCol), "2")));
        String[][][] upAcc = new String[2][2][4], downAcc = new String[2][downTiles][4];
        for (String[][] a : upAcc) for (String[] b : a) for (int q = 0; q < 4; q++) b[q] = f();
        for (String[][] a : downAcc) for (String[] b : a) for (int q = 0; q < 4; q++) b[q] = constF(0);
        // This thread's up-chunk accumulator (i, j, q) is local row warpRow + g + 16i + 8·(q/2), chunk column 16·(w%4) + 2t + 8j + q%2.
        String accRow = bin("add.s32", warpRow, grp), upAccCol = mad(warpAcross, "16", bin("shl.b32", tig, "1"));

        // The stages a slice is read from and written to, as byte offsets: a chunk's slices are not a whole number
        // of rounds of the stages, so each chunk starts at another stage, and the offsets go round at run time.
        String readOff = r(), writeOff = r();
        op("mov.u32 " + readOff + ", 0;");
        op("mov.u32 " + writeOff + ", " + ahead * stageBytes + ";");
        String top = newLabel("chunk"), done = newLabel("chunk_end");
        label(top);
        op(".pragma \"nounroll\";");
        op("@" + pred("ge.s32", chunk, Integer.toString(chunks)) + " bra " + done + ";");
        String moreChunks = pred("lt.s32", bin("add.s32", chunk, "1"), Integer.toString(chunks));
        for (int i = 0; i < steps; i++) {
            int s = i + ahead;
            comment("slice " + i + " of " + steps + " (" + (i < upSteps ? "up, K rows " + MLP_UP_K * i : "down, K rows " + downK * (i - upSteps))
                    + " of the chunk); slice " + s % steps + (s < steps ? "" : " of the next chunk") + " on its way into the stage read last");
            op("cp.async.wait_group " + (ahead - 1) + ";");
            op("bar.sync 0;");
            issue.accept(new Slice(s % steps, s >= steps, s >= steps ? moreChunks : null, bin("add.s64", stages, wideBytes(writeOff))));
            String upReadHere = bin("add.s64", upRead, wideBytes(readOff)), downReadHere = bin("add.s64", downRead, wideBytes(readOff));
            goRound(readOff, stageBytes, MLP_STAGES * stageBytes);
            goRound(writeOff, stageBytes, MLP_STAGES * stageBytes);
            // The up chunk's accumulators start at zero here, so that they hold no registers through the down slices.
            if (i == 0) for (String[][] a : upAcc) for (String[] b : a) for (String x : b) op("mov.f32 " + x + ", 0f00000000;");
            if (i < upSteps) {
                for (int ks = 0; ks < MLP_UP_K; ks += 8) {
                    String[][][] bf = new String[2][][];
                    for (int jn = 0; jn < 2; jn++) {
                        int at = 4 * (ks * upStride + 8 * jn);
                        bf[jn] = tf32(new String[]{sharedB32(upReadHere, at), sharedB32(upReadHere, at + 16 * upStride)});
                    }
                    for (int ti = 0; ti < 2; ti++) {
                        String[][] af = fragment(ldmatrix(lnRead, 4 * (16 * ti * lnStride + MLP_UP_K * i + ks)), x3);
                        for (int jn = 0; jn < 2; jn++) mmas(upAcc[ti][jn], af, bf[jn]);
                    }
                }
            } else {
                int j = i - upSteps;
                for (int ks = 0; ks < downK; ks += 8) {
                    String[][][] af = new String[2][][];
                    for (int ti = 0; ti < 2; ti++) af[ti] = fragment(ldmatrix(actRead, 4 * (16 * ti * actStride + downK * j + ks)), x3);
                    for (int jn = 0; jn < downTiles; jn++) {
                        int at = 4 * (ks * downStride + 8 * jn);
                        String[][] bf = tf32(new String[]{sharedB32(downReadHere, at), sharedB32(downReadHere, at + 16 * downStride)});
                        for (int ti = 0; ti < 2; ti++) mmas(downAcc[ti][jn], af[ti], bf);
                    }
                }
            }
            if (i != upSteps - 1) continue;
            comment("the up chunk through its epilogue into shared memory" + (x3 ? "" : " (TF32)") + ", for the down slices after the next barrier");
            String colInE = bin("add.s32", bin("shl.b32", chunk, log2(MLP_CHUNK)), upAccCol);
            String lastRow = bin("add.s32", rows, "-1");
            for (int ti = 0; ti < 2; ti++) for (int jn = 0; jn < 2; jn++) for (int half = 0; half < 2; half++) {
                int localRow = 16 * ti + 8 * half;
                // Rows past the end still go through the epilogue (at the last row's inputs), but are never stored.
                String row = bin("min.s32", bin("add.s32", bin("add.s32", row0, accRow), Integer.toString(localRow)), lastRow);
                String[] word = new String[2];
                for (int q = 0; q < 2; q++) {
                    int k = q;
                    String col = bin("add.s32", colInE, Integer.toString(8 * jn + q));
                    lets(m.up().epilogue(), new Ctx(m.up().domain(), row, col, upAcc[ti][jn][2 * half + q], new HashMap<>()), m.hidden().array(),
                            y -> word[k] = onChip.apply(y));
                }
                String at = bin("add.s64", act, wideBytes(bin("shl.b32", mad(bin("add.s32", accRow, Integer.toString(localRow)), Integer.toString(actStride),
                        bin("add.s32", upAccCol, Integer.toString(8 * jn))), "2")));
                op("st.shared.v2.b32 [" + at + "], {" + word[0] + ", " + word[1] + "};");
            }
        }
        op("add.s32 " + chunk + ", " + chunk + ", 1;");
        op("bra " + top + ";");
        label(done);
        op("cp.async.wait_group 0;");

        comment("the block's output: the down-projection's epilogue (bias, residual) on the accumulators");
        String outCol = mad(warpAcross, Integer.toString(h / 4), bin("shl.b32", tig, "1"));
        var outs = new java.util.ArrayList<Out>();
        for (int ti = 0; ti < 2; ti++) for (int jn = 0; jn < downTiles; jn++) for (int q = 0; q < 4; q++) {
            String row = bin("add.s32", bin("add.s32", row0, accRow), Integer.toString(16 * ti + 8 * (q / 2)));
            String col = bin("add.s32", outCol, Integer.toString(8 * jn + q % 2));
            outs.add(new Out(row, col, downAcc[ti][jn][q]));
        }
        emitAll(m.down(), rows, Integer.toString(h), outs);
    }
}
