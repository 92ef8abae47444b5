package dev.cmc.render;

import dev.cmc.kernel.*;

import java.util.HashMap;
import java.util.List;

import static dev.cmc.render.PtxRenderer.*;

/**
 * A GEMM kernel: one output tile per block ({@link Tile}), 16 deep in K per step, its fused epilogue run on the
 * registers before anything is stored.
 * <ul>
 *   <li>On the FMA units ({@link #gemmFma}): a 128×64 tile, A and B staged through registers into double-buffered
 *       shared memory, each thread an 8×8 register tile.</li>
 *   <li>On the tensor cores ({@link #gemmMma}: 3xTF32 for fp32, tf32, bf16): a 3-stage cp.async pipeline, each
 *       warp 64×32 as 4×4 mma.sync tiles, an NN GEMM's A fragments by ldmatrix; or 128×128 tiles in a 2-stage
 *       pipeline (see {@link Tile}). Hopper's warpgroup wgmma is {@link PtxWgmmaGemm}.</li>
 * </ul>
 * GEMMs with few output tiles (weight gradients, where K is the batch; long-K GEMMs over small batches) are
 * split over K into workspace slices, so that they fill the GPU; each tile's last block to finish sums its
 * slices in order ({@link #finish}), or, in tiles {@link Tile#summedByCluster}, the tile's blocks sum them together
 * from each other's shared memory.
 */
class PtxGemm extends PtxMatrixKernel {
    final Kernel.Gemm gemm;
    /** The block tile. */
    final Tile tile;

    PtxGemm(Program program, int index, Matmul matmul, Tile tile) {
        super(program, index, matmul);
        this.gemm = (Kernel.Gemm) kernel;
        this.tile = tile;
    }

    @Override
    int threads() { return tile.threads(); }

    /** See {@link Tile#registers}. */
    @Override
    int maxRegisters() { return tile.registers(matmul); }

    @Override
    void body() {
        if (matmul == Matmul.FMA) gemmFma(gemm);
        else gemmMma(gemm);
    }

    /** A GEMM block's frame: bounds, this block's output corner, its K range, and the double-buffered tiles. */
    record Frame(String m, String n, String k, String tid, String row0, String col0, String kBegin, String kEnd,
                 String splits, String as, String bs) {}

    /**
     * Finds this block's output tile (128×64, or 128×128) and its slice of K: all of K, or for a TN GEMM cut into
     * {@link PtxRenderer#splits} slices (gridDim.z) the z-th, whole multiples of 16 deep.
     */
    Frame frame(Kernel.Gemm g) {
        String as, bs;
        if (tile.warpgroups()) {   // dynamic shared memory: A's stages (heads, then 3xTF32's remainders), then B's
            as = symbol(DYNAMIC_SHARED);
            bs = bin("add.s64", as, Integer.toString(tile.sharedBytes(matmul) - tile.stages() * 4 * tile.sliceK() * tile.bStride()));
        } else {
            int aFloats = matmul == Matmul.FMA ? 2 * SLICE_K * A_STRIDE : tile.stages() * mmaStageA(g);
            int bFloats = matmul == Matmul.FMA ? 2 * SLICE_K * B_STRIDE : tile.stages() * SLICE_K * tile.bStride();
            shared.append("    .shared .align 16 .f32 As[").append(aFloats).append("];\n");
            shared.append("    .shared .align 16 .f32 Bs[").append(bFloats).append("];\n");
            as = symbol("As");
            bs = symbol("Bs");
        }
        String m = domainRows(g.domain());
        String k = g.transposeA() ? rowsReg : constI(g.k());
        String tid = special("%tid.x");
        String col0 = bin("mul.lo.s32", special("%ctaid.x"), Integer.toString(tile.bn()));
        String row0 = bin("mul.lo.s32", special("%ctaid.y"), Integer.toString(tile.bm()));
        String kBegin = constI(0), kEnd = k, splits = constI(1);
        if (splitsK(g)) {
            comment("split K: the grid's depth is the slice count (PtxRenderer.splits)");
            splits = special("%nctaid.z");
            int slice = tile.sliceK();
            String steps = bin("div.s32", bin("add.s32", bin("add.s32", k, Integer.toString(slice - 1)), bin("mul.lo.s32", bin("add.s32", splits, "-1"), Integer.toString(slice))),
                    bin("mul.lo.s32", splits, Integer.toString(slice)));
            String chunk = bin("mul.lo.s32", steps, Integer.toString(slice));
            kBegin = bin("mul.lo.s32", special("%ctaid.z"), chunk);
            kEnd = bin("min.s32", k, bin("add.s32", kBegin, chunk));
        }
        return new Frame(m, Integer.toString(g.domain().cols()), k, tid, row0, col0, kBegin, kEnd, splits, as, bs);
    }

    /** Elements of the GEMM's output: M·N, M the row count for a batched output. */
    String outputSize(Kernel.Gemm g) {
        return g.domain().batched() ? bin("mul.lo.s32", rowsReg, Integer.toString(g.domain().cols()))
                                    : constI(g.domain().rows() * g.domain().cols());
    }

