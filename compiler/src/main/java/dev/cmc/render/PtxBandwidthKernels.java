package dev.cmc.render;

import dev.cmc.ir.Shape;
import dev.cmc.kernel.*;

import java.util.HashMap;

import static dev.cmc.render.PtxRenderer.*;

/**
 * The kernels bound by memory bandwidth, each shaped so that its loads are coalesced:
 * <ul>
 *   <li>Elementwise kernels: one thread per element; the Adam + EMA pass, four a thread.</li>
 *   <li>Transposes: a 32 × 32 tile a block, through shared memory (packed ones for wgmma MLP blocks: one thread an element).</li>
 *   <li>Row normalisations and row sums: one warp per row, lanes striding the columns, sums by butterfly
 *       shuffles; the epilogue (LayerNorm's affine, a residual, a loss term) runs in the same pass.</li>
 *   <li>Batch reductions: 8 columns (a sector of a row) × 128 row slices per block (1,024 threads), summed
 *       in a fixed order by shuffles and through shared memory.</li>
 *   <li>A segment sum (the σ embedding's gradient, group by group): one thread per output element, its
 *       group's rows in order.</li>
 * </ul>
 */
final class PtxBandwidthKernels extends PtxFunction {
    /** The side of a transpose's tile: a warp's 32 lanes along a row as they read, along a column as they write. */
    static final int TRANSPOSE_TILE = 32;
    /** Rows per trip of a batch reduction's loop. */
    private static final int UNROLL = 8;
    /** Rows of a segment (one σ's rows) a segment sum loads at once: two dependent loads a row, 4 rows' worth in flight. */
    private static final int SEGMENT_ROWS = 4;

    PtxBandwidthKernels(Program program, int index) {
        super(program, index);
    }

    /** A batch reduction's block is {@link PtxRenderer#REDUCE_SLICES} warps; every other kernel's 256 threads. */
    @Override
    int threads() { return kernel instanceof Kernel.ReduceBatch ? PtxRenderer.REDUCE_THREADS : BLOCK; }

    @Override
    void body() {
        switch (kernel) {
            case Kernel.Elementwise e -> elementwise(e);
            case Kernel.Normalize n -> normalize(n);
            case Kernel.ReduceCols rc -> reduceCols(rc);
            case Kernel.ReduceBatch rb -> reduceBatch(rb);
            case Kernel.SegmentSum ss -> segmentSum(ss);
            case Kernel.Transpose t -> transpose(t);
            case Kernel.SumSquares s -> sumSquares(s);
            case Kernel.AdamEma a -> adamEma(a);
            case Kernel.Gemm g -> throw new IllegalArgumentException(g.name() + " is a GEMM: PtxGemm writes it");
            case Kernel.Mlp _, Kernel.MlpChain _ -> throw new IllegalArgumentException(kernel.name() + " is fused MLP blocks: PtxMlp or PtxWgmmaMlp writes it");
        }
    }

    private void elementwise(Kernel.Elementwise e) {
        Shape d = e.domain();
        String idx = mad(special("%ctaid.x"), Integer.toString(BLOCK), special("%tid.x"));
        String total = bin("mul.lo.s32", domainRows(d), Integer.toString(d.cols()));
        exitIf(pred("ge.s32", idx, total));
        String row = bin("div.s32", idx, Integer.toString(d.cols())), col = bin("rem.s32", idx, Integer.toString(d.cols()));
        var ctx = new Ctx(d, row, col, null, new HashMap<>());
        if (java.util.Collections.disjoint(Kernels.reads(e), Kernels.writes(e))) {
            comment("every value first, then the stores: a load written after a store waits for it (they might alias, as far as ptxas knows)");
            storeAll(valuesOf(e.epilogue(), ctx), ctx);
        } else {
            lets(e.epilogue(), ctx);
        }
    }

    /** Warp w of the block owns row ctaid·8 + w; returns {row, lane}, having sent rows past the end away. */
    private String[] warpRow(Shape d) {
        String tid = special("%tid.x");
        String lane = bin("and.b32", tid, "31"), warp = bin("shr.u32", tid, "5");
        String row = mad(special("%ctaid.x"), Integer.toString(WARPS), warp);
        exitIf(pred("ge.s32", row, domainRows(d)));
        return new String[]{row, lane};
    }

