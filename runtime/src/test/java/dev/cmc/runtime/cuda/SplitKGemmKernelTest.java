package dev.cmc.runtime.cuda;

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

import static dev.cmc.runtime.cuda.GemmKernelTest.assertGemmAgreesWithFloat64;
import static dev.cmc.runtime.cuda.GemmKernelTest.backends;
import static dev.cmc.runtime.cuda.GemmKernelTest.bufferOfParam;
import static dev.cmc.runtime.cuda.GemmKernelTest.program;
import static dev.cmc.runtime.cuda.GemmKernelTest.random;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

/**
 * GEMMs that split K, in the PTX simulator and on a GPU where there is one: where few tiles would leave the GPU
 * idle, K is cut into slices, and each tile's slices are summed by its last block (through a workspace) or across
 * a thread block cluster. Every slice count the host may launch sums its slices; every variant of the mixed
 * tiling gives the serial sum's result bit for bit; GEMMs over fixed rows split too; two split GEMMs of one
 * program keep their own counters. The tiles themselves are GemmKernelTest's.
 */
class SplitKGemmKernelTest {
    /**
     * CMC_CUDA_TILES=wgmma-mixed-cluster and wgmma-mixed-early-cluster: split K summed across a cluster of the
     * tile's slices, launched so by the runtime (here its simulated form): NN GEMMs split over a long K, TN ones
     * over the batch, 128×128 and 128×256 tiles, rows and columns past the last whole tile, tf32 and 3xTF32.
     */
    @ParameterizedTest(name = "{0} {1} transposeA={2} rows={3} k={4} n={5}")
    @CsvSource({"TF32X3, WGMMA_MIXED_CLUSTER, false, 70, 1030, 136", "TF32X3, WGMMA_MIXED_CLUSTER, true, 300, 300, 200",
            "TF32, WGMMA_MIXED_CLUSTER, false, 130, 600, 1024", "TF32X3, WGMMA_MIXED_EARLY_CLUSTER, false, 130, 200, 136",
            "TF32X3, WGMMA_MIXED_EARLY_CLUSTER, true, 600, 600, 136"})
    void clusterSummedWgmmaTileGemmAgreesWithFloat64(PtxRenderer.Matmul matmul, PtxRenderer.Tiling tiling, boolean transposeA, int batch, int k, int n) {
        assertGemmAgreesWithFloat64(matmul, tiling, transposeA, false, batch, k, n);
    }