    /**
     * The K loop, double-buffered: while the block computes on one 16-deep slice of A (128×16) and B (16×64)
     * in shared memory, each thread already holds its part of the next slice in registers (zero outside the
     * matrices and the K range) and stores it into the other buffer afterwards: one barrier per slice. The
     * FMA GEMM's A is stored K-major whatever its layout in memory, so that one 16-byte load gives 4 rows.
     */
    void kLoop(Kernel.Gemm g, Frame t, java.util.function.BiConsumer<String, String> compute) {
        int aLoads = BM * SLICE_K / threads(), bLoads = SLICE_K * BN / threads();
        String[] aRow = new String[aLoads], aP = new String[aLoads], aSlot = new String[aLoads];
        String[] bP = new String[bLoads], bCol = new String[bLoads], bSlot = new String[bLoads];
        for (int l = 0; l < aLoads; l++) {
            String idx = bin("add.s32", t.tid(), Integer.toString(l * threads()));
            if (g.transposeA()) {   // A is [K, M] in memory: consecutive threads take consecutive rows of the tile
                aRow[l] = bin("and.b32", idx, Integer.toString(BM - 1));
                aP[l] = bin("shr.u32", idx, Integer.toString(Integer.numberOfTrailingZeros(BM)));
            } else {                // A is [M, K]: consecutive threads take consecutive K
                aRow[l] = bin("shr.u32", idx, Integer.toString(Integer.numberOfTrailingZeros(SLICE_K)));
                aP[l] = bin("and.b32", idx, Integer.toString(SLICE_K - 1));
            }
            aSlot[l] = bin("shl.b32", mad(aP[l], Integer.toString(A_STRIDE), aRow[l]), "2");
        }
        for (int l = 0; l < bLoads; l++) {
            String idx = bin("add.s32", t.tid(), Integer.toString(l * threads()));
            bP[l] = bin("shr.u32", idx, Integer.toString(Integer.numberOfTrailingZeros(BN)));
            bCol[l] = bin("and.b32", idx, Integer.toString(BN - 1));
            bSlot[l] = bin("shl.b32", mad(bP[l], Integer.toString(B_STRIDE), bCol[l]), "2");
        }
        String[] aV = new String[aLoads], bV = new String[bLoads];
        for (int l = 0; l < aLoads; l++) aV[l] = f();
        for (int l = 0; l < bLoads; l++) bV[l] = f();
        String p0 = r();
        op("mov.u32 " + p0 + ", " + t.kBegin() + ";");
        String buf = r();
        op("mov.u32 " + buf + ", 0;");
        // fetch: the slice at p0 into registers; store: the registers into buffer buf.
        Runnable fetchSlice = () -> {
            Buf a = g.a();
            for (int l = 0; l < aLoads; l++) {
                String ar = bin("add.s32", t.row0(), aRow[l]), ap = bin("add.s32", p0, aP[l]);
                String ok = p();
                op("setp.lt.s32 " + ok + ", " + ar + ", " + t.m() + ";");
                op("setp.lt.and.s32 " + ok + ", " + ap + ", " + t.kEnd() + ", " + ok + ";");
                String aIdx = g.transposeA() ? bin("add.s32", mad(ap, Integer.toString(a.shape().cols()), ar), Integer.toString(a.offset()))
                                             : bin("add.s32", mad(ar, Integer.toString(g.k()), ap), Integer.toString(a.offset()));
                op("mov.f32 " + aV[l] + ", 0f00000000;");
                op("@" + ok + " ld.global.f32 " + aV[l] + ", [" + address(a.array(), aIdx) + "];");
            }
            for (int l = 0; l < bLoads; l++) {
                String bp = bin("add.s32", p0, bP[l]), bc = bin("add.s32", t.col0(), bCol[l]);
                String ok = p();
                op("setp.lt.s32 " + ok + ", " + bp + ", " + t.kEnd() + ";");
                op("setp.lt.and.s32 " + ok + ", " + bc + ", " + t.n() + ", " + ok + ";");
                String bIdx = bin("add.s32", mad(bp, t.n(), bc), Integer.toString(g.b().offset()));
                op("mov.f32 " + bV[l] + ", 0f00000000;");
                op("@" + ok + " ld.global.f32 " + bV[l] + ", [" + address(g.b().array(), bIdx) + "];");
            }
        };
        Runnable storeSlice = () -> {
            String aBase = bufferBase(t.as(), buf, SLICE_K * A_STRIDE), bBase = bufferBase(t.bs(), buf, SLICE_K * B_STRIDE);
            for (int l = 0; l < aLoads; l++) storeShared(aBase, aSlot[l], aV[l]);
            for (int l = 0; l < bLoads; l++) storeShared(bBase, bSlot[l], bV[l]);
        };
        comment("prologue: the first slice into buffer 0");
        fetchSlice.run();
        storeSlice.run();
        op("bar.sync 0;");
        String top = newLabel("k"), done = newLabel("k_end"), last = newLabel("k_last");
        label(top);
        op("@" + pred("ge.s32", p0, t.kEnd()) + " bra " + done + ";");
        String cur = buf, next = bin("xor.b32", buf, "1");
        op("add.s32 " + p0 + ", " + p0 + ", " + SLICE_K + ";");
        String more = pred("lt.s32", p0, t.kEnd());
        comment("the next slice into registers while this one is computed");
        String skipFetch = newLabel("no_fetch");
        op("@!" + more + " bra " + skipFetch + ";");
        fetchSlice.run();
        label(skipFetch);
        compute.accept(bufferBase(t.as(), cur, SLICE_K * A_STRIDE), bufferBase(t.bs(), cur, SLICE_K * B_STRIDE));
        op("@!" + more + " bra " + last + ";");
        op("mov.u32 " + buf + ", " + next + ";");
        storeSlice.run();
        label(last);
        op("bar.sync 0;");
        op("bra " + top + ";");
        label(done);
    }

    /** The shared address of buffer buf (0 or 1) of a double-buffered tile of floatsPerBuffer floats. */
    String bufferBase(String tile, String buf, int floatsPerBuffer) {
        String wide = rd(), a = rd();
        op("mul.wide.u32 " + wide + ", " + buf + ", " + 4 * floatsPerBuffer + ";");
        op("add.s64 " + a + ", " + tile + ", " + wide + ";");
        return a;
    }

    void storeShared(String base, String byteOffset, String v) {
        String wide = rd(), a = rd();
        op("cvt.u64.u32 " + wide + ", " + byteOffset + ";");
        op("add.s64 " + a + ", " + base + ", " + wide + ";");
        op("st.shared.f32 [" + a + "], " + v + ";");
    }