    /**
     * A LayerNorm (or its gradient) of each row, a warp a row. Each pass takes a lane's columns a chunk at a time
     * ({@link #rowChunks}), the chunk's loads issued together before any use: a column at a time, each load waited
     * for the last one's sum, eight memory latencies in a row a pass at h = 256. Sums go column by column as before.
     */
    private void normalize(Kernel.Normalize nk) {
        Shape d = nk.domain();
        int n = d.cols();
        String[] rl = warpRow(d);
        String row = rl[0], lane = rl[1];
        comment("mean and variance of the row, lanes striding its columns");
        String sum = accumulator();
        rowChunks(lane, n, (cols, inside) -> {
            String[] x = values(nk.x(), d, row, cols);
            for (int j = 0; j < cols.length; j++) op(guard(inside[j]) + "add.f32 " + sum + ", " + sum + ", " + x[j] + ";");
        });
        String mean = warpMean(sum, n);
        String sq = accumulator();
        rowChunks(lane, n, (cols, inside) -> {
            String[] x = values(nk.x(), d, row, cols);
            for (int j = 0; j < cols.length; j++) {
                String t = bin("sub.f32", x[j], mean);
                op(guard(inside[j]) + "fma.rn.f32 " + sq + ", " + t + ", " + t + ", " + sq + ";");
            }
        });
        String rstd = rstd(warpMean(sq, n));
        String mg = null, mgx = null;
        if (nk.grad() != null) {
            comment("the gradient's row means: mean(g) and mean(g * xhat)");
            String sg = accumulator(), sgx = accumulator();
            rowChunks(lane, n, (cols, inside) -> {
                String[] x = values(nk.x(), d, row, cols), g = values(nk.grad(), d, row, cols);
                for (int j = 0; j < cols.length; j++) {
                    String xh = bin("mul.f32", bin("sub.f32", x[j], mean), rstd);
                    op(guard(inside[j]) + "add.f32 " + sg + ", " + sg + ", " + g[j] + ";");
                    op(guard(inside[j]) + "fma.rn.f32 " + sgx + ", " + g[j] + ", " + xh + ", " + sgx + ";");
                }
            });
            mg = warpMean(sg, n);
            mgx = warpMean(sgx, n);
        }
        final String mgF = mg, mgxF = mgx;
        comment("normalised values through the epilogue: a chunk's values, then its stores");
        rowChunks(lane, n, (cols, inside) -> {
            String[] x = values(nk.x(), d, row, cols), g = nk.grad() == null ? null : values(nk.grad(), d, row, cols);
            var ctxs = new java.util.ArrayList<Ctx>();
            var stored = new java.util.ArrayList<java.util.Map<Expr.Let, String>>();
            for (int j = 0; j < cols.length; j++) {
                String xh = bin("mul.f32", bin("sub.f32", x[j], mean), rstd);
                String acc = g == null ? xh : bin("mul.f32", bin("sub.f32", bin("sub.f32", g[j], mgF), bin("mul.f32", xh, mgxF)), rstd);
                Ctx c = new Ctx(d, row, cols[j], acc, new HashMap<>());
                ctxs.add(c);
                stored.add(valuesOf(nk.epilogue(), c));
            }
            storeEach(stored, ctxs, "col", j -> inside[j] == null ? null : "!" + inside[j]);
        });
    }

    /** Columns of a row a lane takes at once in a LayerNorm's pass: lane, lane + 32, ... (8 registers a value). */
    private static final int ROW_CHUNK = 8;

    /**
     * This lane's columns of an n-wide row, lane + 32j, in chunks of up to {@link #ROW_CHUNK}: body gets a chunk's
     * columns, clamped into the row so that loads stay in bounds, and whether each lies inside it (null where every
     * chunk's does). One trip of a runtime loop a chunk, the chunk unrolled.
     */
    private void rowChunks(String lane, int n, java.util.function.BiConsumer<String[], String[]> body) {
        int per = Math.min(ROW_CHUNK, (n + 31) / 32), span = 32 * per;
        boolean ragged = n % span != 0;
        loop(lane, Integer.toString(n), span, first -> {
            String[][] run = clampedRun(first, 32, per, ragged ? Integer.toString(n) : null, Integer.toString(n - 1));
            body.accept(run[0], run[1]);
        });
    }

