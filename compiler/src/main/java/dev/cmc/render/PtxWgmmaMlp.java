package dev.cmc.render;

import dev.cmc.kernel.*;

import java.util.HashMap;

import static dev.cmc.render.PtxRenderer.*;

/** A residual MLP block in one kernel on Hopper's warpgroup MMA ({@link Kernel.Mlp}, tf32, sm_90a): see {@link #mlp}. */
final class PtxWgmmaMlp extends PtxMatrixKernel {
    PtxWgmmaMlp(Program program, int index) {
        super(program, index, Matmul.TF32);
    }

    @Override
    int threads() { return WG_MLP_THREADS; }

    /**
     * The SM's only block, of 256 threads: as many registers as the register file gives each, for h/2 output
     * accumulators, 32 of the hidden chunk and the chunk's 32 TF32 words.
     */
    @Override
    int maxRegisters() { return 255; }

    @Override
    void body() {
        mlp((Kernel.Mlp) kernel);
    }

    /**
     * The fused block of {@link PtxMlp} on wgmma, tf32: 128 rows per block, warpgroup w owns rows 64w..64w+63 to
     * the end. The rows are normalised once into shared memory as wgmma's core matrices, where they are the
     * up-projection's A. For each 64-column chunk of the hidden activation, the up-projection's 64×64 piece of a
     * warpgroup (m64n64k8, both operands in shared memory) goes through its epilogue (bias, activation) in the
     * accumulators, which are rounded to TF32 where they lie and become the down-projection's A fragments: wgmma's
     * accumulator layout is its A-register layout but for the order of K within each 8 columns (a thread holds
     * columns 2t and 2t+1, where an A fragment holds t and t+4), so the down-projection's B takes its K rows in
     * that order, K position p holding hidden column 2p (p &lt; 4) or 2(p−4)+1. The hidden activation never
     * touches shared memory. The down-projection adds into 64×h accumulators (m64n{h}k8) that stay to the end,
     * where its epilogue (bias, residual) stores the block's output.
     * <p>
     * TF32 wgmma reads both shared operands K-major only, and the weights lie [K, N]: each thread's copies are
     * single floats, a warp's 32 of them 4 K rows of 8 consecutive columns (whole 32-byte sectors) that land as one
     * core matrix, 128 contiguous bytes (as the TN GEMMs' A in {@link PtxGemm#aCopies}). The weights stream
     * through a 6-stage cp.async pipeline of 16 KB slices, 4 in flight: a slice's stage is refilled two slices
     * after it was multiplied, once each warpgroup's wait for the wgmma a slice back has retired it.
     */
    private void mlp(Kernel.Mlp m) {
        int h = m.domain().cols(), e = m.up().domain().cols();
        int upK = WG_MLP_SLICE / MLP_CHUNK, downK = WG_MLP_SLICE / h;
        int upSlices = h / upK, steps = upSlices + MLP_CHUNK / downK, chunks = e / MLP_CHUNK;
        int stageBytes = 4 * WG_MLP_SLICE, ahead = WG_MLP_STAGES - 2, lnSbo = h / 4 * WG_LBO;
        String tid = special("%tid.x"), lane = bin("and.b32", tid, "31"), warp = bin("shr.u32", tid, "5");
        String grp = bin("shr.u32", lane, "2"), tig = bin("and.b32", lane, "3"), group = bin("shr.u32", tid, "7");
        String rows = domainRows(m.domain()), lastRow = bin("add.s32", rows, "-1");
        String row0 = bin("mul.lo.s32", special("%ctaid.x"), Integer.toString(MLP_ROWS));
        String ln = symbol(DYNAMIC_SHARED), stages = bin("add.s64", ln, Integer.toString(4 * MLP_ROWS * h));

        Copies up = copies(m.up().b(), upK, warp, grp, tig, (kq, t) -> bin("add.s32", bin("shl.b32", kq, "2"), t), e, MLP_CHUNK);
        // K position p of a down slice's 8-row step holds hidden column 2p or 2(p-4)+1: 8·(kq/2) + 2t + kq%2.
        Copies down = copies(m.down().b(), downK, warp, grp, tig, (kq, t) -> bin("add.s32", bin("add.s32",
                bin("shl.b32", bin("shr.u32", kq, "1"), "3"), bin("shl.b32", t, "1")), bin("and.b32", kq, "1")), h, MLP_CHUNK * h);
        String copyTo = wideBytes(bin("shl.b32", tid, "2"));
        String chunk = constI(0);
        // Slice s of the chunk `later` chunks on (up slices first, then down) into a stage; copies past the last chunk skipped.
        record Slice(int s, int later, String valid, String stageBase) {}
        java.util.function.Consumer<Slice> issue = sl -> {
            boolean isUp = sl.s() < upSlices;
            Copies c = isUp ? up : down;
            int j = isUp ? sl.s() : sl.s() - upSlices, depth = isUp ? upK : downK;
            String from = bin("add.s64", c.from(), wideBytes(bin("shl.b32", chunk, log2(4 * c.chunkFloats()))));
            String dst = bin("add.s64", sl.stageBase(), copyTo);
            for (int l = 0; l < WG_MLP_SLICE / WG_MLP_THREADS; l++) {
                long src = 4L * ((long) (j * depth + 4 * c.kqOf(l)) * c.kStride() + 8L * c.n8Of(l) + (long) sl.later() * c.chunkFloats());
                op((sl.valid() == null ? "" : "@" + sl.valid() + " ") + "cp.async.ca.shared.global [" + dst + "+" + 8 * WG_LBO * l + "], [" + from + "+" + src + "], 4;");
            }
            op("cp.async.commit_group;");
        };
        comment("the first " + ahead + " weight slices on their way while the rows are normalised");
        for (int s = 0; s < ahead; s++) {
            if (s / steps < chunks) issue.accept(new Slice(s % steps, s / steps, null, bin("add.s64", stages, Integer.toString(s * stageBytes))));
            else op("cp.async.commit_group;");
        }

        comment("LayerNorm of the block's rows into shared memory, rounded to TF32, as core matrices: warp w takes rows 8w..8w+7 and"
                + " 64 on, lane (g, t) columns t, t+4, ... of row g, so that a warp's stores fill one core matrix; rows past the end are zero");
        Kernel.Normalize norm = m.norm();
        int perLane = h / 4;
        loop(bin("shl.b32", warp, "3"), Integer.toString(MLP_ROWS), 64, local -> {
            String row = bin("add.s32", bin("add.s32", row0, local), grp), at = bin("min.s32", row, lastRow), valid = pred("lt.s32", row, rows);
            String slot = bin("add.s64", ln, wideBytes(mad(bin("shr.u32", local, "3"), Integer.toString(lnSbo), bin("shl.b32", lane, "2"))));
            String[] v = new String[perLane], col = new String[perLane];
            String sum = accumulator();
            for (int c = 0; c < perLane; c++) {
                col[c] = c == 0 ? tig : bin("add.s32", tig, Integer.toString(4 * c));
                v[c] = expr(norm.x(), new Ctx(norm.domain(), at, col[c], null, new HashMap<>()));
                addInto(sum, v[c]);
            }
            String mean = bin("div.rn.f32", laneSum(sum, 4), imm(h)), sq = accumulator();
            for (int c = 0; c < perLane; c++) {
                String t = bin("sub.f32", v[c], mean);
                op("fma.rn.f32 " + sq + ", " + t + ", " + t + ", " + sq + ";");
            }
            String rstd = rstd(bin("div.rn.f32", laneSum(sq, 4), imm(h)));
            for (int c = 0; c < perLane; c++) {
                int offset = WG_LBO * c;
                String xh = bin("mul.f32", bin("sub.f32", v[c], mean), rstd);
                lets(norm.epilogue(), new Ctx(norm.domain(), at, col[c], xh, new HashMap<>()), m.normalized().array(),
                        y -> {
                            String word = roundTf32(y), kept = r();
                            op("selp.b32 " + kept + ", " + word + ", 0, " + valid + ";");
                            op("st.shared.b32 [" + slot + "+" + offset + "], " + kept + ";");
                        });
            }
        });

        // Warpgroup w's rows of A (the normalised rows), as a descriptor; this thread's accumulator rows (g, g+8 of its warp's 16).
        String lnDesc = descriptor(bin("add.s64", ln, wideBytes(bin("mul.lo.s32", group, Integer.toString(8 * lnSbo)))), lnSbo);
        String accRow = bin("add.s32", bin("add.s32", row0, bin("shl.b32", warp, "4")), grp);
        String[] upAcc = new String[MLP_CHUNK / 2], outAcc = new String[h / 2];
        for (int q = 0; q < upAcc.length; q++) upAcc[q] = constF(0);
        for (int q = 0; q < outAcc.length; q++) outAcc[q] = constF(0);
        String[][] words = new String[MLP_CHUNK / 8][];

        String readOff = r(), writeOff = r();
        op("mov.u32 " + readOff + ", 0;");
        op("mov.u32 " + writeOff + ", " + ahead * stageBytes + ";");
        String top = newLabel("chunk"), done = newLabel("chunk_end");
        label(top);
        op(".pragma \"nounroll\";");
        op("@" + pred("ge.s32", chunk, Integer.toString(chunks)) + " bra " + done + ";");
        for (int i = 0; i < steps; i++) {
            int s = i + ahead;
            boolean isUp = i < upSlices;
            comment("slice " + i + " of " + steps + " (" + (isUp ? "up, K rows " + upK * i : "down, K rows " + downK * (i - upSlices))
                    + " of the chunk); slice " + s % steps + (s < steps ? "" : " of chunk +" + s / steps) + " on its way into the stage multiplied two slices ago");
            op("cp.async.wait_group " + (ahead - 1) + ";");
            comment("the slice was written through the generic proxy; wgmma reads it through the async proxy");
            op("fence.proxy.async.shared::cta;");
            op("bar.sync 0;");
            String valid = s < steps ? null : pred("lt.s32", bin("add.s32", chunk, Integer.toString(s / steps)), Integer.toString(chunks));
            issue.accept(new Slice(s % steps, s / steps, valid, bin("add.s64", stages, wideBytes(writeOff))));
            String bDesc = descriptor(bin("add.s64", stages, wideBytes(readOff)), (isUp ? upK : downK) / 4 * WG_LBO);
            goRound(readOff, stageBytes, WG_MLP_STAGES * stageBytes);
            goRound(writeOff, stageBytes, WG_MLP_STAGES * stageBytes);
            op("wgmma.fence.sync.aligned;");
            if (isUp) {
                for (int ks = 0; ks < upK / 8; ks++) {
                    int k0 = upK * i + 8 * ks;
                    wgmma(MLP_CHUNK, upAcc, advanced(lnDesc, k0 / 4 * WG_LBO), advanced(bDesc, 2 * WG_LBO * ks), k0 > 0);
                }
            } else {
                for (int ks = 0; ks < downK / 8; ks++) {
                    wgmma(h, outAcc, words[(i - upSlices) * downK / 8 + ks], advanced(bDesc, 2 * WG_LBO * ks));
                }
            }
            op("wgmma.commit_group.sync.aligned;");
            if (i != upSlices - 1) {
                comment("the slice before is multiplied: after the next barrier its stage is free");
                op("wgmma.wait_group.sync.aligned 1;");
                continue;
            }
            op("wgmma.wait_group.sync.aligned 0;");
            comment("the up chunk through its epilogue in the accumulators, rounded to TF32: the down-projection's A fragments");
            String colBase = bin("add.s32", bin("shl.b32", chunk, log2(MLP_CHUNK)), bin("shl.b32", tig, "1"));
            String[] rowAt = {bin("min.s32", accRow, lastRow), bin("min.s32", bin("add.s32", accRow, "8"), lastRow)};
            for (int q = 0; q < upAcc.length; q++) {
                int jj = q / 4, e2 = q % 4;
                if (e2 == 0) words[jj] = new String[4];
                String col = bin("add.s32", colBase, Integer.toString(8 * jj + e2 % 2));
                // Accumulator 4j + e is hidden (g + 8·(e/2), 8j + 2t + e%2): A word e/2 + 2·(e%2) of K step j.
                int word = e2 / 2 + 2 * (e2 % 2);
                lets(m.up().epilogue(), new Ctx(m.up().domain(), rowAt[e2 / 2], col, upAcc[q], new HashMap<>()), m.hidden().array(),
                        y -> words[jj][word] = roundTf32(y));
            }
        }
        op("add.s32 " + chunk + ", " + chunk + ", 1;");
        op("bra " + top + ";");
        label(done);
        op("wgmma.wait_group.sync.aligned 0;");
        op("cp.async.wait_group 0;");

        comment("the block's output: the down-projection's epilogue (bias, residual) on the accumulators");
        String colBase = bin("shl.b32", tig, "1");
        for (int q = 0; q < outAcc.length; q++) {
            String row = q % 4 < 2 ? accRow : bin("add.s32", accRow, "8");
            emit(m.down(), rows, Integer.toString(h), new Out(row, bin("add.s32", colBase, Integer.toString(8 * (q / 4) + q % 2)), outAcc[q]));
        }
    }