    /**
     * The accumulators out: through the epilogue; or, for a GEMM cut into several K slices, into slice z of
     * the workspace. Then the last of the tile's blocks to get there, told by a counter per tile that each
     * block increments once, sums the tile's slices in order (z = 0, 1, …: deterministic, unlike atomic
     * adds) and runs the epilogue, so that no second kernel is needed; its threads take the tile's elements
     * in row order, so that their loads are coalesced, 4 at a time ({@link #width}), {@link #SUM_GROUPS} such
     * groups a trip, and load {@link #SUM_BATCH} slices of each, and the epilogue's own loads, before adding any.
     * The epilogue's loads and stores of the 4 take one 16-byte access each where the arrays allow
     * ({@link #fourAtOnce}): a warp's scalar accesses 16 bytes apart each touched four times the sectors, and the
     * input gradient into a LayerNorm (three outputs, two loads) took 55 µs on an H200 where the down-projection of
     * the same shape and slices (one output, one load) took 42.
     * One load a slice and element, each waiting for the last, put
     * 512 trips to L2 in a thread's path at 8 slices: on an H200 the split down-projections at 256 rows took
     * 65 µs against 35 µs for the unsplit up-projections, with half their K a block. The memory ordering is
     * CUTLASS's serial split-K: every thread's partials, a barrier, then one thread's acq_rel atomic at GPU scope;
     * in the last block, that thread's acquire, a barrier, then every thread's loads. The last block sets
     * the counter back to zero for the next launch.
     */
    void finish(Kernel.Gemm g, Frame t, List<Out> outs) {
        String partial = newLabel("partial");
        if (splitsK(g)) op("@" + pred("gt.s32", t.splits(), "1") + " bra " + partial + ";");
        emitAll(g, t.m(), t.n(), outs);
        if (!splitsK(g)) return;
        op("bra DONE;");
        label(partial);
        if (tile.clusterSum()) {
            sumAcrossCluster(g, t, outs);
            return;
        }
        String size = outputSize(g), first = Integer.toString(counterFloats(g));
        String sliceBase = bin("add.s32", first, bin("mul.lo.s32", special("%ctaid.z"), size));
        for (Out o : outs) {
            String skip = newLabel("out");
            op("@" + outside(o.row(), o.col(), t.m(), t.n()) + " bra " + skip + ";");
            storeGlobal(WORKSPACE, mad(o.row(), t.n(), bin("add.s32", sliceBase, o.col())), o.acc());
            label(skip);
        }
        comment("serial split K: the tile's last block to count itself sums the slices");
        shared.append("    .shared .align 4 .u32 lastBlock[1];\n");
        String flag = symbol("lastBlock"), counted = newLabel("counted");
        op("bar.sync 0;");
        op("@" + pred("ne.s32", t.tid(), "0") + " bra " + counted + ";");
        String counter = address(WORKSPACE, mad(special("%ctaid.y"), special("%nctaid.x"), special("%ctaid.x"))), before = r(), last = r();
        op("atom.acq_rel.gpu.global.add.u32 " + before + ", [" + counter + "], 1;");
        String isLast = pred("eq.s32", before, bin("add.s32", t.splits(), "-1"));
        op("selp.s32 " + last + ", 1, 0, " + isLast + ";");
        op("@" + isLast + " st.relaxed.gpu.global.u32 [" + counter + "], 0;");
        op("st.shared.u32 [" + flag + "], " + last + ";");
        label(counted);
        op("bar.sync 0;");
        String lastHere = r();
        op("ld.shared.u32 " + lastHere + ", [" + flag + "];");
        op("@" + pred("eq.s32", lastHere, "0") + " bra DONE;");
        int width = width(g), groups = sumGroups(g);
        String[] at = new String[groups], from = new String[groups], sliceBytes = new String[1];
        sumSlices(g, t, groups, () -> bin("mul.lo.s32", t.tid(), Integer.toString(width)), Integer.toString(groups * threads() * width), new Slices() {
            public void begin() {
                sliceBytes[0] = rd();
                op("mul.wide.s32 " + sliceBytes[0] + ", " + size + ", 4;");
            }

            public void at(int u, String row, String col) {
                at[u] = address(WORKSPACE, bin("add.s32", first, mad(row, t.n(), col)));
                from[u] = at[u];
            }

            public void load(int u, int j, String z, String present, String[] v) {
                op("@" + present + " ld.global.cg" + vector(v) + ".f32 " + operands(v) + ", [" + from[u] + "];");
                from[u] = bin("add.s64", from[u], sliceBytes[0]);
            }

            public void next(int u) {
                op("mov.u64 " + at[u] + ", " + from[u] + ";");
                from[u] = at[u];
            }
        });
    }

    /**
     * Element groups a thread takes a trip of a split tile's sum: {@link #SUM_GROUPS}, or half as many where the
     * epilogue loads more than {@link #SUM_GROUP_LOADS} (registers), or 1 where the tile is no whole number of trips.
     */
    private int sumGroups(Kernel.Gemm g) {
        int most = earlyLoads(g.epilogue()) <= SUM_GROUP_LOADS ? SUM_GROUPS : SUM_GROUPS / 2;
        return tile.bm() * tile.bn() % (most * threads() * width(g)) == 0 ? most : 1;
    }

    /** Where a split tile's K slices are summed from: the workspace, or the shared memory of the cluster's blocks. */
    private interface Slices {
        /** Before the walk: what every trip needs. */
        default void begin() {}

        /** Group u's first element, at (row, col) clamped into the output: where its slices lie. */
        void at(int u, String row, String col);

        /** Slice z + j of group u's elements into v (zeros already), where present. */
        void load(int u, int j, String z, String present, String[] v);

        /** A batch of {@link #SUM_BATCH} slices loaded: group u's next batch lies on. */
        void next(int u);
    }