    /**
     * {first, first + step, ...}, count of them, and whether each lies below end: a run of positions whose loads
     * are issued together. The first is the loop's own and inside; each after it is clamped to last, so that its
     * loads stay in bounds, with a predicate for the work it may do (null where end is null: all inside).
     */
    private String[][] clampedRun(String first, int step, int count, String end, String last) {
        String[] at = new String[count], inside = new String[count];
        for (int u = 0; u < count; u++) {
            at[u] = u == 0 ? first : bin("add.s32", first, Integer.toString(u * step));
            if (u > 0 && end != null) {
                inside[u] = pred("lt.s32", at[u], end);
                at[u] = bin("min.s32", at[u], last);
            }
        }
        return new String[][]{at, inside};
    }

    /** An expression at each of a row's columns, every one evaluated (its loads issued) before any is used. */
    private String[] values(Expr e, Shape d, String row, String[] cols) {
        String[] v = new String[cols.length];
        for (int j = 0; j < cols.length; j++) v[j] = expr(e, new Ctx(d, row, cols[j], null, new HashMap<>()));
        return v;
    }

    /** A predicate guard for an instruction: none where the predicate is null. */
    private static String guard(String p) { return p == null ? "" : "@" + p + " "; }

    private void reduceCols(Kernel.ReduceCols rc) {
        Shape d = rc.domain(), src = Shape.batch(rc.cols());
        String[] rl = warpRow(d);
        String row = rl[0], lane = rl[1];
        String sum = accumulator();
        loop(lane, Integer.toString(rc.cols()), 32, c -> addInto(sum, expr(rc.x(), new Ctx(src, row, c, null, new HashMap<>()))));
        String total = warpSum(sum);
        exitIf(pred("ne.s32", lane, "0"));
        lets(rc.epilogue(), new Ctx(d, row, constI(0), total, new HashMap<>()));
    }