    /**
     * A thread's copies of one weight's slices, each depth K rows deep as core matrices, Q = depth/4 of them along K
     * for each 8 columns: its l-th copy is core matrix 8l + warp (warp 0-7), so (n8, kq) = its 8 columns and 4 K rows.
     * {@code from} points at the thread's own float of copy 0 of the first chunk's slice 0; kqOf and n8Of give the
     * rest of copy l's core matrix; kStride is the floats between K rows, chunkFloats those between two chunks' slices.
     */
    private record Copies(String from, int q, int kStride, int chunkFloats) {
        int kqOf(int l) { return q >= 8 ? 8 * (l % (q / 8)) : 0; }

        int n8Of(int l) { return q >= 8 ? l / (q / 8) : l * (8 / q); }
    }

    /**
     * The copies of a weight [K, N] (N = kStride floats a row) in slices `depth` deep: this thread's core matrix
     * part (kq from the warp, lane (g, t) its column g and K row kRow(kq, t)), as a pointer to its first float.
     */
    private Copies copies(Buf w, int depth, String warp, String grp, String tig, java.util.function.BinaryOperator<String> kRow, int kStride, int chunkFloats) {
        int q = depth / 4;
        String kq = q >= 8 ? warp : bin("and.b32", warp, Integer.toString(q - 1));
        String n8 = q >= 8 ? "0" : bin("shr.u32", warp, log2(q));
        String idx = mad(kRow.apply(kq, tig), Integer.toString(kStride), bin("add.s32", bin("shl.b32", n8, "3"), bin("add.s32", grp, Integer.toString(w.offset()))));
        return new Copies(address(w.array(), idx), q, kStride, chunkFloats);
    }
}