    /**
     * The summing walk of a split tile's elements, consecutive threads on consecutive columns, {@link #width} at a
     * time and `groups` such groups a trip, from element `first` by `stride` a trip: each group's slices loaded
     * {@link #SUM_BATCH} at once, every group's (and the epilogue's own loads) before the first add, then summed in
     * slice order, z = 0, 1, … (deterministic, unlike atomic adds), through the epilogue and stored.
     */
    private void sumSlices(Kernel.Gemm g, Frame t, int groups, java.util.function.Supplier<String> first, String stride, Slices slices) {
        int width = width(g), step = threads() * width;
        comment("the tile's elements, consecutive threads on consecutive columns, " + width + " at a time, " + groups + " such groups a trip: each"
                + " group's slices loaded " + SUM_BATCH + " at once, every group's before the first add, then summed in order");
        String e = first.get(), top = newLabel("tile"), done = newLabel("tile_end");
        slices.begin();
        String lastRow = less(t.m(), 1), lastGroup = less(t.n(), width);
        // The tile's rows inside the output end the walk: a bias gradient's one row, or a weight gradient's 64,
        // takes that share of a 128-row tile's trips, not all of them.
        String rowsIn = bin("min.s32", bin("sub.s32", t.m(), t.row0()), Integer.toString(tile.bm()));
        String inside = bin("mul.lo.s32", rowsIn, Integer.toString(tile.bn()));
        label(top);
        op("@" + pred("ge.s32", e, inside) + " bra " + done + ";");
        // Group u's elements, clamped into the output so that its loads stay in bounds (a group lies inside the
        // output or outside it whole: its width divides the row); a group outside stores nothing.
        String[] outsideGroup = new String[groups];
        String[][] sum = new String[groups][width];
        var ctxs = new java.util.ArrayList<List<Ctx>>();   // each group's elements, for the epilogue
        loaded = new HashMap<>();
        comment("the epilogue's own loads (a bias, a residual) first, so that they and the slices' are in flight together");
        for (int u = 0; u < groups; u++) {
            String eu = u == 0 ? e : bin("add.s32", e, Integer.toString(u * step));
            String row = bin("add.s32", t.row0(), bin("shr.u32", eu, log2(tile.bn())));
            String col = bin("add.s32", t.col0(), bin("and.b32", eu, Integer.toString(tile.bn() - 1)));
            outsideGroup[u] = outside(row, col, t.m(), t.n());
            row = bin("min.s32", row, lastRow);
            col = bin("min.s32", col, lastGroup);
            var group = new java.util.ArrayList<Ctx>();
            for (int q = 0; q < width; q++) {
                sum[u][q] = constF(0);
                group.add(new Ctx(g.domain(), row, q == 0 ? col : bin("add.s32", col, Integer.toString(q)), sum[u][q], new HashMap<>()));
            }
            ctxs.add(group);
            if (width == 4) preloadFourAtOnce(g.epilogue(), group);
            for (Ctx c : group) preload(g.epilogue(), c);
            slices.at(u, row, col);
        }
        String z = constI(0);
        String batches = newLabel("slices"), summed = newLabel("slices_end");
        label(batches);
        op("@" + pred("ge.s32", z, t.splits()) + " bra " + summed + ";");
        // A batch's loads all go out before its first add: one trip a batch of slices, not one a slice.
        String[] present = new String[SUM_BATCH];
        for (int j = 0; j < SUM_BATCH; j++) present[j] = pred("lt.s32", bin("add.s32", z, Integer.toString(j)), t.splits());
        String[][][] v = new String[groups][SUM_BATCH][width];
        for (int u = 0; u < groups; u++) {
            for (int j = 0; j < SUM_BATCH; j++) {
                for (int q = 0; q < width; q++) v[u][j][q] = constF(0);   // a slice past the last adds nothing
                slices.load(u, j, z, present[j], v[u][j]);
            }
            slices.next(u);
        }
        for (int u = 0; u < groups; u++) {
            for (int j = 0; j < SUM_BATCH; j++) for (int q = 0; q < width; q++) op("add.f32 " + sum[u][q] + ", " + sum[u][q] + ", " + v[u][j][q] + ";");
        }
        op("add.s32 " + z + ", " + z + ", " + SUM_BATCH + ";");
        op("bra " + batches + ";");
        label(summed);
        var values = new java.util.ArrayList<List<java.util.Map<Expr.Let, String>>>();
        for (var group : ctxs) values.add(group.stream().map(c -> valuesOf(g.epilogue(), c)).toList());
        loaded = null;
        for (int u = 0; u < groups; u++) {
            String skip = newLabel("group");
            op("@" + outsideGroup[u] + " bra " + skip + ";");
            if (width == 4) storeFourAtOnce(values.get(u), ctxs.get(u));
            else storeAll(values.get(u).getFirst(), ctxs.get(u).getFirst());
            label(skip);
        }
        op("add.s32 " + e + ", " + e + ", " + stride + ";");
        op("bra " + top + ";");
        label(done);
    }

    /**
     * Split K summed across the tile's cluster ({@link Tile#summedByCluster}): the blocks of one output tile,
     * launched as one cluster of (1, 1, slices), leave their partial tiles in their own shared memory (the pipeline's,
     * whose copies and multiplies are all done, rows {@link Tile#clusterStride} floats apart), meet at a cluster
     * barrier, and each sums every {@code slices}-th trip of the tile's rows from all the cluster's partials, read
     * through the cluster's shared window (mapa, ld.shared::cluster), in slice order: the serial sum's result, bit for
     * bit, without its round trip through L2, its counter, or its last block walking the whole tile alone. A second
     * cluster barrier keeps every block's shared memory alive until the others have read it. A launch without the
     * cluster (the runtime's error) traps rather than read another tile's partials.
     */
    private void sumAcrossCluster(Kernel.Gemm g, Frame t, List<Out> outs) {
        comment("cluster split K: every block's partial tile into its own shared memory, once every warpgroup is done reading the stages");
        op("bar.sync 0;");
        String inCluster = special("%cluster_nctarank");
        op("@" + pred("ne.s32", inCluster, t.splits()) + " trap;");
        int rowFloats = tile.clusterStride();
        String tileBase = t.as();
        // A thread's accumulators share a few rows and columns: each one's bytes into the tile, once.
        var rowBytes = new HashMap<String, String>();
        var colBytes = new HashMap<String, String>();
        for (Out o : outs) {
            String down = rowBytes.computeIfAbsent(o.row(), r -> bin("mul.lo.s32", bin("sub.s32", r, t.row0()), Integer.toString(4 * rowFloats)));
            String across = colBytes.computeIfAbsent(o.col(), c -> bin("shl.b32", bin("sub.s32", c, t.col0()), "2"));
            op("st.shared.f32 [" + bin("add.s64", tileBase, wideBytes(bin("add.s32", down, across))) + "], " + o.acc() + ";");
        }
        comment("the cluster's partials are all written: each block sums every slices-th trip of the tile from all of them");
        op("barrier.cluster.arrive.release;");
        op("barrier.cluster.wait.acquire;");
        int width = width(g), groups = sumGroups(g), trip = groups * threads() * width;
        String rank = special("%cluster_ctarank");
        String first = mad(rank, Integer.toString(trip), bin("mul.lo.s32", t.tid(), Integer.toString(width)));
        String stride = bin("mul.lo.s32", t.splits(), Integer.toString(trip));
        String[] local = new String[groups];
        sumSlices(g, t, groups, () -> first, stride, new Slices() {
            public void at(int u, String row, String col) {
                String at = mad(bin("sub.s32", row, t.row0()), Integer.toString(rowFloats), bin("sub.s32", col, t.col0()));
                local[u] = bin("add.s64", tileBase, wideBytes(bin("shl.b32", at, "2")));
            }

            public void load(int u, int j, String z, String present, String[] v) {
                String remote = rd();
                op("@" + present + " mapa.shared::cluster.u64 " + remote + ", " + local[u] + ", " + bin("add.s32", z, Integer.toString(j)) + ";");
                op("@" + present + " ld.shared::cluster" + vector(v) + ".f32 " + operands(v) + ", [" + remote + "];");
            }

            public void next(int u) {}
        });
        comment("no block leaves while another may still read its partial tile");
        op("barrier.cluster.arrive.release;");
        op("barrier.cluster.wait.acquire;");
    }