    /**
     * A batch reduction: a block takes {@link #reduceColumns} columns, each warp's lanes that many columns of
     * 32/cpb rows at a time (a row's columns are whole 32-byte sectors), so that the block's 1,024 threads are
     * as many row slices as there are lanes on a column: 128 at 8 columns, 1,024 for a single one. Slice s sums
     * rows s, s + slices, ...; {@link #UNROLL} rows a trip, each into its own sum, the last trip's rows clamped
     * and their adds guarded, so that every trip is one memory latency. Then a fixed order: the slices of each
     * warp by butterfly shuffles, the warps' sums through shared memory, the same way again in warp 0. A
     * block of 32 columns by 32 slices had each slice 128 rows deep at 4,096 rows: 16 latencies in a row.
     */
    private void reduceBatch(Kernel.ReduceBatch rb) {
        int n = rb.domain().cols(), cpb = reduceColumns(n), rowLanes = 32 / cpb, slices = REDUCE_SLICES * rowLanes;
        Shape src = Shape.batch(n);
        String tid = special("%tid.x");
        String lane = bin("and.b32", tid, "31"), warp = bin("shr.u32", tid, "5");
        String c = bin("and.b32", lane, Integer.toString(cpb - 1)), q = bin("shr.u32", lane, log2(cpb));
        String col = mad(special("%ctaid.x"), Integer.toString(cpb), c);
        String slice = mad(warp, Integer.toString(rowLanes), q);
        String inRange = pred("lt.s32", col, Integer.toString(n));
        String[] sums = new String[UNROLL];
        for (int u = 0; u < UNROLL; u++) sums[u] = accumulator();
        String skip = newLabel("skip");
        op("@!" + inRange + " bra " + skip + ";");
        comment("slice s sums rows s, s+" + slices + ", s+" + 2 * slices + ", ...: " + UNROLL + " rows a trip, each into its own sum, so that "
                + UNROLL + " loads are in flight rather than one; the last trip's rows clamped, their adds guarded");
        String r0 = r(), lastRow = less(rowsReg, 1);
        op("mov.u32 " + r0 + ", " + slice + ";");
        String top = newLabel("rows"), tail = newLabel("rows_tail"), end = newLabel("rows_end");
        label(top);
        op("@" + pred("ge.s32", bin("add.s32", r0, Integer.toString((UNROLL - 1) * slices)), rowsReg) + " bra " + tail + ";");
        String[] values = new String[UNROLL];
        for (int u = 0; u < UNROLL; u++) values[u] = expr(rb.x(), new Ctx(src, bin("add.s32", r0, Integer.toString(u * slices)), col, null, new HashMap<>()));
        for (int u = 0; u < UNROLL; u++) addInto(sums[u], values[u]);
        op("add.s32 " + r0 + ", " + r0 + ", " + UNROLL * slices + ";");
        op("bra " + top + ";");
        label(tail);
        op("@" + pred("ge.s32", r0, rowsReg) + " bra " + end + ";");
        String[][] run = clampedRun(r0, slices, UNROLL, rowsReg, lastRow);
        String[] rows = run[0], inside = run[1];
        for (int u = 0; u < UNROLL; u++) values[u] = expr(rb.x(), new Ctx(src, rows[u], col, null, new HashMap<>()));
        for (int u = 0; u < UNROLL; u++) op(guard(inside[u]) + "add.f32 " + sums[u] + ", " + sums[u] + ", " + values[u] + ";");
        label(end);
        for (int width = UNROLL / 2; width >= 1; width /= 2) {
            for (int u = 0; u < width; u++) addInto(sums[u], sums[u + width]);
        }
        label(skip);
        comment("the warp's slices of each column by butterfly shuffles over the lanes " + cpb + " apart, then the warps' sums through shared memory");
        String warpTotal = strideSum(sums[0], cpb);
        shared.append("    .shared .align 4 .f32 part[").append(REDUCE_SLICES * cpb).append("];\n");
        String part = symbol("part");
        op("@" + pred("lt.u32", lane, Integer.toString(cpb)) + " st.shared.f32 [" + sharedSlot(part, mad(warp, Integer.toString(cpb), c)) + "], " + warpTotal + ";");
        op("bar.sync 0;");
        exitIf(pred("ne.s32", warp, "0"));
        comment("warp 0: lane (q, c) sums warps q, q+" + rowLanes + ", ... of column c in order, then the lanes " + cpb + " apart as before");
        String acc = accumulator();
        for (int i = 0; i < cpb; i++) {
            String w = i == 0 ? q : bin("add.s32", q, Integer.toString(i * rowLanes));
            String v = f();
            op("ld.shared.f32 " + v + ", [" + sharedSlot(part, mad(w, Integer.toString(cpb), c)) + "];");
            addInto(acc, v);
        }
        String total = strideSum(acc, cpb);
        exitIf(pred("ne.s32", q, "0"));
        exitIf(pred("ge.s32", col, Integer.toString(n)));
        if (rb.mean()) {
            String rowsF = f();
            op("cvt.rn.f32.s32 " + rowsF + ", " + rowsReg + ";");
            total = bin("div.rn.f32", total, rowsF);
        }
        lets(rb.epilogue(), new Ctx(rb.domain(), constI(0), col, total, new HashMap<>()));
    }

    /**
     * Columns a batch reduction's block takes: 8 (a 32-byte sector of a row), or the power of two at or above a
     * narrower output's, so that the other lanes of a warp take more rows.
     */
    static int reduceColumns(int n) { return Math.min(8, Integer.highestOneBit(Math.max(1, 2 * n - 1))); }

    /** Sum across the lanes that share this lane's position modulo `from` (a power of two): butterflies from 16 down to `from`. */
    private String strideSum(String v, int from) {
        String s = v;
        for (int offset = 16; offset >= from; offset /= 2) {
            String t = f();
            op("shfl.sync.bfly.b32 " + t + ", " + s + ", " + offset + ", 31, 0xffffffff;");
            s = bin("add.f32", s, t);
        }
        return s;
    }

