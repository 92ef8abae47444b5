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

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

/**
 * One GEMM kernel of the cuda backend in the PTX simulator, and on a GPU where there is one, against a float64
 * product, run twice (first on zeros), in both layouts the compiler emits, with shapes that are not multiples of the 128×64 tile: fp32 FMAs and 3xTF32 within 1e-5 of
 * the largest element; TF32 within 5e-3 and bf16 within 2e-2, each further from fp32 than fp32 would be (the
 * inputs really are rounded). Row lengths
 * that are and are not multiples of 4 take the tensor-core GEMMs' 16-byte and 4-byte cp.async paths. Where
 * few tiles would leave the GPU idle, K is split: a TN GEMM over 1,100 rows into 16 slices and over 300 into
 * 4, an NN GEMM with K = 1,030 over 70 rows into 8, and NN GEMMs with K of 130 to 256 over 70 or 130 rows into
 * 2 to 4, each tile's slices summed by its last block.
 */
class GemmKernelTest {
    @ParameterizedTest(name = "{0} transposeA={1} rows={2} k={3} n={4}")
    @CsvSource({"FMA, false, 70, 40, 72", "FMA, true, 70, 70, 72", "TF32, false, 70, 40, 72", "TF32, true, 70, 70, 72", "TF32X3, false, 70, 40, 72",
            "TF32X3, true, 70, 70, 72", "FMA, true, 1100, 1100, 72", "TF32, true, 1100, 1100, 72", "TF32X3, true, 1100, 1100, 72",
            "FMA, false, 70, 1030, 72", "TF32X3, false, 70, 1030, 72", "TF32, false, 130, 64, 70", "TF32X3, true, 300, 300, 70",
            "BF16, false, 70, 40, 72", "BF16, true, 300, 300, 70", "BF16, false, 70, 1030, 72",
            "FMA, false, 70, 256, 72", "TF32X3, false, 130, 200, 70", "TF32, false, 70, 130, 72"})
    void oneGemmAgreesWithFloat64(PtxRenderer.Matmul matmul, boolean transposeA, int batch, int k, int n) {
        assertGemmAgreesWithFloat64(matmul, PtxRenderer.Tiling.NARROW, transposeA, false, batch, k, n);
    }

    /**
     * 128×128 tiles (CMC_CUDA_TILES=wide) in a 2-stage pipeline: eight warps of 64×32 for 3xTF32, four of 64×64
     * for tf32 and bf16. Columns that are not a multiple of 128, both copy widths, split K and each tensor-core
     * arithmetic; a TN GEMM keeps its 128×64 tile.
     */
    @ParameterizedTest(name = "{0} wide transposeA={1} rows={2} k={3} n={4}")
    @CsvSource({"TF32, false, 70, 40, 200", "TF32X3, false, 130, 64, 256", "BF16, false, 70, 40, 136", "TF32, false, 70, 37, 130",
            "TF32X3, false, 70, 1030, 136", "TF32X3, true, 300, 300, 136"})
    void wideTileGemmAgreesWithFloat64(PtxRenderer.Matmul matmul, boolean transposeA, int batch, int k, int n) {
        assertGemmAgreesWithFloat64(matmul, PtxRenderer.Tiling.WIDE, transposeA, false, batch, k, n);
    }

    /**
     * wgmma tiles (CMC_CUDA_TILES=wgmma, sm_90a): two warpgroups of m64n128k8 over A in core matrices, for tf32
     * and 3xTF32. Rows and columns that are not multiples of 128, both copy widths (and so both ways of
     * splitting 3xTF32's heads and remainders in shared memory), split K; TN GEMMs (their A transposed into core
     * matrices on its way), split over K and not, K ending inside a slice; bf16 keeps mma.sync.
     */
    @ParameterizedTest(name = "{0} wgmma transposeA={1} rows={2} k={3} n={4}")
    @CsvSource({"TF32, false, 70, 40, 200", "TF32X3, false, 130, 64, 256", "TF32X3, false, 70, 37, 130", "TF32, false, 200, 37, 136",
            "TF32X3, false, 70, 1030, 136", "TF32, false, 300, 1030, 128", "TF32X3, true, 300, 300, 136", "BF16, false, 70, 40, 136",
            "TF32X3, false, 70, 256, 136", "TF32, true, 70, 70, 130", "TF32X3, true, 70, 70, 200", "TF32, true, 600, 600, 128"})
    void wgmmaTileGemmAgreesWithFloat64(PtxRenderer.Matmul matmul, boolean transposeA, int batch, int k, int n) {
        assertGemmAgreesWithFloat64(matmul, PtxRenderer.Tiling.WGMMA, transposeA, false, batch, k, n);
    }