    /**
     * Slices of a split tile that its last block loads at once, before summing them. With {@link #SUM_GROUPS}, a
     * trip to L2 brings 16 loads of 4 floats a thread whatever the slice count: the 4 slices that an H200 chose
     * for the CT step's split GEMMs at 4,096 rows (down-projections, the LayerNorms' input gradients) take a
     * 128×128 tile in 4 trips, where batches of 8 slices in 2 groups took 8 and left half their loads unused; 8 and
     * 16 slices take as many trips either way. The last block's trips are the split GEMM's tail: its other blocks
     * are done by then (42 µs for a down-projection in 4 slices against 33 for the unsplit up-projection of the
     * same products, fourth run).
     */
    static final int SUM_BATCH = 4;

    /**
     * Element groups a thread of a split tile's last block takes a trip: each group's slices and epilogue loads
     * are issued before any of them is summed, so that a trip is one wait on L2 for four groups, not one each.
     */
    static final int SUM_GROUPS = 4;

    /**
     * The most loads an element's epilogue may issue early for its tile's last block to take {@link #SUM_GROUPS}
     * groups a trip; with more, half as many, so that the slices' and the epilogue's loads in flight fit the
     * registers (an epilogue of two loads fits 128 registers at four groups; the CT step's output projection,
     * five loads for c_skip·x + c_out·F and the target's output, spilled in 128×64 FMA tiles).
     */
    static final int SUM_GROUP_LOADS = 2;

    /**
     * Consecutive elements a thread of a split tile's last block sums at once: 4, by 16-byte loads, where the
     * output's rows are whole multiples of 4 floats (a group then never straddles the last column, and every
     * slice stays 16-byte aligned); else 1.
     */
    static int width(Kernel.Gemm g) { return g.domain().cols() % 4 == 0 ? 4 : 1; }

    /**
     * An fp32 GEMM on the FMA units: a 128×64 tile per block, 8×16 threads each holding an 8×8 register tile
     * (rows ty·4…+3 and 64+ty·4…+3, columns tx·4…+3 and 32+tx·4…+3), so every 16-byte shared load feeds 16
     * FMAs, and 64 independent accumulators keep the FMA pipes busy.
     */
    void gemmFma(Kernel.Gemm g) {
        Frame t = frame(g);
        String tx = bin("and.b32", t.tid(), "7"), ty = bin("shr.u32", t.tid(), "3");
        String[][] acc = new String[8][8];
        for (int i = 0; i < 8; i++) for (int j = 0; j < 8; j++) acc[i][j] = constF(0);
        // Byte offsets of this thread's first four rows (ty·4) and columns (tx·4); the other four are 64 rows
        // and 32 columns on, so that the 8 lanes of a row of threads read 128 contiguous bytes of B.
        String aOff = wideBytes(bin("shl.b32", ty, "4")), bOff = wideBytes(bin("shl.b32", tx, "4"));
        kLoop(g, t, (aBase, bBase) -> {
            String aRead = bin("add.s64", aBase, aOff), bRead = bin("add.s64", bBase, bOff);
            for (int kk = 0; kk < SLICE_K; kk++) {
                String[] av = new String[8], bv = new String[8];
                for (int i = 0; i < 8; i++) av[i] = f();
                for (int j = 0; j < 8; j++) bv[j] = f();
                op("ld.shared.v4.f32 {" + String.join(", ", java.util.Arrays.copyOfRange(av, 0, 4)) + "}, [" + aRead + "+" + 4 * (kk * A_STRIDE) + "];");
                op("ld.shared.v4.f32 {" + String.join(", ", java.util.Arrays.copyOfRange(av, 4, 8)) + "}, [" + aRead + "+" + 4 * (kk * A_STRIDE + BM / 2) + "];");
                op("ld.shared.v4.f32 {" + String.join(", ", java.util.Arrays.copyOfRange(bv, 0, 4)) + "}, [" + bRead + "+" + 4 * (kk * B_STRIDE) + "];");
                op("ld.shared.v4.f32 {" + String.join(", ", java.util.Arrays.copyOfRange(bv, 4, 8)) + "}, [" + bRead + "+" + 4 * (kk * B_STRIDE + BN / 2) + "];");
                for (int i = 0; i < 8; i++) for (int j = 0; j < 8; j++) {
                    op("fma.rn.f32 " + acc[i][j] + ", " + av[i] + ", " + bv[j] + ", " + acc[i][j] + ";");
                }
            }
        });
        String[] cols = new String[8];
        for (int j = 0; j < 8; j++) cols[j] = bin("add.s32", t.col0(), mad(tx, "4", Integer.toString(j < 4 ? j : BN / 2 + j - 4)));
        var outs = new java.util.ArrayList<Out>();
        for (int i = 0; i < 8; i++) {
            String row = bin("add.s32", t.row0(), mad(ty, "4", Integer.toString(i < 4 ? i : BM / 2 + i - 4)));
            for (int j = 0; j < 8; j++) outs.add(new Out(row, cols[j], acc[i][j]));
        }
        finish(g, t, outs);
    }

