package dev.cmc.render;

import dev.cmc.kernel.*;

import static dev.cmc.render.PtxRenderer.*;

/**
 * A GEMM on Hopper's warpgroup MMA ({@link Tiling#WGMMA}, sm_90a): the 128×128 (or 128×256) tiles of tf32 and
 * 3xTF32 GEMMs, NN and TN, fed by {@link PtxGemm}'s cp.async pipeline and finished by its epilogue and split K.
 */
final class PtxWgmmaGemm extends PtxGemm {
    PtxWgmmaGemm(Program program, int index, Matmul matmul, Tile tile) {
        super(program, index, matmul, tile);
    }

    @Override
    void body() {
        gemmWgmma(gemm);
    }

    /**
     * A tensor-core GEMM on Hopper's warpgroup MMA (sm_90a), for tf32 and 3xTF32 GEMMs of 128+ columns. wgmma
     * takes its B operand only from shared memory, and for TF32 only K-major, so the block computes the
     * transposed product, Cᵀ = Bᵀ·Aᵀ, whose operands lie as wgmma wants them: an NN GEMM's A, [M, K] rows, is
     * K-major as it is and goes to shared memory as core matrices (a TN GEMM's, [K, M], is transposed into the
     * same core matrices by its copies, see {@link #aCopies}); Bᵀ comes from registers, loaded from B's padded
     * K rows exactly like an mma.sync B fragment. Each warpgroup takes 64 of the tile's output columns
     * (wgmma's M) for all 128 rows (its N): one m64n128k8 per 8-deep K step, three for 3xTF32, whose A
     * remainders are split off in shared memory by the threads that copied them, as soon as they land.
     * Each 8-deep K step is a commit group of its own, and each step waits only for the group a slice back
     * (a 16-deep slice's steps leave one group in flight, a 32-deep one's three): the tensor cores do not drain
     * between steps or slices. A step's A fragments live in registers of their own (one set per step of a
     * slice), free again once that wait has retired them, before the same step of the next slice writes them; a
     * slice's stage is refilled stages - 1 trips later, after the barrier that follows its last step's retirement;
     * in tiles {@link Tile#refilledEarly}, as soon as the next slice's step steps - 2 has retired it, behind a
     * barrier of its own (see {@link #asyncKLoop}).
     */
    private void gemmWgmma(Kernel.Gemm g) {
        Frame t = frame(g);
        boolean x3 = matmul == Matmul.TF32X3;
        int wgN = tile.bm(), loOffset = tile.stages() * tile.aStageBytes();
        String lane = bin("and.b32", t.tid(), "31"), warp = bin("and.b32", bin("shr.u32", t.tid(), "5"), "3");
        String group = bin("shr.u32", t.tid(), "7"), grp = bin("shr.u32", lane, "2"), tig = bin("and.b32", lane, "3");
        // This thread's first output column in the tile: 64 per warpgroup, 16 per warp (wgmma's rows), g.
        String colIn = bin("add.s32", bin("add.s32", bin("shl.b32", group, "6"), bin("shl.b32", warp, "4")), grp);
        String[] acc = new String[wgN / 2];
        for (int i = 0; i < acc.length; i++) acc[i] = constF(0);
        Copies ac = aCopies(g, t, true);
        String bOff = wideBytes(bin("shl.b32", mad(tig, Integer.toString(tile.bStride()), colIn), "2"));
        // Early-refilled 3xTF32 tiles keep their remainders in a ring of two slots after the stages, this trip's
        // at slot parity (see Tile#remainderSlots): the slot written here was last read two slices back.
        boolean ring = x3 && tile.refillEarly();
        String parity = ring ? constI(0) : null;
        asyncKLoop(g, t, ac, tile.aStageBytes() / 4, stage -> {
            String head = bufferBase(t.as(), stage, tile.aStageBytes() / 4);
            if (ring) splitIntoHeadsAndRemainders(ac, head, remainderSlot(t, parity), 0);
            else if (x3) splitIntoHeadsAndRemainders(ac, head, null, loOffset);
            comment("the slice was written through the generic proxy; wgmma reads it through the async proxy");
            op("fence.proxy.async.shared::cta;");
        }, (aBase, bBase, refill) -> {
            String bRead = bin("add.s64", bBase, bOff), desc = descriptor(aBase, tile.sbo());
            String loDesc = ring ? descriptor(remainderSlot(t, parity), tile.sbo()) : null;
            int steps = tile.sliceK() / 8;
            for (int ks = 0; ks < tile.sliceK(); ks += 8) {
                comment("k step " + ks + (x3 ? ": remainder products first" : ""));
                String[][] a = tf32(transposedBWords(bRead, ks));
                op("wgmma.fence.sync.aligned;");
                String d = advanced(desc, ks / 4 * WG_LBO);   // the next two core matrices along K
                if (x3) {
                    wgmma(wgN, acc, a[0], ring ? advanced(loDesc, ks / 4 * WG_LBO) : advanced(d, loOffset));
                    wgmma(wgN, acc, a[1], d);
                }
                wgmma(wgN, acc, a[0], d);
                op("wgmma.commit_group.sync.aligned;");
                comment("the step a slice back is multiplied: its A fragments are free for this step of the next slice, and after"
                        + (tile.refillEarly() ? " a barrier" : " the next barrier") + " its stage");
                op("wgmma.wait_group.sync.aligned " + (steps - 1) + ";");
                // The wait after step steps - 2 retires the slice before's last step, the last multiply to read its stage.
                if (ks / 8 == steps - 2) refill.run();
            }
            if (ring) op("xor.b32 " + parity + ", " + parity + ", 1;");
        });
        op("wgmma.wait_group.sync.aligned 0;");
        // Accumulator 4j + e is Cᵀ(16·warp + g + 8·(e/2), 8j + 2t + e%2): column colIn (+8), row 8j + 2t (+1).
        String col = bin("add.s32", t.col0(), colIn), row = bin("add.s32", t.row0(), bin("shl.b32", tig, "1"));
        String[] cols = {col, bin("add.s32", col, "8")};
        var outs = new java.util.ArrayList<Out>();
        for (int j = 0; j < wgN / 8; j++) {
            String[] rows = {bin("add.s32", row, Integer.toString(8 * j)), bin("add.s32", row, Integer.toString(8 * j + 1))};
            for (int e = 0; e < 4; e++) outs.add(new Out(rows[e % 2], cols[e / 2], acc[4 * j + e]));
        }
        finish(g, t, outs);
    }