    /**
     * One thread per element (k, c) of the [K,n] result, consecutive threads on consecutive columns so that
     * each row of x is read coalesced; the group's rows summed in order, as every backend does.
     */
    private void segmentSum(Kernel.SegmentSum ss) {
        Shape d = ss.domain(), src = Shape.batch(d.cols());
        String idx = mad(special("%ctaid.x"), Integer.toString(BLOCK), special("%tid.x"));
        exitIf(pred("ge.s32", idx, Integer.toString(d.rows() * d.cols())));
        String k = bin("div.s32", idx, Integer.toString(d.cols())), col = bin("rem.s32", idx, Integer.toString(d.cols()));
        String zero = constI(0);
        String from = toInt(loadGlobal(ss.starts().array(), index(ss.starts(), d, k, zero)));
        String to = toInt(loadGlobal(ss.starts().array(), index(ss.starts(), d, bin("add.s32", k, "1"), zero)));
        String sum = accumulator(), last = less(to, 1);
        comment("the group's rows " + SEGMENT_ROWS + " a trip: their row numbers loaded at once, then their values, then summed in order");
        loop(from, to, SEGMENT_ROWS, j -> {
            String[][] run = clampedRun(j, 1, SEGMENT_ROWS, to, last);
            String[] at = run[0], inside = run[1], rows = new String[SEGMENT_ROWS], v = new String[SEGMENT_ROWS];
            for (int u = 0; u < SEGMENT_ROWS; u++) rows[u] = loadGlobal(ss.order().array(), index(ss.order(), src, at[u], zero));
            for (int u = 0; u < SEGMENT_ROWS; u++) v[u] = expr(ss.x(), new Ctx(src, toInt(rows[u]), col, null, new HashMap<>()));
            for (int u = 0; u < SEGMENT_ROWS; u++) op(guard(inside[u]) + "add.f32 " + sum + ", " + sum + ", " + v[u] + ";");
        });
        lets(ss.epilogue(), new Ctx(d, k, col, sum, new HashMap<>()));
    }

    /** Declares the block's shared "part" array, one slot a thread, stores each thread's partial sum at its slot, waits for all. */
    private String publish(String tid, String partial) {
        shared.append("    .shared .align 4 .f32 part[").append(threads()).append("];\n");
        String slot = sharedSlot(symbol("part"), tid);
        op("st.shared.f32 [" + slot + "], " + partial + ";");
        op("bar.sync 0;");
        return slot;
    }

    private void transpose(Kernel.Transpose t) {
        if (t.packing() == null) {
            transposeTile(t);
            return;
        }
        int rows = t.src().shape().rows(), cols = t.src().shape().cols();
        var p = t.packing();
        comment("packed for a wgmma MLP block's bulk copies: slices of " + p.rows() + " rows by " + p.depth() + " of K, 16 KB each, as the"
                + " core matrices they fill in shared memory" + (p.permuted() ? ", rows in the order the up-projection's accumulators hold them" : "")
                + " (Kernel.Transpose.Packing)");
        String idx = mad(special("%ctaid.x"), Integer.toString(BLOCK), special("%tid.x"));
        exitIf(pred("ge.s32", idx, Integer.toString(rows * cols)));
        String i = bin("div.s32", idx, Integer.toString(cols)), j = bin("rem.s32", idx, Integer.toString(cols));
        String v = loadGlobal(t.src().array(), bin("add.s32", idx, Integer.toString(t.src().offset())));
        storeGlobal(t.dst().array(), bin("add.s32", packedIndex(p, j, i, rows), Integer.toString(t.dst().offset())), v);
    }