    /**
     * A tensor-core GEMM: the same 128×64 block tile as {@link #gemmFma} (or 128×128, see {@link Tile}), each warp owning a 64×32 piece
     * as 4×4 mma.sync.m16n8k8 tiles per 8-deep K step (three mma each for 3xTF32), fed by the cp.async
     * pipeline of {@link #asyncKLoop}. An NN GEMM's A fragments come by ldmatrix (one instruction for a 16×8
     * fragment); a TN GEMM's A and every B fragment by 32-bit shared loads, which the padded rows keep in 32
     * banks. Fragments are rounded to TF32, or split into a TF32 head and remainder, as they are loaded; for
     * bf16, a slice's two m16n8k8 fragments pack into one m16n8k16 fragment (see {@link #bf16A}).
     */
    void gemmMma(Kernel.Gemm g) {
        Frame t = frame(g);
        String lane = bin("and.b32", t.tid(), "31"), warp = bin("shr.u32", t.tid(), "5");
        String grp = bin("shr.u32", lane, "2"), tig = bin("and.b32", lane, "3");
        int wn = tile.warpNTiles(), warpsAcross = tile.bn() / (8 * wn);   // 2 or 4 warps across, each 8·wn columns
        String warpRow = bin("mul.lo.s32", bin("shr.u32", warp, log2(warpsAcross)), Integer.toString(16 * WARP_M_TILES)),
                warpCol = bin("mul.lo.s32", bin("and.b32", warp, Integer.toString(warpsAcross - 1)), Integer.toString(8 * wn));
        String[][][] acc = new String[WARP_M_TILES][wn][4];
        for (String[][] tile : acc) for (String[] a : tile) for (int e = 0; e < 4; e++) a[e] = constF(0);
        boolean nn = !g.transposeA();
        String aOff;
        if (nn) {   // ldmatrix: lanes 8q…8q+7 address the rows of matrix q = (rows +8·(q&1), K +4·(q>>1))
            String row = bin("add.s32", bin("add.s32", warpRow, bin("and.b32", lane, "7")), bin("and.b32", lane, "8"));
            aOff = wideBytes(bin("shl.b32", mad(row, Integer.toString(MMA_A_ROW), bin("shl.b32", bin("shr.u32", lane, "4"), "2")), "2"));
        } else {    // A(k t, row g) of the warp's rows
            aOff = wideBytes(bin("shl.b32", mad(tig, Integer.toString(A_STRIDE), bin("add.s32", warpRow, grp)), "2"));
        }
        String bOff = wideBytes(bin("shl.b32", mad(tig, Integer.toString(tile.bStride()), bin("add.s32", warpCol, grp)), "2"));
        boolean x3 = matmul == Matmul.TF32X3;
        Copies ac = aCopies(g, t, false);
        asyncKLoop(g, t, ac, mmaStageA(g), stage -> {}, (aBase, bBase, refill) -> {
            String aRead = bin("add.s64", aBase, aOff), bRead = bin("add.s64", bBase, bOff);
            if (matmul == Matmul.BF16) {
                comment("one 16-deep K step: " + WARP_M_TILES + " A, " + wn + " B fragments packed to bf16 pairs, "
                        + WARP_M_TILES * wn + " mma");
                String[][] af = new String[WARP_M_TILES][];
                for (int i = 0; i < WARP_M_TILES; i++) af[i] = bf16A(aWords(aRead, nn, 0, i), aWords(aRead, nn, 8, i));
                for (int j = 0; j < wn; j++) {
                    String[] bf = bf16B(bWords(bRead, 0, j), bWords(bRead, 8, j));
                    for (int i = 0; i < WARP_M_TILES; i++) mmaBf16(acc[i][j], af[i], bf);
                }
                return;
            }
            for (int ks = 0; ks < SLICE_K; ks += 8) {
                int mmas = WARP_M_TILES * wn;
                comment("k step " + ks + ": " + WARP_M_TILES + " A fragments, " + wn + " B fragments, "
                        + (x3 ? "3x" + mmas + " mma (remainder products first)" : mmas + " mma"));
                // Every B fragment first, then one A fragment at a time: fewer fragments live at once.
                String[][][] bf = new String[wn][][];
                for (int j = 0; j < wn; j++) bf[j] = tf32(bWords(bRead, ks, j));
                for (int i = 0; i < WARP_M_TILES; i++) {
                    String[][] af = tf32(aWords(aRead, nn, ks, i));
                    for (int j = 0; j < wn; j++) {
                        mmas(acc[i][j], af, bf[j]);
                    }
                }
            }
        });
        // Accumulator e of tile (i, j) is output (g + 16i + 8·(e/2), 2t + 8j + e%2): 8 distinct rows, 8 columns.
        String rowBase = bin("add.s32", bin("add.s32", t.row0(), warpRow), grp), colBase = bin("add.s32", bin("add.s32", t.col0(), warpCol), bin("shl.b32", tig, "1"));
        String[] rows = new String[2 * WARP_M_TILES], cols = new String[2 * wn];
        for (int q = 0; q < rows.length; q++) rows[q] = bin("add.s32", rowBase, Integer.toString(8 * q));
        for (int q = 0; q < cols.length; q++) cols[q] = bin("add.s32", colBase, Integer.toString(8 * (q / 2) + q % 2));
        var outs = new java.util.ArrayList<Out>();
        for (int i = 0; i < WARP_M_TILES; i++) for (int j = 0; j < wn; j++) for (int e = 0; e < 4; e++) {
            outs.add(new Out(rows[2 * i + e / 2], cols[2 * j + e % 2], acc[i][j][e]));
        }
        finish(g, t, outs);
    }

    /** A K loop's work on one slice, from its stages' addresses; refill issues the copies of the slice ahead, where the tile refills early. */
    interface Compute {
        void accept(String aBase, String bBase, Runnable refill);
    }

    /** Floats of one pipeline stage of a tensor-core GEMM's A: 128 rows of MMA_A_ROW (NN), or SLICE_K rows of A_STRIDE (TN). */
    static int mmaStageA(Kernel.Gemm g) { return g.transposeA() ? SLICE_K * A_STRIDE : BM * MMA_A_ROW; }

