package dev.cmc.render;

import dev.cmc.kernel.*;

import java.util.HashMap;
import java.util.List;

import static dev.cmc.render.PtxRenderer.*;

/** A residual MLP block in one kernel on Hopper's warpgroup MMA ({@link Kernel.Mlp}, tf32, sm_90a): see {@link #mlp}. */
final class PtxWgmmaMlp extends PtxMatrixKernel {
    /** Whether each weight slice comes by one bulk copy from weights packed slice by slice (see {@link #packWeights}). */
    private final boolean bulk;
    /** Under bulk copies: the stages' mbarriers (8 bytes each, after the stages), the thread that issues the copies, and the parity of the fill awaited next. */
    private String stageArea, bars, leader, phase;

    PtxWgmmaMlp(Program program, int index, boolean bulk) {
        super(program, index, Matmul.TF32);
        this.bulk = bulk;
    }

    @Override
    int threads() { return WG_MLP_THREADS; }

    /**
     * The SM's only block, of 256 threads: as many registers as the register file gives each, for h/2 output
     * accumulators, 32 of the hidden chunk and the TF32 words of two down slices.
     */
    @Override
    int maxRegisters() { return 255; }

    @Override
    void body() {
        if (kernel instanceof Kernel.MlpChain c) blocks(c.stem(), c.stemT(), c.blocks(), c.head(), c.headT());
        else blocks(null, null, List.of((Kernel.Mlp) kernel), null, null);
    }