    /**
     * Every variant of the mixed tiling gives its result bit for bit, which is what lets the runtime pick among
     * them by time alone (CMC_CUDA_TUNE_TILES=1, see PtxRenderer.Tiling#variants): a tile's K slices summed across
     * its cluster give the serial sum's result (the same partials, added in the same order, z = 0, 1, …, through
     * the same epilogue: a bias, and for NN a residual), stages refilled a trip sooner change when copies land,
     * not what is multiplied, and 128×128 tiles in place of 128×256 run the same wgmma on the same operands; at
     * every slice count a cluster may hold, in 128×128 and 128×256 tiles whose last rows and columns lie outside
     * the output. Launched directly in the simulator with that grid depth, for a cluster
     * variant a cluster of all of it.
     */
    @ParameterizedTest(name = "{0} with {1} slices, transposeA={2}, k={3}, {4} columns")
    @CsvSource({"TF32X3, 2, false, 300, 136", "TF32X3, 3, false, 1030, 200", "TF32, 5, false, 1030, 1024", "TF32X3, 8, false, 1030, 136",
            "TF32X3, 8, true, 1024, 200", "TF32, 6, true, 1024, 136"})
    void everyVariantOfTheMixedTilingSumsBitForBitAlike(PtxRenderer.Matmul matmul, int slices, boolean transposeA, int k, int n) {
        // TN: a weight gradient of 136 rows (fewer than a tile's take 128x64 mma.sync tiles under the mixed tilings).
        int batch = transposeA ? k : 130, m = transposeA ? 136 : batch;
        Buf a = transposeA ? Buf.whole("a", Shape.fixed(k, m)) : Buf.whole("a", Shape.batch(k));
        Buf b = transposeA ? Buf.whole("b", Shape.batch(n)) : Buf.whole("b", Shape.fixed(k, n));
        Shape domain = transposeA ? Shape.fixed(m, n) : Shape.batch(n);
        Buf out = Buf.whole("out", domain);
        Expr epilogue = new Expr.Binary(dev.cmc.ir.Op.ADD, new Expr.Acc(), new Expr.Load(new Buf("b", 0, Shape.fixed(1, n))));
        if (!transposeA) epilogue = new Expr.Binary(dev.cmc.ir.Op.ADD, epilogue, new Expr.Load(a));
        var gemm = new Kernel.Gemm("k_mm", transposeA, a, b, k, domain, List.of(new Expr.Let(0, epilogue, out)));
        var program = program(gemm);
        var serialTiling = PtxRenderer.Tiling.WGMMA_MIXED;
        var tilings = new java.util.ArrayList<>(List.of(serialTiling));
        tilings.addAll(serialTiling.variants());
        assertEquals(List.of(PtxRenderer.Tiling.WGMMA_MIXED_EARLY, PtxRenderer.Tiling.WGMMA_MIXED_CLUSTER, PtxRenderer.Tiling.WGMMA_MIXED_EARLY_CLUSTER,
                PtxRenderer.Tiling.WGMMA), serialTiling.variants());
        assertTrue(PtxRenderer.sumsByCluster(gemm, matmul, PtxRenderer.Tiling.WGMMA_MIXED_CLUSTER) && !PtxRenderer.sumsByCluster(gemm, matmul, serialTiling));
        assertEquals(0, PtxRenderer.workspaceFloats(gemm, batch, matmul, PtxRenderer.Tiling.WGMMA_MIXED_CLUSTER), "a cluster's sum takes no workspace");
        var rng = new SplittableRandom(5);
        float[] av = random(rng, k * m), bv = random(rng, k * n);
        float[][] got = new float[tilings.size()][m * n];
        int[] params = bufferOfParam(gemm);
        for (int t = 0; t < tilings.size(); t++) {
            var tiling = tilings.get(t);
            boolean cluster = PtxRenderer.sumsByCluster(gemm, matmul, tiling);
            float[][] buffers = {av, bv, got[t], new float[(int) Math.max(1, PtxRenderer.workspaceFloats(gemm, batch, matmul, tiling))]};
            var sim = new PtxSimulator(PtxRenderer.render(program, "variants", "sm_90", matmul, tiling));
            var l = PtxRenderer.launch(gemm, batch, matmul, tiling);
            boolean wide = tiling.mixed() && n >= PtxRenderer.MIXED_WIDE_COLUMNS && !transposeA;   // wgmma's 128x128 tiles throughout
            assertEquals(wide ? 256 : 128, PtxRenderer.tile(gemm, matmul, tiling).bn());
            java.util.Arrays.fill(got[t], Float.NaN);
            sim.launch(PtxRenderer.kernelName(program, 0), l.gridX(), l.gridY(), slices, cluster ? slices : 1, l.block(), l.sharedBytes(), buffers, params, batch);
            for (int i = 0; t > 0 && i < m * n; i++) {
                assertEquals(Float.floatToRawIntBits(got[0][i]), Float.floatToRawIntBits(got[t][i]),
                        "out(" + i / n + ", " + i % n + "): " + got[t][i] + " in " + tiling.setting + " tiles, " + got[0][i] + " in " + serialTiling.setting);
            }
        }
        double worst = 0;
        for (int r = 0; r < m; r++) {
            for (int c = 0; c < n; c++) {
                double ref = bv[c] + (transposeA ? 0 : av[r * k + c]);
                for (int p = 0; p < k; p++) ref += transposeA ? (double) av[p * m + r] * bv[p * n + c] : (double) av[r * k + p] * bv[p * n + c];
                worst = Math.max(worst, Math.abs(ref - got[0][r * n + c]));
            }
        }
        assertTrue(worst < (matmul == PtxRenderer.Matmul.TF32 ? 5e-3 * Math.sqrt(k / 3.0) : 1e-5 * k), "off by " + worst);
    }

    /** A cluster-summed GEMM launched with its slices but not as their cluster traps, rather than sum other tiles' partials or none. */
    @org.junit.jupiter.api.Test
    void clusterSumLaunchedWithoutItsClusterTraps() {
        int batch = 130, k = 1030, n = 136;
        Buf a = Buf.whole("a", Shape.batch(k)), out = Buf.whole("out", Shape.batch(n));
        var gemm = new Kernel.Gemm("k_mm", false, a, Buf.whole("b", Shape.fixed(k, n)), k, out.shape(), List.of(new Expr.Let(0, new Expr.Acc(), out)));
        var program = program(gemm);
        var tiling = PtxRenderer.Tiling.WGMMA_MIXED_CLUSTER;
        var sim = new PtxSimulator(PtxRenderer.render(program, "cluster", "sm_90", PtxRenderer.Matmul.TF32X3, tiling));
        var l = PtxRenderer.launch(gemm, batch, PtxRenderer.Matmul.TF32X3, tiling);
        float[][] buffers = {new float[batch * k], new float[k * n], new float[batch * n], new float[1]};
        var e = assertThrows(IllegalStateException.class, () -> sim.launch(PtxRenderer.kernelName(program, 0), l.gridX(), l.gridY(), 4, 1, l.block(),
                l.sharedBytes(), buffers, bufferOfParam(gemm), batch));
        assertTrue(e.getMessage().contains("trap"), e.getMessage());
    }