    /**
     * The tensor-core GEMMs' K loop: a cp.async pipeline over the tile's stages. Slices are copied {@code ahead}
     * slices before they are computed: each trip waits for its own slice's copies, meets the block at one
     * barrier and refills the stage of the slice {@code stages - ahead} trips back, which every thread is done
     * with by then. For mma.sync, ahead = stages - 1 (3 stages for 128×64: slices s+1 and s+2 on their way while
     * s is computed; 2 for 128×128). For wgmma, ahead = stages - 2: the slice before is still being multiplied
     * asynchronously while this one is issued, and its stage is refilled a trip later; or, in tiles
     * {@link Tile#refilledEarly}, ahead = stages - 1, the slice before's stage refilled part-way through this
     * one, where compute calls for it: once its last multiply has retired, behind a barrier of its own. Copies
     * outside the matrices or the K range are zero-filled (src-size 0, from a valid address).
     */
    void asyncKLoop(Kernel.Gemm g, Frame t, Copies ac, int aStage, java.util.function.Consumer<String> landed, Compute compute) {
        int stages = tile.stages(), ahead = tile.ahead();
        Copies bc = kRowCopies(g.b(), tile.bn(), g.domain().cols(), t.col0(), t.n(), tile.bStride(), t.tid());
        int slice = tile.sliceK(), bStage = slice * tile.bStride();
        java.util.function.BiConsumer<String, String> issue = (kBase, stage) -> {
            String aBase = bufferBase(t.as(), stage, aStage), bBase = bufferBase(t.bs(), stage, bStage);
            for (Copies c : List.of(ac, bc)) {
                String kPos = bin("add.s32", kBase, c.kk()), idx0 = mad(kBase, c.kStride(), c.fixed());
                String dst = bin("add.s64", c == ac ? aBase : bBase, c.sharedBytes());
                for (int l = 0; l < c.count(); l++) {
                    String ok = p();
                    op("setp.lt.s32 " + ok + ", " + bin("add.s32", kPos, Integer.toString(l * c.kkStep())) + ", " + t.kEnd() + ";");
                    op("setp.lt.and.s32 " + ok + ", " + bin("add.s32", c.at(), Integer.toString(l * c.atStep())) + ", " + c.limit() + ", " + ok + ";");
                    String idx = r(), bytes = r();
                    op("selp.s32 " + idx + ", " + bin("add.s32", idx0, Integer.toString(l * c.fixedStep())) + ", 0, " + ok + ";");
                    op("selp.s32 " + bytes + ", " + 4 * c.width() + ", 0, " + ok + ";");
                    op("cp.async." + (c.width() == 4 ? "cg" : "ca") + ".shared.global [" + dst + "+" + l * c.sharedStep() + "], ["
                            + address(c.buf().array(), idx) + "], " + 4 * c.width() + ", " + bytes + ";");
                }
            }
            op("cp.async.commit_group;");
        };
        comment("prologue: slices 0.." + (ahead - 1) + " on their way into stages 0.." + (ahead - 1));
        for (int s = 0; s < ahead; s++) issue.accept(bin("add.s32", t.kBegin(), Integer.toString(s * slice)), Integer.toString(s));
        String kCur = r(), kNext = r(), readStage = r(), writeStage = r();
        op("mov.u32 " + kCur + ", " + t.kBegin() + ";");
        op("add.s32 " + kNext + ", " + t.kBegin() + ", " + ahead * slice + ";");
        op("mov.u32 " + readStage + ", 0;");
        op("mov.u32 " + writeStage + ", " + ahead + ";");
        String top = newLabel("k"), done = newLabel("k_end");
        label(top);
        // The pipeline is already explicit: unrolling a short constant-trip loop on top of it made ptxas
        // hold several trips' copies and fragments at once and spill.
        op(".pragma \"nounroll\";");
        op("@" + pred("ge.s32", kCur, t.kEnd()) + " bra " + done + ";");
        op("cp.async.wait_group " + (ahead - 1) + ";");
        landed.accept(readStage);
        op("bar.sync 0;");
        Runnable refill = () -> issue.accept(kNext, writeStage), early = () -> {
            comment("the slice before is multiplied: at the barrier every warpgroup is done with its stage, which takes slice k+"
                    + ahead * slice + " now");
            op("bar.sync 0;");
            refill.run();
        };
        if (!tile.refillEarly()) {
            comment("slice k+" + ahead * slice + " into the stage computed " + (stages - ahead) + " trip(s) ago, then compute this one");
            refill.run();
        }
        compute.accept(bufferBase(t.as(), readStage, aStage), bufferBase(t.bs(), readStage, bStage), tile.refillEarly() ? early : () -> {});
        op("add.s32 " + kCur + ", " + kCur + ", " + slice + ";");
        op("add.s32 " + kNext + ", " + kNext + ", " + slice + ";");
        goRound(readStage, 1, stages);
        goRound(writeStage, 1, stages);
        op("bra " + top + ";");
        label(done);
        op("cp.async.wait_group 0;");
    }

    /**
     * The copies of a tensor-core GEMM's A: for mma.sync, a TN GEMM's A ([K, M]) kept as it is, K row by K row;
     * an NN GEMM's ([M, K]) a chunk of aw K of one row each, in rows of MMA_A_ROW floats, consecutive threads
     * along a row. For wgmma, core matrices (see {@link PtxRenderer#WG_LBO}), which consecutive threads fill in
     * the order they lie: a row's 16 bytes, the core matrix's 8 rows, the 4 along K, then the next row group.
     * So thread i's first chunk lies at byte 4·aw·i, and a warp's chunks are contiguous: 3xTF32's in-place
     * split reads and writes them without bank conflicts. wgmma reads TF32 only K-major, so a TN GEMM's A is
     * transposed on its way: single floats (aw = 1), a warp's copies 4 K rows of 8 consecutive columns, whole
     * 32-byte sectors of global memory that land as 128 contiguous bytes of shared memory.
     */
    Copies aCopies(Kernel.Gemm g, Frame t, boolean coreMatrices) {
        Buf a = g.a();
        if (g.transposeA() && !coreMatrices) return kRowCopies(a, tile.bm(), a.shape().cols(), t.row0(), t.m(), A_STRIDE, t.tid());
        // A thread's copies step by the same amounts from the first: a block's threads' chunks on is a fixed
        // number of rows further down (the tile's rows are whole multiples of chunks), so one set of registers
        // and immediate offsets describe them all, however many 4-byte copies an odd shape needs.
        int slice = tile.sliceK(), aw = g.transposeA() ? 1 : chunkWidth(g.k(), a.offset()), perRow = slice / aw, down = tile.threads() / perRow;
        String row, kk, sharedBytes;
        int sharedStep;
        if (coreMatrices) {
            int perCoreRow = 4 / aw;   // chunks in a core matrix's 16-byte row: 1, or 4 of one float
            String r8 = bin("and.b32", aw == 4 ? t.tid() : bin("shr.u32", t.tid(), log2(perCoreRow)), "7");
            int coresAlongK = slice / 4;
            String kCore = bin("and.b32", bin("shr.u32", t.tid(), log2(8 * perCoreRow)), Integer.toString(coresAlongK - 1));
            String rowGroup = bin("shr.u32", t.tid(), log2(8 * coresAlongK * perCoreRow));
            row = bin("add.s32", bin("shl.b32", rowGroup, "3"), r8);
            kk = bin("shl.b32", kCore, "2");
            if (aw == 1) kk = bin("add.s32", kk, bin("and.b32", t.tid(), "3"));
            sharedBytes = bin("shl.b32", t.tid(), log2(4 * aw));
            sharedStep = 4 * aw * tile.threads();
        } else {
            row = bin("shr.u32", t.tid(), log2(perRow));
            kk = bin("shl.b32", bin("and.b32", t.tid(), Integer.toString(perRow - 1)), log2(aw));
            sharedBytes = bin("shl.b32", mad(row, Integer.toString(MMA_A_ROW), kk), "2");
            sharedStep = 4 * down * MMA_A_ROW;
        }
        String gRow = bin("add.s32", t.row0(), row);
        int count = tile.bm() * slice / aw / tile.threads();
        if (g.transposeA()) {   // A is [K, M]: one float of K row kk, column gRow, a copy; the next `down` columns on
            int rowLen = a.shape().cols();
            return new Copies(a, 1, count, kk, 0, Integer.toString(rowLen), bin("add.s32", mad(kk, Integer.toString(rowLen), gRow), Integer.toString(a.offset())),
                    down, gRow, down, t.m(), wideBytes(sharedBytes), sharedStep);
        }
        return new Copies(a, aw, count, kk, 0, "1",
                bin("add.s32", mad(gRow, Integer.toString(g.k()), kk), Integer.toString(a.offset())), down * g.k(), gRow, down, t.m(),
                wideBytes(sharedBytes), sharedStep);
    }