    /**
     * The fused block of {@link PtxMlp} on wgmma, tf32: 128 rows per block, warpgroup w owns rows 64w..64w+63 to
     * the end. The rows are normalised once into shared memory as wgmma's core matrices, where they are the
     * up-projection's A. For each 64-column chunk of the hidden activation, the up-projection's 64×64 piece of a
     * warpgroup (m64n64k8, both operands in shared memory) goes through its epilogue (bias, activation) in the
     * accumulators, a down slice's K steps at a time just before that slice is issued (so that the epilogue runs
     * while the slice before is multiplied), rounded to TF32 where they lie as the down-projection's A fragments.
     * wgmma's accumulator layout is its A-register layout but for the order within each 8 columns (a thread holds
     * columns 2t and 2t+1, where an A fragment holds K positions t and t+4), so the up-projection's B takes its
     * hidden columns in that order: its N position 2t holds hidden column t, 2t+1 column t+4. The hidden
     * activation never touches shared memory. The down-projection adds into 64×h accumulators (m64n{h}k8) that
     * stay to the end, where its epilogue (bias, residual) stores the block's output.
     * <p>
     * TF32 wgmma reads both shared operands K-major only, and a weight lies [K, N], so the block reads the copies
     * that Transpose kernels before it make ({@link Kernel.Mlp#upT}, see {@link PtxRenderer#fuseMlps}): their rows
     * are K-major, and each 16-byte cp.async moves one row of a core matrix. The weights stream through a 6-stage
     * pipeline of 16 KB slices, 4 in flight: a slice's stage is refilled two slices after it was multiplied, once
     * each warpgroup's wait for the wgmma a slice back has retired it. Under bulk copies ({@link #bulk}) the weights
     * are packed slice by slice ({@link #packWeights}), one thread moves each slice with one cp.async.bulk that
     * completes on the stage's mbarrier, and every thread waits on that mbarrier before its wgmma reads the stage.
     * <p>
     * A chain of blocks ({@link Kernel.MlpChain}) runs them one after another on the same rows, and the weight
     * pipeline runs on from one block into the next: the last chunk's copies fetch the next block's first slices.
     * Between two blocks, the accumulators go through the block's epilogue where they lie and stay as the next
     * block's accumulators, its residual already added (see {@link dev.cmc.fusion.MlpFusion#chain}), and the next
     * block's LayerNorm reads them there: each row lies in the 4 lanes of a quad, as in the first block's.
     * <p>
     * A chain's stem (its input projection) runs before block 0: its A rows into shared memory as core matrices,
     * its product ({@link #projection}) onto accumulators started at the rest of its epilogue, whose sum block 0's
     * LayerNorm then reads. Its head (the output projection) runs after the last block: that block's output from
     * the accumulators into shared memory as its A, its product into the first d/2 accumulators, its epilogue
     * storing the kernel's output. Both weights stream through the same stages, their first slices issued by
     * the phase before.
     */
    private void blocks(Kernel.Gemm stem, Buf stemT, List<Kernel.Mlp> blocks, Kernel.Gemm head, Buf headT) {
        Kernel.Mlp first = blocks.getFirst();
        int h = first.domain().cols(), e = first.up().domain().cols();
        // The stem's slices: all h rows of its transposed weight, 4096/h of K (its d inputs) deep, before block 0's.
        int dIn = stem == null ? 0 : stem.k(), stemK = WG_MLP_SLICE / h, stemSlices = dIn / stemK;
        // The head's slices: all d rows of its transposed weight, 4096/d of K (h) deep.
        int d = head == null ? 0 : head.domain().cols(), headK = head == null ? 0 : WG_MLP_SLICE / d, headSlices = head == null ? 0 : h / headK;
        int upK = WG_MLP_SLICE / MLP_CHUNK, downK = WG_MLP_SLICE / h;
        int upSlices = h / upK, steps = upSlices + MLP_CHUNK / downK, chunks = e / MLP_CHUNK;
        int stageBytes = 4 * WG_MLP_SLICE, ahead = WG_MLP_STAGES - 2, lnSbo = h / 4 * WG_LBO;
        String tid = special("%tid.x"), lane = bin("and.b32", tid, "31"), warp = bin("shr.u32", tid, "5");
        String grp = bin("shr.u32", lane, "2"), tig = bin("and.b32", lane, "3"), group = bin("shr.u32", tid, "7");
        String rows = domainRows(first.domain()), lastRow = bin("add.s32", rows, "-1");
        String row0 = bin("mul.lo.s32", special("%ctaid.x"), Integer.toString(MLP_ROWS));
        String ln = symbol(DYNAMIC_SHARED), stages = bin("add.s64", ln, Integer.toString(4 * MLP_ROWS * h));
        if (bulk) {
            stageArea = stages;
            bars = bin("add.s64", stages, Integer.toString(WG_MLP_STAGES * stageBytes));
            leader = pred("eq.u32", tid, "0");
            phase = constI(0);
            comment("each stage's mbarrier: a fill complete once its one arrival (the leader's, expecting the slice's bytes) and those bytes are in");
            for (int q = 0; q < WG_MLP_STAGES; q++) op("@" + leader + " mbarrier.init.shared::cta.b64 [" + bars + "+" + 8 * q + "], 1;");
            op("fence.mbarrier_init.release.cluster;");
            op("bar.sync 0;");
        }

        // Up slices are rows of Wupᵀ (hidden columns, in the order the accumulators hold them, see hiddenWords),
        // 64 of K (h) deep; down slices are all h rows of Wdownᵀ, 4096/h of K (the chunk's hidden columns) deep.
        // The addresses are the first block's; a later block's weights lie a fixed number of bytes on (shift).
        Copies up = copies(first.upT(), upK, true, h, MLP_CHUNK * h, warp, grp, tig), down = copies(first.downT(), downK, false, e, MLP_CHUNK, warp, grp, tig);
        String chunk = constI(0);
        // Slice s of block b's chunk `later` chunks on (up slices first, then down) into a stage. Past the block's last
        // chunk (valid false), the same slice of the next block's first chunk, or after the last block the head's slice s.
        record Slice(int b, int s, int later, String valid, String stageBase) {}
        // Under bulk copies, the packed weights' first slices: a chunk's slices one after another, 16 KB each.
        String upBase = bulk ? address(first.upT().array(), Integer.toString(first.upT().offset())) : null;
        String downBase = bulk ? address(first.downT().array(), Integer.toString(first.downT().offset())) : null;
        String headBase = bulk && head != null ? address(headT.array(), Integer.toString(headT.offset())) : null;
        String stemBase = bulk && stem != null ? address(stemT.array(), Integer.toString(stemT.offset())) : null;
        java.util.function.Consumer<Slice> issue = sl -> {
            boolean isUp = sl.s() < upSlices;
            Copies c = isUp ? up : down;
            int j = isUp ? sl.s() : sl.s() - upSlices, depth = isUp ? upK : downK;
            if (bulk) {
                int perChunk = isUp ? upSlices : MLP_CHUNK / downK;
                String base = isUp ? upBase : downBase;
                leaderOnly(() -> {
                    String from = bin("add.s64", base, wideBytes(bin("mul.lo.s32", chunk, Integer.toString(perChunk * stageBytes))));
                    long src = (long) stageBytes * (sl.later() * perChunk + j) + shift(blocks, sl.b(), isUp);
                    bulkCopy(sl.valid() == null ? "" : "@" + sl.valid() + " ", sl.stageBase(), from + "+" + src);
                    if (sl.valid() != null && sl.b() + 1 < blocks.size()) {
                        bulkCopy("@!" + sl.valid() + " ", sl.stageBase(), base + "+" + ((long) stageBytes * j + shift(blocks, sl.b() + 1, isUp)));
                    } else if (sl.valid() != null && sl.s() < headSlices) {
                        bulkCopy("@!" + sl.valid() + " ", sl.stageBase(), headBase + "+" + (long) stageBytes * sl.s());
                    }
                });
                return;
            }
            String from = bin("add.s64", c.from(), wideBytes(bin("shl.b32", chunk, log2(4 * c.chunkFloats()))));
            String dst = bin("add.s64", sl.stageBase(), c.to());
            for (int l = 0; l < COPIES; l++) {
                long src = c.fromBytes(l) + 4L * ((long) j * depth + (long) sl.later() * c.chunkFloats()) + shift(blocks, sl.b(), isUp);
                op((sl.valid() == null ? "" : "@" + sl.valid() + " ") + "cp.async.cg.shared.global [" + dst + "+" + c.toBytes(l) + "], [" + from + "+" + src + "], 16;");
            }
            if (sl.valid() != null && sl.b() + 1 < blocks.size()) {
                for (int l = 0; l < COPIES; l++) {
                    long src = c.fromBytes(l) + 4L * j * depth + shift(blocks, sl.b() + 1, isUp);
                    op("@!" + sl.valid() + " cp.async.cg.shared.global [" + dst + "+" + c.toBytes(l) + "], [" + c.from() + "+" + src + "], 16;");
                }
            } else if (sl.valid() != null && sl.s() < headSlices) {
                weightCopies(headT, headK, h, sl.s(), "@!" + sl.valid() + " ", sl.stageBase(), warp, grp, tig);
            }
            op("cp.async.commit_group;");
        };
        // Slice q of the sequence before block 0's loop: the stem's slices, then block 0's first.
        java.util.function.BiConsumer<Integer, String> issueFirst = (q, stageBase) -> {
            int s = q - stemSlices;
            if (q < stemSlices && bulk) leaderOnly(() -> bulkCopy("", stageBase, stemBase + "+" + (long) 4 * WG_MLP_SLICE * q));
            if (q < stemSlices && !bulk) weightCopies(stemT, stemK, dIn, q, "", stageBase, warp, grp, tig);
            if (q < stemSlices || s / steps >= chunks) {
                if (!bulk) op("cp.async.commit_group;");
            } else issue.accept(new Slice(0, s % steps, s / steps, null, stageBase));
        };
        comment("the first " + ahead + " weight slices on their way while the rows are normalised");
        for (int q = 0; q < ahead; q++) issueFirst.accept(q, bin("add.s64", stages, Integer.toString(q * stageBytes)));

        if (stem == null) comment("LayerNorm of the block's rows into shared memory, rounded to TF32, as core matrices: warp w takes rows 8w..8w+7 and"
                + " 64 on, lane (g, t) columns t, t+4, ... of row g, so that a warp's stores fill one core matrix; rows past the end are zero");
        if (stem == null) {
            Kernel.Normalize norm = first.norm();
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
                String[] moments = rowMoments(sum, v, 4, h);
                String mean = moments[0], rstd = moments[1];
                for (int c = 0; c < perLane; c++) {
                    int offset = WG_LBO * c;
                    String xh = bin("mul.f32", bin("sub.f32", v[c], mean), rstd);
                    lets(norm.epilogue(), new Ctx(norm.domain(), at, col[c], xh, new HashMap<>()), first.normalized().array(),
                            y -> {
                                String word = roundTf32(y), kept = r();
                                op("selp.b32 " + kept + ", " + word + ", 0, " + valid + ";");
                                op("st.shared.b32 [" + slot + "+" + offset + "], " + kept + ";");
                            });
                }
            });
            generalWritesDone();
        }

        // Warpgroup w's rows of A (the normalised rows), as a descriptor; this thread's accumulator rows (g, g+8 of its warp's 16).
        String lnDesc = descriptor(bin("add.s64", ln, wideBytes(bin("mul.lo.s32", group, Integer.toString(8 * lnSbo)))), lnSbo);
        String accRow = bin("add.s32", bin("add.s32", row0, bin("shl.b32", warp, "4")), grp);
        String[] upAcc = new String[MLP_CHUNK / 2], outAcc = new String[h / 2];
        // (after the stem, where there is one: zeros held through it would only crowd its registers)
        if (stem == null) for (int q = 0; q < upAcc.length; q++) upAcc[q] = constF(0);
        for (int q = 0; q < outAcc.length; q++) outAcc[q] = constF(0);
        String[][] words = new String[MLP_CHUNK / 8][];

        String readOff = r(), writeOff = r();
        op("mov.u32 " + readOff + ", 0;");
        op("mov.u32 " + writeOff + ", " + ahead * stageBytes + ";");
        if (stem != null) {
            comment("the stem, " + stem.name() + ", into the accumulators: its A the rows of " + stem.a().array() + " in shared memory");
            int sbo = dIn / 4 * WG_LBO;
            loop(bin("shl.b32", warp, "3"), Integer.toString(MLP_ROWS), 64, local -> {
                String row = bin("add.s32", bin("add.s32", row0, local), grp), at = bin("min.s32", row, lastRow), valid = pred("lt.s32", row, rows);
                String slot = bin("add.s64", ln, wideBytes(mad(bin("shr.u32", local, "3"), Integer.toString(sbo), bin("shl.b32", lane, "2"))));
                for (int c = 0; c < dIn / 4; c++) {
                    String col = c == 0 ? tig : bin("add.s32", tig, Integer.toString(4 * c)), kept = r();
                    String word = roundTf32(loadGlobal(stem.a().array(), mad(at, Integer.toString(dIn), col)));
                    op("selp.b32 " + kept + ", " + word + ", 0, " + valid + ";");
                    op("st.shared.b32 [" + slot + "+" + WG_LBO * c + "], " + kept + ";");
                }
            });
            generalWritesDone();
            comment("the accumulators start at the stem's epilogue without its product (bias, sigma embedding: MlpFusion.chain takes only such a sum)");
            String[] at = {bin("min.s32", accRow, lastRow), bin("min.s32", bin("add.s32", accRow, "8"), lastRow)};
            kept(stem, stem.output().array(), outAcc, at, tig, true);
            String stemDesc = descriptor(bin("add.s64", ln, wideBytes(bin("mul.lo.s32", group, Integer.toString(8 * sbo)))), sbo);
            projection("stem", h, outAcc, false, stemDesc, stemK, stemSlices, issueFirst, stages, readOff, writeOff);
            comment("both warpgroups' stem products done before the LayerNorm overwrites the stem's A");
            op("bar.sync 0;");
            comment("the stem's output in the accumulators, where block 0 adds to it");
            heldToShared(first, outAcc, h, ln, lnSbo, warp, grp, tig, accRow, at, rows);
            for (int q = 0; q < upAcc.length; q++) upAcc[q] = constF(0);
        }
        for (int b = 0; b < blocks.size(); b++) {
            Kernel.Mlp m = blocks.get(b);
            if (b > 0) {
                comment("block " + b + " of the chain");
                op("mov.u32 " + chunk + ", 0;");
            }
            String[] rowAt = null;   // this chunk's accumulator rows and first hidden column, for its epilogue
            String colBase = null;
            String top = newLabel("chunk"), done = newLabel("chunk_end");
            label(top);
            op(".pragma \"nounroll\";");
            op("@" + pred("ge.s32", chunk, Integer.toString(chunks)) + " bra " + done + ";");
            for (int i = 0; i < steps; i++) {
                int s = i + ahead;
                boolean isUp = i < upSlices;
                comment("slice " + i + " of " + steps + " (" + (isUp ? "up, K rows " + upK * i : "down, K rows " + downK * (i - upSlices))
                        + " of the chunk); slice " + s % steps + (s < steps ? "" : " of chunk +" + s / steps) + " on its way into the stage multiplied two slices ago");
                if (bulk) {
                    comment("both warpgroups are done with the stage multiplied two slices ago: the leader refills it");
                } else {
                    op("cp.async.wait_group " + (ahead - 1) + ";");
                    comment("the slice was written through the generic proxy; wgmma reads it through the async proxy");
                    op("fence.proxy.async.shared::cta;");
                }
                op("bar.sync 0;");
                String valid = s < steps ? null : pred("lt.s32", bin("add.s32", chunk, Integer.toString(s / steps)), Integer.toString(chunks));
                issue.accept(new Slice(b, s % steps, s / steps, valid, bin("add.s64", stages, wideBytes(writeOff))));
                if (bulk) awaitFill(readOff);
                String bDesc = descriptor(bin("add.s64", stages, wideBytes(readOff)), (isUp ? upK : downK) / 4 * WG_LBO);
                nextStage(readOff, writeOff);
                if (isUp) {
                    op("wgmma.fence.sync.aligned;");
                    for (int ks = 0; ks < upK / 8; ks++) {
                        int k0 = upK * i + 8 * ks;
                        wgmma(MLP_CHUNK, upAcc, advanced(lnDesc, k0 / 4 * WG_LBO), advanced(bDesc, 2 * WG_LBO * ks), k0 > 0);
                    }
                } else {
                    if (i == upSlices) {
                        comment("the up chunk complete (its last slice multiplied while this slice's copies were issued): the down slices"
                                + " take it through its epilogue a slice's K steps at a time");
                        op("wgmma.wait_group.sync.aligned 0;");
                        colBase = bin("add.s32", bin("shl.b32", chunk, log2(MLP_CHUNK)), tig);
                        rowAt = new String[]{bin("min.s32", accRow, lastRow), bin("min.s32", bin("add.s32", accRow, "8"), lastRow)};
                    }
                    comment("this slice's K steps of the up chunk through its epilogue, while the slice before is multiplied");
                    int firstStep = (i - upSlices) * downK / 8;
                    for (int ks = 0; ks < downK / 8; ks++) words[firstStep + ks] = hiddenWords(m, upAcc, firstStep + ks, rowAt, colBase);
                    op("wgmma.fence.sync.aligned;");
                    for (int ks = 0; ks < downK / 8; ks++) wgmma(h, outAcc, words[firstStep + ks], advanced(bDesc, 2 * WG_LBO * ks));
                }
                op("wgmma.commit_group.sync.aligned;");
                comment("the slice before is multiplied: after the next barrier its stage is free");
                op("wgmma.wait_group.sync.aligned 1;");
            }
            op("add.s32 " + chunk + ", " + chunk + ", 1;");
            op("bra " + top + ";");
            label(done);
            op("wgmma.wait_group.sync.aligned 0;");
            // A later block's accumulators started at its residual, the block before's output (or the stem's): its epilogue adds none.
            if (b > 0) held.put(blocks.get(b - 1).output().array(), imm(0));
            if (b == 0 && stem != null) held.put(stem.output().array(), imm(0));
            if (b + 1 == blocks.size() && head == null) {
                if (!bulk) op("cp.async.wait_group 0;");
                comment("the block's output: the down-projection's epilogue (bias, residual) on the accumulators");
                stored(m.down(), outAcc, accRow, tig, rows);
            } else {
                comment("block " + b + "'s output, its down-projection's epilogue, kept in the accumulators, where "
                        + (b + 1 < blocks.size() ? "the next block adds to it" : "the head reads it"));
                String[] at = {bin("min.s32", accRow, lastRow), bin("min.s32", bin("add.s32", accRow, "8"), lastRow)};
                kept(m.down(), m.output().array(), outAcc, at, tig, false);
                heldToShared(b + 1 < blocks.size() ? blocks.get(b + 1) : null, outAcc, h, ln, lnSbo, warp, grp, tig, accRow, at, rows);
            }
            held.clear();
        }
        if (head == null) return;

        comment("the head, " + head.name() + ": its A the rows in shared memory, its first slices on their way since the last chunk");
        String[] headAcc = java.util.Arrays.copyOf(outAcc, d / 2);
        projection("head", d, headAcc, true, lnDesc, headK, headSlices, (q, stageBase) -> {
            if (q < headSlices && bulk) leaderOnly(() -> bulkCopy("", stageBase, headBase + "+" + (long) 4 * WG_MLP_SLICE * q));
            if (q < headSlices && !bulk) weightCopies(headT, headK, h, q, "", stageBase, warp, grp, tig);
            if (!bulk) op("cp.async.commit_group;");
        }, stages, readOff, writeOff);
        if (!bulk) op("cp.async.wait_group 0;");
        comment("the output: the head's epilogue on its accumulators");
        stored(head, headAcc, accRow, tig, rows);
    }

    /**
     * The kernel's output: a GEMM's epilogue on m64nN accumulators, stored. Accumulator q is row accRow (+8 for
     * q%4 ≥ 2), column 8·(q/4) + 2t + q%2; rows past the end store nothing.
     */
    private void stored(Kernel.Gemm g, String[] acc, String accRow, String tig, String rows) {
        String outCol = bin("shl.b32", tig, "1");
        var outs = new java.util.ArrayList<Out>();
        for (int q = 0; q < acc.length; q++) {
            String row = q % 4 < 2 ? accRow : bin("add.s32", accRow, "8");
            outs.add(new Out(row, bin("add.s32", outCol, Integer.toString(8 * (q / 4) + q % 2)), acc[q]));
        }
        emitAll(g, rows, Integer.toString(g.domain().cols()), outs);
    }

    /**
     * A stem's or head's product: n columns into acc (from zero, or onto what they hold), A the rows in shared
     * memory (aDesc), the weight's `slices` slices `depth` of K deep streaming through the stages, the first
     * {@code WG_MLP_STAGES - 2} already on their way; issue puts slice q into a stage and commits its group (an empty
     * one past the last). Returns once every product is done.
     */
    private void projection(String what, int n, String[] acc, boolean fromZero, String aDesc, int depth, int slices,
                            java.util.function.BiConsumer<Integer, String> issue, String stages, String readOff, String writeOff) {
        int ahead = WG_MLP_STAGES - 2;
        for (int i = 0; i < slices; i++) {
            comment(what + " slice " + i + " of " + slices);
            if (!bulk) {
                op("cp.async.wait_group " + (ahead - 1) + ";");
                op("fence.proxy.async.shared::cta;");
            }
            op("bar.sync 0;");
            issue.accept(i + ahead, bin("add.s64", stages, wideBytes(writeOff)));
            if (bulk) awaitFill(readOff);
            String bDesc = descriptor(bin("add.s64", stages, wideBytes(readOff)), depth / 4 * WG_LBO);
            nextStage(readOff, writeOff);
            op("wgmma.fence.sync.aligned;");
            for (int ks = 0; ks < depth / 8; ks++) {
                int k0 = depth * i + 8 * ks;
                wgmma(n, acc, advanced(aDesc, k0 / 4 * WG_LBO), advanced(bDesc, 2 * WG_LBO * ks), !fromZero || k0 > 0);
            }
            op("wgmma.commit_group.sync.aligned;");
            op("wgmma.wait_group.sync.aligned 1;");
        }
        op("wgmma.wait_group.sync.aligned 0;");
    }

    /**
     * A GEMM's epilogue (a block's down-projection's) on the accumulators where they lie, its result kept there
     * instead of stored to `output`; or, `initial`, its value for a product of zero, where a stem's accumulators
     * start (its epilogue a sum with the product one term). Accumulator 4j + 2·half + s is column 8j + 2t + s of
     * row at[half] (clamped to the last row: rows past the end compute, harmlessly, the last one's values). Both
     * rows of a column share its loads of row vectors (bias, a σ embedding): half the loads.
     */
    private void kept(Kernel.Gemm g, String output, String[] acc, String[] at, String tig, boolean initial) {
        String outCol = bin("shl.b32", tig, "1");
        rowVectors = new HashMap<>();
        for (int j = 0; j < acc.length / 4; j++) {
            for (int s = 0; s < 2; s++) {
                String col = bin("add.s32", outCol, Integer.toString(8 * j + s));
                for (int half = 0; half < 2; half++) {
                    String a = acc[4 * j + 2 * half + s];
                    lets(g.epilogue(), new Ctx(g.domain(), at[half], col, initial ? imm(0) : a, new HashMap<>()), output, y -> op("mov.f32 " + a + ", " + y + ";"));
                }
            }
        }
        rowVectors = null;
    }

    /**
     * Slice j of a stem's or head's transposed weight (rowLen floats of K a row, `depth` of them a slice) into a
     * stage, each copy under the predicate given (or none).
     */
    private void weightCopies(Buf wT, int depth, int rowLen, int j, String predicate, String stageBase, String warp, String grp, String tig) {
        Copies c = copies(wT, depth, false, rowLen, 0, warp, grp, tig);
        String dst = bin("add.s64", stageBase, c.to());
        for (int l = 0; l < COPIES; l++) {
            long src = c.fromBytes(l) + 4L * j * depth;
            op(predicate + "cp.async.cg.shared.global [" + dst + "+" + c.toBytes(l) + "], [" + c.from() + "+" + src + "], 16;");
        }
    }

    /**
     * Bytes from the first block's transposed weight (up's, or down's) to block b's, in the same array: a chain's
     * blocks read one array of transposed weights (see {@link dev.cmc.fusion.MlpFusion#chain}).
     */
    private static long shift(List<Kernel.Mlp> blocks, int b, boolean up) {
        Buf first = up ? blocks.getFirst().upT() : blocks.getFirst().downT(), mine = up ? blocks.get(b).upT() : blocks.get(b).downT();
        if (!mine.array().equals(first.array())) throw new IllegalArgumentException(blocks.get(b).name() + ": a chain's weights lie in one array");
        return 4L * (mine.offset() - first.offset());
    }

    /**
     * The next block's LayerNorm of the rows held in the accumulators, into shared memory as the first block's
     * was (with {@code next} null, the rows as they are, a head's A). This thread holds columns 8j + 2t and
     * 8j + 2t + 1 of rows g and g + 8 of its warp's 16 (accumulator 4j + 2·half + s): a row's h values lie in
     * the quad's 4 lanes, and each pair of columns is 8 contiguous bytes of one core-matrix row (core matrix
     * 2j + t/2, bytes 8·(t%2) on), stored at once. Rows past the end are zero.
     */
    private void heldToShared(Kernel.Mlp next, String[] acc, int h, String ln, int lnSbo, String warp, String grp, String tig, String accRow,
                              String[] at, String rows) {
        comment(next == null ? "the rows the accumulators hold into shared memory as core matrices, the head's A"
                : "the next block's LayerNorm of the rows the accumulators hold, into shared memory as core matrices");
        String within = mad(bin("shr.u32", tig, "1"), Integer.toString(WG_LBO), mad(grp, "16", bin("shl.b32", bin("and.b32", tig, "1"), "3")));
        for (int half = 0; half < 2; half++) {
            String row = half == 0 ? accRow : bin("add.s32", accRow, "8"), valid = pred("lt.s32", row, rows);
            String slot = bin("add.s64", ln, wideBytes(mad(bin("add.s32", bin("shl.b32", warp, "1"), Integer.toString(half)), Integer.toString(lnSbo), within)));
            String[] v = new String[h / 4];
            for (int j = 0; j < h / 8; j++) for (int s = 0; s < 2; s++) v[2 * j + s] = acc[4 * j + 2 * half + s];
            String[] moments = null;
            if (next != null) {
                String sum = accumulator();
                for (String x : v) addInto(sum, x);
                moments = rowMoments(sum, v, 4, h);
            }
            for (int j = 0; j < h / 8; j++) {
                String[] kept = new String[2];
                for (int s = 0; s < 2; s++) {
                    int word = s;
                    java.util.function.Consumer<String> keep = y -> {
                        kept[word] = r();
                        op("selp.b32 " + kept[word] + ", " + roundTf32(y) + ", 0, " + valid + ";");
                    };
                    if (next == null) {
                        keep.accept(v[2 * j + s]);
                        continue;
                    }
                    String xh = bin("mul.f32", bin("sub.f32", v[2 * j + s], moments[0]), moments[1]), col = bin("add.s32", bin("shl.b32", tig, "1"), Integer.toString(8 * j + s));
                    lets(next.norm().epilogue(), new Ctx(next.norm().domain(), at[half], col, xh, new HashMap<>()), next.normalized().array(), keep);
                }
                op("st.shared.v2.b32 [" + slot + "+" + 2 * WG_LBO * j + "], {" + kept[0] + ", " + kept[1] + "};");
            }
        }
        generalWritesDone();
    }

    /**
     * After the rows' stores into shared memory (generic proxy), which wgmma reads through the async proxy: under
     * bulk copies, each thread's fence before the barrier that orders them; with cp.async, the fence each slice
     * makes for its copies serves these too.
     */
    private void generalWritesDone() {
        if (!bulk) return;
        comment("the rows were written through the generic proxy; wgmma reads them through the async proxy");
        op("fence.proxy.async.shared::cta;");
    }

    /**
     * K step j of the down-projection's A: this thread's accumulators 4j..4j+3 of the up chunk through the
     * up-projection's epilogue, rounded to TF32. Accumulator 4j + e holds N position 8j + 2t + e%2 of row
     * g + 8·(e/2) (rowAt), which is hidden column 8j + t + 4·(e%2) (from colBase = the chunk's first + t), K
     * position t + 4·(e%2) of K step j: A word e/2 + 2·(e%2).
     */
    private String[] hiddenWords(Kernel.Mlp m, String[] upAcc, int j, String[] rowAt, String colBase) {
        String[] words = new String[4];
        for (int e = 0; e < 4; e++) {
            int word = e / 2 + 2 * (e % 2);
            String col = bin("add.s32", colBase, Integer.toString(8 * j + 4 * (e % 2)));
            lets(m.up().epilogue(), new Ctx(m.up().domain(), rowAt[e / 2], col, upAcc[4 * j + e], new HashMap<>()), m.hidden().array(),
                    y -> words[word] = roundTf32(y));
        }
        return words;
    }

    /**
     * The program with each wgmma block's transposed weights packed slice by slice, in the order and layout its
     * bulk copies move them ({@link Kernel.Transpose.Packing}): up-projections in slices of the 64 hidden columns
     * of a chunk by 64 of K, rows permuted as the accumulators hold hidden columns; down-projections, stems and
     * heads in slices of all their rows by 4096/rows of K. The Transposes into such a weight write the array's
     * "_packed" copy instead, at the same offset, and the block reads that; a Transpose whose plain copy
     * something else also reads stays, with the packed one after it, and a plain copy nothing uses any more goes.
     */
    static Program packWeights(Program p) {
        var packings = new java.util.LinkedHashMap<Buf, Kernel.Transpose.Packing>();
        for (Kernel k : p.kernels()) {
            List<Kernel.Mlp> blocks = switch (k) {
                case Kernel.Mlp m when m.transposedWeights() -> List.of(m);
                case Kernel.MlpChain c -> c.blocks();
                default -> List.of();
            };
            for (Kernel.Mlp m : blocks) {
                int h = m.domain().cols();
                packings.put(m.upT(), new Kernel.Transpose.Packing(MLP_CHUNK, WG_MLP_SLICE / MLP_CHUNK, true));
                packings.put(m.downT(), new Kernel.Transpose.Packing(h, WG_MLP_SLICE / h, false));
            }
            if (k instanceof Kernel.MlpChain c && c.stem() != null) packings.put(c.stemT(), new Kernel.Transpose.Packing(c.width(), WG_MLP_SLICE / c.width(), false));
            if (k instanceof Kernel.MlpChain c && c.head() != null) {
                int d = c.head().domain().cols();
                packings.put(c.headT(), new Kernel.Transpose.Packing(d, WG_MLP_SLICE / d, false));
            }
        }
        if (packings.isEmpty()) return p;
        var arrays = new java.util.ArrayList<>(p.arrays());
        for (Buf b : packings.keySet()) {
            if (arrays.stream().noneMatch(a -> a.name().equals(packed(b).array()))) {
                Program.Array plain = p.array(b.array());
                arrays.add(new Program.Array(packed(b).array(), plain.role(), plain.shape(), null));
            }
        }
        // The arrays that kernels other than the blocks read: a plain copy among them keeps its Transpose.
        var readElsewhere = new java.util.HashSet<String>();
        for (Kernel k : p.kernels()) if (!(k instanceof Kernel.Mlp || k instanceof Kernel.MlpChain)) readElsewhere.addAll(dev.cmc.kernel.Kernels.reads(k));
        var kernels = new java.util.ArrayList<Kernel>();
        for (Kernel k : p.kernels()) {
            switch (k) {
                case Kernel.Transpose t when packings.containsKey(t.dst()) -> {
                    boolean plainRead = readElsewhere.contains(t.dst().array());
                    if (plainRead) kernels.add(t);
                    kernels.add(new Kernel.Transpose(t.name() + (plainRead ? "_packed" : ""), t.src(), packed(t.dst()), packings.get(t.dst())));
                }
                case Kernel.Mlp m when m.transposedWeights() -> kernels.add(m.withTransposedWeights(packed(m.upT()), packed(m.downT())));
                case Kernel.MlpChain c -> kernels.add(new Kernel.MlpChain(c.name(), c.stem(), c.stem() == null ? null : packed(c.stemT()),
                        c.blocks().stream().map(m -> m.withTransposedWeights(packed(m.upT()), packed(m.downT()))).toList(),
                        c.head(), c.head() == null ? null : packed(c.headT())));
                default -> kernels.add(k);
            }
        }
        // A plain copy that nothing reads or writes any more is not allocated.
        var used = new java.util.HashSet<String>();
        for (Kernel k : kernels) {
            used.addAll(dev.cmc.kernel.Kernels.reads(k));
            used.addAll(dev.cmc.kernel.Kernels.writes(k));
        }
        for (Buf b : packings.keySet()) if (!used.contains(b.array())) arrays.removeIf(a -> a.name().equals(b.array()));
        return new Program(p.name(), List.copyOf(arrays), List.copyOf(kernels));
    }

    /** A transposed weight's packed copy: the same offset and shape in the array's "_packed" copy. */
    private static Buf packed(Buf transposed) {
        return new Buf(transposed.array() + "_packed", transposed.offset(), transposed.shape());
    }

    /**
     * One bulk copy of a 16 KB slice from global address src into a stage, completing on the stage's mbarrier,
     * which expects its bytes: by the leader alone, under the guard given ("" or "@p ", "@!p ").
     */
    private void bulkCopy(String guard, String stageBase, String src) {
        String bar = barOf(stageBase), state = rd();
        op(guard + "mbarrier.arrive.expect_tx.shared::cta.b64 " + state + ", [" + bar + "], " + 4 * WG_MLP_SLICE + ";");
        op(guard + "cp.async.bulk.shared::cluster.global.mbarrier::complete_tx::bytes [" + stageBase + "], [" + src + "], "
                + 4 * WG_MLP_SLICE + ", [" + bar + "];");
    }

    /** The mbarrier of the stage at this shared address: 8 bytes a stage, after the stages. */
    private String barOf(String stageBase) {
        String stage = bin("shr.u64", bin("sub.s64", stageBase, stageArea), log2(4 * WG_MLP_SLICE / 8));
        return bin("add.s64", bars, stage);
    }

    /** Code that the leader alone runs (it issues every bulk copy): the others branch past it. */
    private void leaderOnly(Runnable code) {
        String skip = newLabel("issued");
        op("@!" + leader + " bra " + skip + ";");
        code.run();
        label(skip);
    }

    /**
     * Waits until the stage at readOff holds its next fill: its mbarrier's phase of the awaited parity complete
     * (the copy's bytes landed). After the stages go round, the parity flips (see {@link #nextStage}).
     */
    private void awaitFill(String readOff) {
        String bar = bin("add.s64", bars, wideBytes(bin("shr.u32", readOff, log2(4 * WG_MLP_SLICE / 8)))), filled = p(), wait = newLabel("filled");
        label(wait);
        op("mbarrier.try_wait.parity.shared::cta.b64 " + filled + ", [" + bar + "], " + phase + ";");
        op("@!" + filled + " bra " + wait + ";");
    }

    /** The read and write stages go round; under bulk copies the awaited parity flips each time the read stage wraps to the first. */
    private void nextStage(String readOff, String writeOff) {
        int stageBytes = 4 * WG_MLP_SLICE;
        goRound(readOff, stageBytes, WG_MLP_STAGES * stageBytes);
        goRound(writeOff, stageBytes, WG_MLP_STAGES * stageBytes);
        if (bulk) op("@" + pred("eq.s32", readOff, "0") + " xor.b32 " + phase + ", " + phase + ", 1;");
    }

    /** 16-byte copies a thread makes of a slice: 4096 floats over 256 threads. */
    private static final int COPIES = WG_MLP_SLICE / 4 / WG_MLP_THREADS;

    /**
     * One thread's 16-byte copies of a transposed weight's slices into core matrices (8 rows × 4 of K, 128 bytes,
     * q of them along K a row group, the group's 8 rows after one another 16 bytes apart). Slice pair 8l + warp
     * (copy l of the warp) is row group n8 and 4 consecutive core matrices along K, kq = 4·block..; lane (r, t)
     * copies row r of core matrix kq + t: a warp's 32 copies are 64 contiguous bytes of 8 rows of the weight
     * (whole sectors), and land as 512 contiguous bytes. {@code from}/{@code to} are this thread's global and
     * shared addresses of copy 0 of the first chunk's slice 0 (to: from the stage's base); copy l's are fromBytes(l)
     * and toBytes(l) on; chunkFloats are those between two chunks' slices.
     */
    private record Copies(String from, String to, int q, int rowLen, int chunkFloats) {
        private int blocks() { return q / 4; }

        long fromBytes(int l) { return 4L * 8 * (8L * l / blocks()) * rowLen; }

        int toBytes(int l) { return 8 * l / blocks() * q * WG_LBO; }
    }

    /**
     * The copies of weight wT ([N, K], rowLen floats a row) in slices `depth` deep. With permuted rows, core-matrix
     * row r of a row group holds weight row (r/2) + 4·(r%2) of the group's 8: the order the up-projection's
     * accumulators hold hidden columns in, 2t and 2t+1 being columns t and t+4, which an A fragment wants.
     */
    private Copies copies(Buf wT, int depth, boolean permuted, int rowLen, int chunkFloats, String warp, String r, String t) {
        int q = depth / 4, blocks = q / 4;
        String n8 = bin("shr.u32", warp, log2(blocks)), kq = bin("add.s32", bin("shl.b32", bin("and.b32", warp, Integer.toString(blocks - 1)), "2"), t);
        String row = permuted ? bin("add.s32", bin("shr.u32", r, "1"), bin("shl.b32", bin("and.b32", r, "1"), "2")) : r;
        String idx = mad(mad(n8, "8", row), Integer.toString(rowLen), mad(kq, "4", Integer.toString(wT.offset())));
        String to = mad(mad(n8, Integer.toString(q), kq), Integer.toString(WG_LBO), bin("shl.b32", r, "4"));
        return new Copies(address(wT.array(), idx), wideBytes(to), q, rowLen, chunkFloats);
    }
}
