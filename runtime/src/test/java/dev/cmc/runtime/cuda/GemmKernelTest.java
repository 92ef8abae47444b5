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
import static org.junit.jupiter.api.Assertions.assertTrue;

/**
 * One GEMM kernel of the cuda backend in the PTX simulator, and on a GPU where there is one, against a float64
 * product, run twice (first on zeros), in both layouts the compiler emits, with shapes that are not multiples of the 128×64 tile: fp32 FMAs and 3xTF32 within 1e-5 of
 * the largest element; TF32 within 5e-3 and bf16 within 2e-2, each further from fp32 than fp32 would be (the
 * inputs really are rounded). Row lengths
 * that are and are not multiples of 4 take the tensor-core GEMMs' 16-byte and 4-byte cp.async paths. Where
 * few tiles would leave the GPU idle, K is split: a TN GEMM over 1,100 rows into 16 slices and over 300 into
 * 4, an NN GEMM with K = 1,030 over 70 rows into 8, and NN GEMMs with K of 130 to 256 over 70 or 130 rows into
 * 2 to 4, each tile's slices summed by its last block. SplitKGemmKernelTest takes the slice counts, their sums and
 * the GEMMs over fixed rows further. Its helpers here are package-private for that.
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

    /** A program of one GEMM: its A as input "a", its B as parameters "b", its output "out". */
    static Program program(Kernel.Gemm gemm) {
        return new Program("gemm", List.of(new Program.Array("a", Program.Role.INPUT, gemm.a().shape(), null),
                new Program.Array("b", Program.Role.PARAMS, gemm.b().shape(), null),
                new Program.Array("out", Program.Role.OUTPUT, gemm.domain(), null)), List.of(gemm));
    }

    /** For a simulator launch of {@link #program}'s GEMM alone: the buffer of each parameter, a, b, out as 0 to 2 and any workspace 3. */
    static int[] bufferOfParam(Kernel.Gemm gemm) {
        List<String> args = dev.cmc.render.Indexing.arguments(gemm);
        int[] params = new int[args.size() + (PtxRenderer.splitsK(gemm) ? 1 : 0)];
        for (int i = 0; i < args.size(); i++) params[i] = List.of("a", "b", "out").indexOf(args.get(i));
        if (PtxRenderer.splitsK(gemm)) params[args.size()] = 3;
        return params;
    }

    static float[] random(SplittableRandom rng, int count) {
        float[] v = new float[count];
        for (int i = 0; i < v.length; i++) v[i] = (float) (rng.nextDouble() * 2 - 1);
        return v;
    }

    static void assertGemmAgreesWithFloat64(PtxRenderer.Matmul matmul, PtxRenderer.Tiling tiling, boolean transposeA, boolean fixedRows,
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
    static List<Backend> backends(PtxRenderer.Matmul matmul, PtxRenderer.Tiling tiling) {
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