    /**
     * This thread's cp.async copies of one operand per slice: copy l moves {@code width} floats of buf from
     * element kStride·kBase + fixed + l·fixedStep into the stage at sharedBytes + l·sharedStep (bytes), if
     * kBase + kk + l·kkStep is inside K and at + l·atStep (its row or column) is below limit.
     */
    record Copies(Buf buf, int width, int count, String kk, int kkStep, String kStride, String fixed, int fixedStep,
                  String at, int atStep, String limit, String sharedBytes, int sharedStep) {}

    /**
     * Copies of a tile kept K row by K row (a TN GEMM's A, and every B): a chunk is consecutive elements of one
     * K row of buf (rowLen apart in memory), tileCols of them from column origin, padded to stride in shared.
     */
    Copies kRowCopies(Buf buf, int tileCols, int rowLen, String origin, String limit, int stride, String tid) {
        int width = chunkWidth(rowLen, buf.offset()), perRow = tileCols / width, down = tile.threads() / perRow;
        String kk = bin("shr.u32", tid, log2(perRow)), col = bin("shl.b32", bin("and.b32", tid, Integer.toString(perRow - 1)), log2(width));
        String gCol = bin("add.s32", origin, col);
        return new Copies(buf, width, tile.sliceK() * tileCols / width / tile.threads(), kk, down, Integer.toString(rowLen),
                bin("add.s32", mad(kk, Integer.toString(rowLen), gCol), Integer.toString(buf.offset())), down * rowLen, gCol, 0, limit,
                wideBytes(bin("shl.b32", mad(kk, Integer.toString(stride), col), "2")), 4 * down * stride);
    }

    /** 16-byte copies where rows and the offset keep every chunk aligned and whole, else 4-byte ones. */
    static int chunkWidth(int rowLength, int offset) { return rowLength % 4 == 0 && offset % 4 == 0 ? 4 : 1; }

    /** A TN GEMM's A fragment of m tile i at k step ks, from the K-major tile: A(g, t), A(g+8, t), A(g, t+4), A(g+8, t+4). */
    String[] aFragmentTn(String aRead, int ks, int i) {
        String[] af = new String[4];
        for (int e = 0; e < 4; e++) af[e] = sharedB32(aRead, 4 * ((ks + (e >= 2 ? 4 : 0)) * A_STRIDE + 16 * i + (e % 2 == 1 ? 8 : 0)));
        return af;
    }

    /** This lane's fp32 words of A's m16n8k8 fragment for m tile i at k step ks: by ldmatrix (NN) or 32-bit loads (TN). */
    String[] aWords(String aRead, boolean nn, int ks, int i) {
        return nn ? ldmatrix(aRead, 4 * (16 * i * MMA_A_ROW + ks)) : aFragmentTn(aRead, ks, i);
    }

    /** This lane's fp32 words of B's m16n8k8 fragment for n tile j at k step ks: B(t, g), B(t+4, g). */
    String[] bWords(String bRead, int ks, int j) {
        int stride = tile.bStride();
        return new String[]{sharedB32(bRead, 4 * (ks * stride + 8 * j)), sharedB32(bRead, 4 * ((ks + 4) * stride + 8 * j))};
    }

    /**
     * An m16n8k16 bf16 A fragment from the two m16n8k8 fragments of a 16-deep slice. Its K order is the
     * slice's permuted, k_(2t, 2t+1) ↦ (t, t+4) and k_(2t+8, 2t+9) ↦ (t+8, t+12), and {@link #bf16B}
     * permutes B alike, so each product still pairs A and B at the same k; the fp32 fragments'
     * conflict-free loads serve bf16 unchanged. A pair's lower k goes in the lower half.
     */
    String[] bf16A(String[] lo, String[] hi) {
        return new String[]{pack(lo[2], lo[0]), pack(lo[3], lo[1]), pack(hi[2], hi[0]), pack(hi[3], hi[1])};
    }

    /** An m16n8k16 bf16 B fragment: B(t, g) and B(t+4, g), then B(t+8, g) and B(t+12, g), permuted as {@link #bf16A}. */
    String[] bf16B(String[] lo, String[] hi) {
        return new String[]{pack(lo[1], lo[0]), pack(hi[1], hi[0])};
    }

    /** Two fp32 values rounded to bf16 in one register: {@code upper} in the high half, {@code lower} in the low. */
    String pack(String upper, String lower) {
        String v = r();
        op("cvt.rn.bf16x2.f32 " + v + ", " + upper + ", " + lower + ";");
        return v;
    }

    void mmaBf16(String[] acc, String[] a, String[] b) {
        String c = "{" + String.join(", ", acc) + "}";
        op("mma.sync.aligned.m16n8k16.row.col.f32.bf16.bf16.f32 " + c + ", {" + String.join(", ", a) + "}, {" + String.join(", ", b) + "}, " + c + ";");
    }
}