    /**
     * CMC_CUDA_TILES=wgmma-wide: GEMMs of 256 columns or more in 128×256 tiles, four warpgroups sharing each A
     * slice; narrower ones in 128×128. Columns past the last whole tile, split K (NN and TN), both copy widths,
     * K slices enough to go round both pipelines (6 stages for 3xTF32, 8 for tf32).
     */
    @ParameterizedTest(name = "{0} wgmma-wide transposeA={1} rows={2} k={3} n={4}")
    @CsvSource({"TF32X3, false, 130, 64, 256", "TF32, false, 70, 40, 300", "TF32X3, false, 70, 37, 264", "TF32X3, true, 300, 300, 256",
            "TF32X3, false, 70, 1030, 256", "TF32, true, 70, 70, 260", "TF32, false, 200, 37, 136", "TF32, false, 130, 1030, 256"})
    void wideWgmmaTileGemmAgreesWithFloat64(PtxRenderer.Matmul matmul, boolean transposeA, int batch, int k, int n) {
        assertGemmAgreesWithFloat64(matmul, PtxRenderer.Tiling.WGMMA_WIDE, transposeA, false, batch, k, n);
    }

    /**
     * CMC_CUDA_TILES=wgmma-mixed-early: the mixed tiles, each stage refilled part-way through the slice after
     * its own, behind a second barrier. The simulator retires wgmma groups and lands copies only when waited
     * for, and fails a copy into shared memory that an unretired wgmma still reads: a refill before the slice
     * before's last multiply has retired fails here. 128×128 tiles (split K, K ending inside a slice, TN split
     * and not) and 128×256 ones (1,024+ columns, split K), tf32 and 3xTF32.
     */
    @ParameterizedTest(name = "{0} wgmma-mixed-early transposeA={1} rows={2} k={3} n={4}")
    @CsvSource({"TF32X3, false, 130, 64, 256", "TF32X3, false, 70, 1030, 136", "TF32X3, false, 70, 37, 130", "TF32X3, true, 300, 300, 136",
            "TF32X3, true, 70, 70, 200", "TF32, false, 200, 37, 136", "TF32X3, false, 70, 64, 1030", "TF32X3, false, 130, 600, 1024",
            "TF32, false, 70, 70, 1024"})
    void earlyRefilledWgmmaTileGemmAgreesWithFloat64(PtxRenderer.Matmul matmul, boolean transposeA, int batch, int k, int n) {
        assertGemmAgreesWithFloat64(matmul, PtxRenderer.Tiling.WGMMA_MIXED_EARLY, transposeA, false, batch, k, n);
    }

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
     * CMC_CUDA_TILES=wgmma-wide-early: 128×256 tiles from 256 columns, as the 1M sampler takes them, refilled
     * early (7 stages for 3xTF32, 9 for tf32); 128×128 below.
     */
    @ParameterizedTest(name = "{0} wgmma-wide-early transposeA={1} rows={2} k={3} n={4}")
    @CsvSource({"TF32X3, false, 130, 64, 256", "TF32, false, 70, 200, 300", "TF32X3, true, 300, 300, 256", "TF32X3, false, 70, 1030, 200"})
    void earlyRefilledWideWgmmaTileGemmAgreesWithFloat64(PtxRenderer.Matmul matmul, boolean transposeA, int batch, int k, int n) {
        assertGemmAgreesWithFloat64(matmul, PtxRenderer.Tiling.WGMMA_WIDE_EARLY, transposeA, false, batch, k, n);
    }