    /**
     * dst = srcᵀ a {@link #TRANSPOSE_TILE}-square tile a block, through shared memory, so that both sides are
     * coalesced: the block reads the tile's rows a warp a row and writes its columns a warp a column. Written one
     * thread an element, each warp's 32 stores went to 32 rows of dst, a sector each for 4 bytes: 5.5 µs for
     * a 1,024 × 256 weight in the fourth H200 run, eight of them a step. Each thread has its 4 loads in flight
     * at once; the tile's rows are padded by one float, so that a warp reading a column hits 32 banks.
     */
    private void transposeTile(Kernel.Transpose t) {
        int rows = t.src().shape().rows(), cols = t.src().shape().cols(), n = TRANSPOSE_TILE, pitch = n + 1, lines = n * n / BLOCK;
        comment("a " + n + "x" + n + " tile: read a row a warp, through shared memory, written a column a warp");
        shared.append("    .shared .align 4 .f32 tile[").append(n * pitch).append("];\n");
        String tid = special("%tid.x"), tx = bin("and.b32", tid, Integer.toString(n - 1)), ty = bin("shr.u32", tid, log2(n));
        String i0 = bin("mul.lo.s32", special("%ctaid.y"), Integer.toString(n)), j0 = bin("mul.lo.s32", special("%ctaid.x"), Integer.toString(n));
        String tile = symbol("tile"), j = bin("add.s32", j0, tx), i = bin("add.s32", i0, tx);
        String[] v = new String[lines], line = new String[lines];
        String jInside = pred("lt.s32", j, Integer.toString(cols)), iInside = pred("lt.s32", i, Integer.toString(rows));
        for (int q = 0; q < lines; q++) {   // element (i0 + line, j) of src, line = ty + 8q
            line[q] = bin("add.s32", ty, Integer.toString(q * BLOCK / n));
            String row = bin("add.s32", i0, line[q]);
            v[q] = constF(0);
            op("@" + pred("lt.and.s32", row, Integer.toString(rows), jInside) + " ld.global.f32 " + v[q] + ", ["
                    + address(t.src().array(), mad(row, Integer.toString(cols), bin("add.s32", j, Integer.toString(t.src().offset())))) + "];");
        }
        for (int q = 0; q < lines; q++) op("st.shared.f32 [" + sharedSlot(tile, mad(line[q], Integer.toString(pitch), tx)) + "], " + v[q] + ";");
        op("bar.sync 0;");
        for (int q = 0; q < lines; q++) {   // element (j0 + line, i) of dst: src's (i, j0 + line)
            String w = f(), row = bin("add.s32", j0, line[q]);
            op("ld.shared.f32 " + w + ", [" + sharedSlot(tile, mad(tx, Integer.toString(pitch), line[q])) + "];");
            op("@" + pred("lt.and.s32", row, Integer.toString(cols), iInside) + " st.global.f32 ["
                    + address(t.dst().array(), mad(row, Integer.toString(rows), bin("add.s32", i, Integer.toString(t.dst().offset())))) + "], " + w + ";");
        }
    }

    /** {@link Kernel.Transpose.Packing#index} of (n, k) in a transposed weight of kCount columns, as PTX. */
    private String packedIndex(Kernel.Transpose.Packing p, String n, String k, int kCount) {
        String rows = Integer.toString(p.rows()), depth = Integer.toString(p.depth());
        String slice = mad(bin("div.s32", n, rows), Integer.toString(kCount / p.depth()), bin("div.s32", k, depth));
        String inRow = bin("rem.s32", n, rows), inK = bin("rem.s32", k, depth), w = bin("and.b32", inRow, "7");
        String row = p.permuted() ? mad(bin("and.b32", w, "3"), "2", bin("shr.u32", w, "2")) : w;
        String coreMatrix = mad(bin("shr.u32", inRow, "3"), Integer.toString(p.depth() / 4), bin("shr.u32", inK, "2"));
        String within = mad(mad(coreMatrix, "8", row), "4", bin("and.b32", inK, "3"));
        return mad(slice, Integer.toString(p.rows() * p.depth()), within);
    }

    private void sumSquares(Kernel.SumSquares s) {
        String tid = special("%tid.x");
        String sum = accumulator();
        loop(tid, Integer.toString(s.count()), BLOCK, i -> {
            String v = loadGlobal(s.array(), i);
            op("fma.rn.f32 " + sum + ", " + v + ", " + v + ", " + sum + ";");
        });
        String slot = publish(tid, sum);
        comment("tree reduction in shared memory");
        for (int stride = BLOCK / 2; stride >= 1; stride /= 2) {
            String skip = newLabel("tree");
            op("@" + pred("ge.u32", tid, Integer.toString(stride)) + " bra " + skip + ";");
            String a = f(), b = f();
            op("ld.shared.f32 " + a + ", [" + slot + "];");
            op("ld.shared.f32 " + b + ", [" + slot + "+" + 4 * stride + "];");
            op("add.f32 " + a + ", " + a + ", " + b + ";");
            op("st.shared.f32 [" + slot + "], " + a + ";");
            label(skip);
            op("bar.sync 0;");
        }
        exitIf(pred("ne.s32", tid, "0"));
        String total = f();
        op("ld.shared.f32 " + total + ", [" + slot + "];");
        storeGlobal(s.out().array(), Integer.toString(s.out().offset()), total);
    }