    /**
     * An NN GEMM over fixed rows with a long K (an embedding's weight gradient over a σ table of 1,030 rows) is
     * cut into eight K slices too, whatever the batch.
     */
    @ParameterizedTest(name = "{0} fixed rows={1} k={2}")
    @CsvSource({"FMA, 70, 1030", "TF32X3, 200, 1030", "BF16, 1, 1030"})
    void fixedRowGemmWithLongKSplitsK(PtxRenderer.Matmul matmul, int rows, int k) {
        assertGemmAgreesWithFloat64(matmul, PtxRenderer.Tiling.NARROW, false, true, rows, k, 72);
    }

    /**
     * So is one over a few fixed rows with a shorter K, which would leave most of the GPU idle unsplit: the σ
     * table's embedding (150 rows, K = 256, 256 columns) in 4 slices, in wgmma tiles as at 4,096 rows and in
     * 128×64 ones.
     */
    @ParameterizedTest(name = "{0} {1} fixed rows={2} k={3} n={4}")
    @CsvSource({"TF32X3, WGMMA, 150, 256, 256", "TF32, NARROW, 150, 256, 136", "FMA, NARROW, 70, 200, 72"})
    void fixedRowGemmWithFewTilesSplitsK(PtxRenderer.Matmul matmul, PtxRenderer.Tiling tiling, int rows, int k, int n) {
        Buf a = Buf.whole("a", Shape.fixed(rows, k)), out = Buf.whole("out", Shape.fixed(rows, n));
        var gemm = new Kernel.Gemm("k_mm", false, a, Buf.whole("b", Shape.fixed(k, n)), k, out.shape(), List.of(new Expr.Let(0, new Expr.Acc(), out)));
        assertEquals(Math.min(8, k / 64), PtxRenderer.splits(gemm, 4096, matmul, tiling), "this case is meant to split K");
        assertGemmAgreesWithFloat64(matmul, tiling, false, true, rows, k, n);
    }

    /**
     * Two split GEMMs of one program, run twice: each keeps its tile counters in a workspace of its own, so that
     * one's slices are never read as the other's counters (weight gradients of different shapes, as in a step).
     */
    @org.junit.jupiter.api.Test
    void splitGemmsOfOneProgramKeepTheirOwnCounters() {
        int batch = 1100, n = 72;
        int[] widths = {40, 300};
        var arrays = new java.util.ArrayList<Program.Array>(List.of(new Program.Array("b", Program.Role.INPUT, Shape.batch(n), null)));
        var gemms = new java.util.ArrayList<Kernel>();
        for (int g = 0; g < widths.length; g++) {
            Buf a = Buf.whole("a" + g, Shape.batch(widths[g])), out = Buf.whole("out" + g, Shape.fixed(widths[g], n));
            arrays.add(new Program.Array("a" + g, Program.Role.INPUT, a.shape(), null));
            arrays.add(new Program.Array("out" + g, Program.Role.OUTPUT, out.shape(), null));
            gemms.add(new Kernel.Gemm("k_mm" + g, true, a, Buf.whole("b", Shape.batch(n)), Shape.BATCH, out.shape(), List.of(new Expr.Let(0, new Expr.Acc(), out))));
            assertEquals(16, PtxRenderer.splits((Kernel.Gemm) gemms.getLast(), batch, PtxRenderer.Matmul.FMA, PtxRenderer.Tiling.NARROW),
                    "this case is meant to split K");
        }
        var program = new Program("gemms", arrays, gemms);
        var rng = new SplittableRandom(3);
        float[] bv = random(rng, batch * n);
        float[][] av = {random(rng, batch * widths[0]), random(rng, batch * widths[1])};
        for (Backend backend : backends(PtxRenderer.Matmul.FMA, PtxRenderer.Tiling.NARROW)) {
            try (var exe = backend.load(program, batch)) {
                exe.write("b", bv, bv.length);
                for (int g = 0; g < widths.length; g++) exe.write("a" + g, av[g], av[g].length);
                exe.run(batch);
                exe.run(batch);
                for (int g = 0; g < widths.length; g++) {
                    float[] got = new float[widths[g] * n];
                    exe.read("out" + g, got, got.length);
                    for (int r = 0; r < widths[g]; r++) {
                        for (int c = 0; c < n; c++) {
                            double ref = 0;
                            for (int p = 0; p < batch; p++) ref += (double) av[g][p * widths[g] + r] * bv[p * n + c];
                            assertEquals(ref, got[r * n + c], 1e-4 * batch, "out" + g + "(" + r + ", " + c + ") on " + backend.deviceName());
                        }
                    }
                }
            }
        }
    }