    /** CMC_CUDA_TILES=wgmma-nn, the ablation: NN GEMMs in wgmma tiles, TN GEMMs in 128×64 mma.sync ones. */
    @ParameterizedTest(name = "{0} wgmma-nn transposeA={1} rows={2} k={3} n={4}")
    @CsvSource({"TF32X3, true, 300, 300, 136", "TF32X3, false, 130, 64, 256"})
    void wgmmaForNnGemmsOnlyAgreesWithFloat64(PtxRenderer.Matmul matmul, boolean transposeA, int batch, int k, int n) {
        assertGemmAgreesWithFloat64(matmul, PtxRenderer.Tiling.WGMMA_NN, transposeA, false, batch, k, n);
    }

    /**
     * The same in 32-deep slices (CMC_CUDA_TILES=wgmma-deep; tf32 only, 3xTF32 keeps 16-deep ones): K that ends
     * inside a slice, inside its last 8-deep step and on a slice boundary, split K (whose slices are whole 32-deep
     * ones), both copy widths.
     */
    @ParameterizedTest(name = "{0} deep wgmma transposeA={1} rows={2} k={3} n={4}")
    @CsvSource({"TF32, false, 70, 40, 200", "TF32, false, 200, 37, 136", "TF32, false, 130, 64, 256", "TF32, false, 300, 1030, 128",
            "TF32, false, 70, 96, 130", "TF32X3, false, 70, 40, 136", "TF32, true, 300, 300, 136", "TF32, false, 70, 200, 130",
            "TF32, true, 70, 70, 130", "TF32X3, true, 300, 300, 136"})
    void deepWgmmaTileGemmAgreesWithFloat64(PtxRenderer.Matmul matmul, boolean transposeA, int batch, int k, int n) {
        assertGemmAgreesWithFloat64(matmul, PtxRenderer.Tiling.WGMMA_DEEP, transposeA, false, batch, k, n);
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

    /** A program of one GEMM: its A as input "a", its B as parameters "b", its output "out". */
    private static Program program(Kernel.Gemm gemm) {
        return new Program("gemm", List.of(new Program.Array("a", Program.Role.INPUT, gemm.a().shape(), null),
                new Program.Array("b", Program.Role.PARAMS, gemm.b().shape(), null),
                new Program.Array("out", Program.Role.OUTPUT, gemm.domain(), null)), List.of(gemm));
    }

    /** For a simulator launch of {@link #program}'s GEMM alone: the buffer of each parameter, a, b, out as 0 to 2 and any workspace 3. */
    private static int[] bufferOfParam(Kernel.Gemm gemm) {
        List<String> args = dev.cmc.render.Indexing.arguments(gemm);
        int[] params = new int[args.size() + (PtxRenderer.splitsK(gemm) ? 1 : 0)];
        for (int i = 0; i < args.size(); i++) params[i] = List.of("a", "b", "out").indexOf(args.get(i));
        if (PtxRenderer.splitsK(gemm)) params[args.size()] = 3;
        return params;
    }

    private static float[] random(SplittableRandom rng, int count) {
        float[] v = new float[count];
        for (int i = 0; i < v.length; i++) v[i] = (float) (rng.nextDouble() * 2 - 1);
        return v;
    }

    private static void assertGemmAgreesWithFloat64(PtxRenderer.Matmul matmul, PtxRenderer.Tiling tiling, boolean transposeA, boolean fixedRows,
                                                    int batch, int k, int n) {
        int m = transposeA ? n + 78 : batch;
        Buf a = transposeA ? Buf.whole("a", Shape.fixed(k, m)) : Buf.whole("a", fixedRows ? Shape.fixed(m, k) : Shape.batch(k));
        Buf b = transposeA ? Buf.whole("b", Shape.batch(n)) : Buf.whole("b", Shape.fixed(k, n));
        Shape domain = transposeA ? Shape.fixed(m, n) : fixedRows ? Shape.fixed(m, n) : Shape.batch(n);
        Buf out = Buf.whole("out", domain);
        // The epilogue adds 1 so that a split GEMM's last block skipping it, or every block running it, shows.
        var plusOne = new Expr.Binary(dev.cmc.ir.Op.ADD, new Expr.Acc(), new Expr.Const(1));
        var gemm = new Kernel.Gemm("k_mm", transposeA, a, b, k, domain, List.of(new Expr.Let(0, plusOne, out)));
        // A TN GEMM over 300 rows and more splits: one slice per 512 rows, or more to fill the GPU (its few tiles).
        if (transposeA && batch >= 300) {
            int most = PtxRenderer.sumsByCluster(gemm, matmul, tiling) ? PtxRenderer.CLUSTER_SLICES : 16;
            assertEquals(Math.min(most, batch / 64), PtxRenderer.splits(gemm, batch, matmul, tiling), "this case is meant to split K");
        }
        if (k > 1024 && !transposeA) assertEquals(8, PtxRenderer.splits(gemm, batch, matmul, tiling), "this case is meant to split K");
        // Short K (two 64-deep slices or more) over these few rows splits too, in slices at least 64 deep.
        if (k >= 128 && !transposeA && !fixedRows) assertEquals(Math.min(8, k / 64), PtxRenderer.splits(gemm, batch, matmul, tiling), "this case is meant to split K");
        if (tiling == PtxRenderer.Tiling.WIDE) {
            assertEquals(transposeA ? 64 : 128, PtxRenderer.tile(gemm, matmul, tiling).bn(), "wide tiles for NN GEMMs, not TN");
        }
        if (tiling.wgmma()) {
            boolean nnOnly = tiling == PtxRenderer.Tiling.WGMMA_NN;
            assertEquals((!transposeA || !nnOnly) && matmul != PtxRenderer.Matmul.BF16, PtxRenderer.tile(gemm, matmul, tiling).warpgroups(),
                    "wgmma for tf32 and 3xTF32 GEMMs, TN ones too unless wgmma-nn");
            boolean deep = tiling == PtxRenderer.Tiling.WGMMA_DEEP && matmul == PtxRenderer.Matmul.TF32;
            assertEquals(deep ? 32 : 16, PtxRenderer.tile(gemm, matmul, tiling).sliceK(), "32-deep slices for tf32 under wgmma-deep only");
            boolean wide = (tiling == PtxRenderer.Tiling.WGMMA_WIDE || tiling == PtxRenderer.Tiling.WGMMA_WIDE_EARLY) && n >= 256
                    || tiling.mixed() && !transposeA && n >= PtxRenderer.MIXED_WIDE_COLUMNS;
            var tile = PtxRenderer.tile(gemm, matmul, tiling);
            if (tile.warpgroups()) {
                assertEquals(wide ? 256 : 128, tile.bn(), "128x256 tiles from 256 columns under wgmma-wide, for NN GEMMs from 1,024 under the mixed tilings");
                assertEquals(tiling.early(), tile.refillEarly(), "stages refilled early under the early tilings only");
                assertEquals(tiling.clustered() && PtxRenderer.splitsK(gemm), tile.clusterSum(), "split K summed across a cluster under the cluster tilings only");
            }
        }
        var program = program(gemm);
        var rng = new SplittableRandom(7);
        float[] av = new float[m * k], bv = new float[k * n];
        for (int i = 0; i < av.length; i++) av[i] = (float) (rng.nextDouble() * 2 - 1);
        for (int i = 0; i < bv.length; i++) bv[i] = (float) (rng.nextDouble() * 2 - 1);
        // A fixed-row GEMM's slices do not depend on the batch: run it at batch 1.
        int runBatch = fixedRows ? 1 : batch;
        for (Backend backend : backends(matmul, tiling)) {
            float[] got = new float[m * n];
            try (var exe = backend.load(program, runBatch)) {
                // A first run on zeros: a split GEMM that left its tile counters set would not finish the second.
                exe.write("a", new float[av.length], av.length);
                exe.run(runBatch);
                exe.write("a", av, av.length);
                exe.write("b", bv, bv.length);
                exe.run(runBatch);
                exe.read("out", got, got.length);
            }
            double worst = 0, scale = 0;
            for (int r = 0; r < m; r++) {
                for (int c = 0; c < n; c++) {
                    double ref = 1;
                    for (int p = 0; p < k; p++) ref += (double) (transposeA ? av[p * m + r] : av[r * k + p]) * bv[p * n + c];
                    worst = Math.max(worst, Math.abs(ref - got[r * n + c]));
                    scale = Math.max(scale, Math.abs(ref));
                }
            }
            double rel = worst / scale;
            String on = " on " + backend.deviceName();
            if (matmul == PtxRenderer.Matmul.TF32) {
                assertTrue(rel < 5e-3, "TF32 GEMM off by " + rel + " of the largest element" + on);
                assertTrue(rel > 1e-6, "TF32 GEMM matches fp32 too closely (" + rel + "): are the inputs rounded?" + on);
            } else if (matmul == PtxRenderer.Matmul.BF16) {
                assertTrue(rel < 2e-2, "bf16 GEMM off by " + rel + " of the largest element" + on);
                assertTrue(rel > 2e-4, "bf16 GEMM matches fp32 too closely (" + rel + "): are the inputs rounded?" + on);
            } else {
                assertTrue(rel < 1e-5, matmul + " GEMM off by " + rel + " of the largest element" + on);
            }
        }
    }

    /**
     * The PTX simulator, and where this machine has one, the GPU (cuda:0; for wgmma tiles, only a compute capability 9.0 one):
     * on a lent GPU these cases check each tiling and arithmetic on the hardware with their exact shapes.
     */
    private static List<Backend> backends(PtxRenderer.Matmul matmul, PtxRenderer.Tiling tiling) {
        var out = new java.util.ArrayList<Backend>(List.of(new SimulatedCudaBackend(matmul, tiling)));
        var gpus = CudaDevices.list();
        if (!gpus.isEmpty() && gpus.getFirst().major() >= 8 && (!tiling.wgmma() || gpus.getFirst().major() == 9)) {
            out.add(new CudaBackend(0).withMatmul(matmul).withTiling(tiling));
        }
        return out;
    }

    /**
     * The GEMMs' shared-memory loads need no more passes through the banks than their width does: every
     * fragment, ldmatrix row and register-tile load of each arithmetic and layout is conflict-free (the
     * simulator counts what a warp's lanes address together).
     */
    @ParameterizedTest(name = "{0} transposeA={1} {2}")
    @CsvSource({"FMA, false, NARROW", "FMA, true, NARROW", "TF32, false, NARROW", "TF32, true, NARROW", "TF32X3, false, NARROW",
            "TF32X3, true, NARROW", "BF16, false, NARROW", "BF16, true, NARROW", "TF32, false, WIDE", "TF32X3, false, WIDE", "BF16, false, WIDE",
            "TF32, false, WGMMA", "TF32X3, false, WGMMA", "TF32, true, WGMMA", "TF32X3, true, WGMMA", "TF32X3, false, WGMMA_WIDE",
            "TF32, true, WGMMA_WIDE"})
    void sharedLoadsAreConflictFree(PtxRenderer.Matmul matmul, boolean transposeA, PtxRenderer.Tiling tiling) {
        int batch = 130, k = transposeA ? batch : 64, m = transposeA ? 136 : batch;
        int n = tiling == PtxRenderer.Tiling.WGMMA_WIDE ? 264 : tiling != PtxRenderer.Tiling.NARROW ? 136 : 72;
        Buf a = transposeA ? Buf.whole("a", Shape.fixed(k, m)) : Buf.whole("a", Shape.batch(k));
        Buf b = transposeA ? Buf.whole("b", Shape.batch(n)) : Buf.whole("b", Shape.fixed(k, n));
        Shape domain = transposeA ? Shape.fixed(m, n) : Shape.batch(n);
        var gemm = new Kernel.Gemm("k_mm", transposeA, a, b, k, domain, List.of(new Expr.Let(0, new Expr.Acc(), Buf.whole("out", domain))));
        var program = program(gemm);
        var sim = new PtxSimulator(PtxRenderer.render(program, "banks", "sm_90", matmul, tiling));
        if (tiling != PtxRenderer.Tiling.NARROW) {
            assertEquals(tiling == PtxRenderer.Tiling.WGMMA_WIDE ? 256 : 128, PtxRenderer.tile(gemm, matmul, tiling).bn(), "this case is meant to be wide");
        }
        sim.countBankConflicts = true;
        float[][] buffers = {new float[m * k], new float[k * n], new float[m * n], new float[(int) Math.max(1, PtxRenderer.workspaceFloats(gemm, batch, matmul, tiling))]};
        int[] params = bufferOfParam(gemm);
        var l = PtxRenderer.launch(gemm, batch, matmul, tiling);
        sim.launch(PtxRenderer.kernelName(program, 0), l.gridX(), l.gridY(), l.gridZ(), l.block(), l.sharedBytes(), buffers, params, batch);
        assertConflictFree(sim, 2);
    }

    /** At least the given number of shared loads counted, each in no more passes through the banks than its width needs. */
    private static void assertConflictFree(PtxSimulator sim, int loads) {
        assertTrue(sim.sharedLoadWavefronts.size() >= loads, "no shared loads counted: " + sim.sharedLoadWavefronts.keySet());
        for (var e : sim.sharedLoadWavefronts.entrySet()) {
            assertEquals(e.getValue()[1], e.getValue()[0], "bank conflicts: " + e.getKey() + " takes " + e.getValue()[0] + " passes, not " + e.getValue()[1]);
        }
    }

    /**
     * A fused MLP block's shared-memory loads (ldmatrix rows of the normalised rows and of the hidden chunk, the
     * weights' B fragments) are conflict-free too, at both widths it takes.
     */
    @ParameterizedTest(name = "fused MLP {0} h={1}")
    @CsvSource({"TF32, 128", "TF32, 256", "TF32X3, 256"})
    void fusedMlpSharedLoadsAreConflictFree(PtxRenderer.Matmul matmul, int h) {
        var spec = dev.cmc.dsl.SpecLoader.fromText("mlp.cm", "model m { input_dim = 5; hidden_size = " + h + "; num_layers = 1; }\n"
                + "data { source = \"builtin:none\"; }");
        Program program = PtxRenderer.fuseMlps(dev.cmc.compile.Compiler.sampler(spec).program(), matmul);
        int index = 0, batch = 130;
        while (!(program.kernels().get(index) instanceof Kernel.Mlp)) index++;
        Kernel mlp = program.kernels().get(index);
        var sim = new PtxSimulator(PtxRenderer.render(program, "banks", "sm_90", matmul));
        sim.countBankConflicts = true;
        List<String> args = dev.cmc.render.Indexing.arguments(mlp);
        float[][] buffers = new float[args.size()][];
        var rng = new SplittableRandom(1);
        for (int i = 0; i < args.size(); i++) {
            buffers[i] = new float[(int) program.array(args.get(i)).size(batch)];
            for (int j = 0; j < buffers[i].length; j++) buffers[i][j] = (float) rng.nextGaussian();
        }
        var l = PtxRenderer.launch(mlp, batch, matmul, PtxRenderer.Tiling.NARROW);
        sim.launch(PtxRenderer.kernelName(program, index), l.gridX(), l.gridY(), l.gridZ(), l.block(), l.sharedBytes(), buffers,
                java.util.stream.IntStream.range(0, args.size()).toArray(), batch);
        assertConflictFree(sim, 3);
    }
}