    /**
     * Adam + EMA over its parameters, {@link #adamWidth} consecutive elements a thread (16-byte accesses where the
     * count allows). All six arrays are loaded before the first store: a store might alias a later load as far as
     * ptxas knows, so loads written after stores waited a memory latency each, five in a row a thread.
     */
    private void adamEma(Kernel.AdamEma o) {
        int width = adamWidth(o);
        String i = mad(special("%ctaid.x"), Integer.toString(BLOCK), special("%tid.x"));
        exitIf(pred("ge.s32", i, Integer.toString(o.count() / width)));
        String first = bin("add.s32", width == 1 ? i : bin("shl.b32", i, Integer.toString(Integer.numberOfTrailingZeros(width))), Integer.toString(o.offset()));
        String step = loadGlobal("scalars", Integer.toString(OptimizerScalars.STEP));
        String denom = loadGlobal("scalars", Integer.toString(OptimizerScalars.DENOM));
        String eps = loadGlobal("scalars", Integer.toString(OptimizerScalars.EPS));
        String decay = loadGlobal("scalars", Integer.toString(OptimizerScalars.DECAY));
        String mu = loadGlobal("scalars", Integer.toString(OptimizerScalars.TARGET_MU));
        String emaDecay = loadGlobal("scalars", Integer.toString(OptimizerScalars.EMA_DECAY));
        String gscale = loadGlobal("scalars", Integer.toString(OptimizerScalars.GRAD_SCALE));
        if (o.gradClip() > 0) {
            String norm = sqrt(bin("add.f32", loadGlobal("scalars", Integer.toString(OptimizerScalars.GRAD_NORM_SQ)), imm(1e-30)));
            gscale = bin("mul.f32", gscale, bin("min.f32", imm(1), bin("div.rn.f32", imm(o.gradClip()), norm)));
        }
        String rectified = pred("ne.f32", loadGlobal("scalars", Integer.toString(OptimizerScalars.RECTIFY)), imm(0));
        comment("every load first, so that all six are in flight at once");
        String[] grads = loadGlobal("grads", first, width), m0 = loadGlobal("adam_m", first, width), v0 = loadGlobal("adam_v", first, width);
        String[] p0 = loadGlobal("params", first, width), target0 = loadGlobal("target", first, width), ema0 = loadGlobal("ema", first, width);
        String oneMinusMu = bin("sub.f32", imm(1), mu), oneMinusEma = bin("sub.f32", imm(1), emaDecay);
        String[] m = new String[width], v = new String[width], p = new String[width], target = new String[width], ema = new String[width];
        for (int e = 0; e < width; e++) {
            String g = bin("mul.f32", grads[e], gscale);
            m[e] = fma(imm(o.beta1()), m0[e], bin("mul.f32", imm(1 - o.beta1()), g));
            v[e] = fma(imm(o.beta2()), v0[e], bin("mul.f32", imm(1 - o.beta2()), bin("mul.f32", g, g)));
            String adam = bin("div.rn.f32", m[e], fma(sqrt(v[e]), denom, eps)), update = f();
            op("selp.f32 " + update + ", " + adam + ", " + m[e] + ", " + rectified + ";");
            p[e] = bin("sub.f32", bin("sub.f32", p0[e], bin("mul.f32", step, update)), bin("mul.f32", decay, p0[e]));
            target[e] = fma(mu, target0[e], bin("mul.f32", oneMinusMu, p[e]));
            ema[e] = fma(emaDecay, ema0[e], bin("mul.f32", oneMinusEma, p[e]));
        }
        storeGlobal("adam_m", first, m);
        storeGlobal("adam_v", first, v);
        storeGlobal("params", first, p);
        storeGlobal("target", first, target);
        storeGlobal("ema", first, ema);
    }

    /** Elements of Adam + EMA a thread: 4 (one 16-byte access an array) where the count and offset are multiples of 4, else 1. */
    static int adamWidth(Kernel.AdamEma o) { return o.count() % 4 == 0 && o.offset() % 4 == 0 ? 4 : 1; }

    /** The shared-memory address of float slot idx of an array whose address is in base. */
    private String sharedSlot(String base, String idx) {
        String wide = rd(), a = rd();
        op("mul.wide.u32 " + wide + ", " + idx + ", 4;");
        op("add.s64 " + a + ", " + base + ", " + wide + ";");
        return a;
    }
}