    /**
     * Every slice count the host can launch, not only the 8 that small batches get: the kernels read the count
     * from the grid's depth, so 2 to 7 slices of an NN GEMM (4,096 rows get 4, 8,192 get 2) run the same code
     * with other chunk sizes, K = 1,030 leaving the last slice short; a TN GEMM over 8,192 rows and more takes
     * 16, which its last blocks load in batches of 4, and a small one (at most 256×256 outputs) may be timed
     * at 24 and 32 slices over 4,096 rows (PtxRenderer.splitChoices), whose partials its workspace holds. Rows
     * of 72 columns are summed 4 at a time by 16-byte loads, rows of 70 one at a time. Launched directly in
     * the simulator with that grid depth, since the batches that pick them are too large to simulate; each run
     * twice, so that a tile counter left set shows. Their epilogue loads a bias and (NN) a residual, as a
     * down-projection's does.
     */
    @ParameterizedTest(name = "{0} with {1} slices, transposeA={2}, {3} columns")
    @CsvSource({"FMA, 3, false, 72", "FMA, 7, false, 72", "TF32X3, 2, false, 72", "TF32X3, 5, false, 72", "TF32X3, 6, false, 70",
            "FMA, 16, true, 72", "TF32X3, 12, true, 70", "TF32, 16, true, 70", "TF32X3, 24, true, 72", "TF32X3, 32, true, 70"})
    void everySliceCountTheHostLaunchesSumsItsSlices(PtxRenderer.Matmul matmul, int slices, boolean transposeA, int n) {
        // TN: K is the batch, 2,048 rows, which 32, 16 and 12 slices cut into whole 16-deep steps (24: 4,096 rows,
        // since at 2,048 its last slice would be empty).
        int batch = transposeA ? (slices == 24 ? 4096 : 2048) : 130, k = transposeA ? batch : 1030, m = transposeA ? 70 : batch;
        Buf a = transposeA ? Buf.whole("a", Shape.fixed(k, m)) : Buf.whole("a", Shape.batch(k));
        Buf b = transposeA ? Buf.whole("b", Shape.batch(n)) : Buf.whole("b", Shape.fixed(k, n));
        Shape domain = transposeA ? Shape.fixed(m, n) : Shape.batch(n);
        Buf out = Buf.whole("out", domain);
        // The epilogue loads too: B's first row as a bias, and for NN A's element (row, col) as a residual, which
        // the last block issues with its slices' loads (PtxFunction.preload) and must take at the element it sums.
        Expr epilogue = new Expr.Binary(dev.cmc.ir.Op.ADD, new Expr.Acc(), new Expr.Const(1));
        epilogue = new Expr.Binary(dev.cmc.ir.Op.ADD, epilogue, new Expr.Load(new Buf("b", 0, Shape.fixed(1, n))));
        if (!transposeA) epilogue = new Expr.Binary(dev.cmc.ir.Op.ADD, epilogue, new Expr.Load(a));
        var gemm = new Kernel.Gemm("k_mm", transposeA, a, b, k, domain, List.of(new Expr.Let(0, epilogue, out)));
        var program = program(gemm);
        assertTrue(PtxRenderer.splitsK(gemm), "this case is meant to split K");
        var rng = new SplittableRandom(11);
        float[] av = random(rng, k * m), bv = random(rng, k * n), got = new float[m * n];
        // The workspace sized for the largest batch holds the most slices, so it holds fewer too.
        float[][] buffers = {av, bv, got, new float[(int) PtxRenderer.workspaceFloats(gemm, transposeA ? 1 << 16 : batch, matmul, PtxRenderer.Tiling.NARROW)]};
        int[] params = bufferOfParam(gemm);
        var sim = new PtxSimulator(PtxRenderer.render(program, "slices", "sm_90", matmul));
        var l = PtxRenderer.launch(gemm, batch, matmul, PtxRenderer.Tiling.NARROW);
        for (int run = 0; run < 2; run++) {
            java.util.Arrays.fill(got, Float.NaN);
            sim.launch(PtxRenderer.kernelName(program, 0), l.gridX(), l.gridY(), slices, l.block(), l.sharedBytes(), buffers, params, batch);
            for (int r = 0; r < m; r++) {
                for (int c = 0; c < n; c++) {
                    double ref = 1 + bv[c] + (transposeA ? 0 : av[r * k + c]);
                    for (int p = 0; p < k; p++) ref += transposeA ? (double) av[p * m + r] * bv[p * n + c] : (double) av[r * k + p] * bv[p * n + c];
                    // TF32: 5e-3 of the sums' scale (√(K/3) for products of uniforms on [-1, 1]).
                    double tolerance = matmul == PtxRenderer.Matmul.TF32 ? 5e-3 * Math.sqrt(k / 3.0) : 1e-5 * k;
                    assertEquals(ref, got[r * n + c], tolerance, "out(" + r + ", " + c + "), run " + (run + 1) + " of " + slices + " slices");
                }
            }
        }
    }
}