    /**
     * This lane's words of wgmma's A, Bᵀ, for 8-deep K step ks: Bᵀ(g, t), Bᵀ(g+8, t), Bᵀ(g, t+4), Bᵀ(g+8, t+4)
     * of its warp's 16 rows, i.e. B(t, c), B(t, c+8), B(t+4, c), B(t+4, c+8): the padded K rows keep the
     * lanes' (t, g) in 32 banks.
     */
    private String[] transposedBWords(String bRead, int ks) {
        int stride = tile.bStride();
        return new String[]{sharedB32(bRead, 4 * ks * stride), sharedB32(bRead, 4 * (ks * stride + 8)),
                sharedB32(bRead, 4 * (ks + 4) * stride), sharedB32(bRead, 4 * ((ks + 4) * stride + 8))};
    }

    /** The shared address of remainder slot parity (0 or 1), after the A stages: {@link Tile#remainderSlots}. */
    private String remainderSlot(Frame t, String parity) {
        return bufferBase(bin("add.s64", t.as(), Integer.toString(tile.stages() * tile.aStageBytes())), parity, tile.aStageBytes() / 4);
    }

    /**
     * 3xTF32 under wgmma: this thread's landed copies of A, each float split in place into its TF32 head, and
     * its TF32 remainder stored at the same place from loBase (the stage itself where null) + loOffset bytes
     * (wgmma reads TF32 from shared memory as it lies).
     */
    private void splitIntoHeadsAndRemainders(Copies ac, String stageBase, String loBase, int loOffset) {
        comment("3xTF32: this thread's copies split into TF32 heads (in place) and remainders");
        String at = bin("add.s64", stageBase, ac.sharedBytes()), atLo = loBase == null ? at : bin("add.s64", loBase, ac.sharedBytes());
        for (int l = 0; l < ac.count(); l++) {
            int off = l * ac.sharedStep();
            String[] v = new String[ac.width()];
            for (int q = 0; q < v.length; q++) v[q] = f();
            op("ld.shared" + vector(v) + ".f32 " + operands(v) + ", [" + at + "+" + off + "];");
            String[][] split = tf32(v);
            op("st.shared" + vector(v) + ".b32 [" + at + "+" + off + "], " + operands(split[0]) + ";");
            op("st.shared" + vector(v) + ".b32 [" + atLo + "+" + (off + loOffset) + "], " + operands(split[1]) + ";");
        }
    }
}
