package dev.cmc.render;

import dev.cmc.ir.Op;
import dev.cmc.ir.Shape;
import dev.cmc.kernel.*;
import dev.cmc.kernel.Expr.Let;

import java.util.HashMap;
import java.util.List;
import java.util.Map;

/**
 * Kernel IR to PTX (ISA 8.0, sm_80 or sm_90), written directly: no nvcc, no NVRTC. Kernels run in 256-thread
 * blocks (GEMMs as their {@link Tile} says), shaped for a GPU:
 * <ul>
 *   <li>GEMMs: a 128×64 output tile per block, 16 deep in K per step. On the FMA units: A and B staged through
 *       registers into double-buffered shared memory, each thread an 8×8 register tile. On the tensor cores
 *       (3xTF32 for fp32, tf32, bf16): a 3-stage cp.async pipeline, each warp 64×32 as 4×4 mma.sync tiles, an
 *       NN GEMM's A fragments by ldmatrix; optionally ({@link Tiling#WIDE}) 128×128 tiles in a 2-stage
 *       pipeline for the tensor-core GEMMs with 128+ columns (8 warps of 64×32 for 3xTF32, 4 of 64×64 for
 *       tf32 and bf16); or ({@link Tiling#WGMMA}, sm_90a) Hopper's warpgroup wgmma for tf32 and 3xTF32. The fused
 *       epilogue runs on the registers before anything is stored. GEMMs with few output tiles (weight
 *       gradients, where K is the batch; long-K GEMMs over small batches) are split over K into workspace
 *       slices, so they fill the GPU; each tile's last block to finish sums its slices in order.</li>
 *   <li>Row normalisations and row sums: one warp per row, lanes striding the columns, sums by butterfly
 *       shuffles; the epilogue (LayerNorm's affine, a residual, a loss term) runs in the same pass.</li>
 *   <li>Batch reductions: 32 columns × 8 row slices per block, slices summed in order through shared memory.</li>
 *   <li>Elementwise kernels, transposes and the Adam + EMA pass: one thread per element. A segment sum (the
 *       σ embedding's gradient, group by group): one thread per output element, its group's rows in order.</li>
 * </ul>
 * Transcendentals use the hardware's ex2/lg2/sin/cos units with range reduction where it matters; the
 * results agree with the float64 reference to ~1e-6 relative, not bit for bit with the other backends.
 */
public final class PtxRenderer {
    public static final int BLOCK = 256;
    private static final int WARPS = BLOCK / 32;
    /** Rows per trip of a batch reduction's loop. */
    private static final int UNROLL = 8;
    /** GEMM block tile (BM×BN outputs); shared rows padded so that a warp's fragment reads hit 32 different banks. */
    private static final int BM = 128, BN = 64, A_STRIDE = BM + 8, B_STRIDE = BN + 8;
    /**
     * K depth of a GEMM's slice, FMA and tensor-core alike; split-K cuts K into whole multiples of it.
     * The tensor-core GEMMs' pipeline: STAGES slices filled by cp.async, so that two slices are
     * in flight while the third is computed. An NN GEMM's A slice is kept row by row (MMA_A_ROW floats: 16 of
     * K and a pad that spreads a fragment's 8 rows over all banks and keeps every row 16-byte aligned for
     * ldmatrix); a TN GEMM's A and every B are kept K row by K row, padded like the FMA tiles.
     */
    private static final int SLICE_K = 16, STAGES = 3, MMA_A_ROW = SLICE_K + 4;
    /** A tensor-core GEMM warp's m16n8 tiles down (16×4 = 64 rows) and, by default, across (8×4 = 32 columns). */
    private static final int WARP_M_TILES = 4, WARP_N_TILES = 4;
    /**
     * The wgmma GEMMs: threads per warpgroup; the bytes of one stage's 128×16 A slice, kept as wgmma's core
     * matrices (8 rows × 16 bytes, 128 contiguous bytes each), the 4 of a row group side by side in K
     * (LBO = 128 bytes apart) and the 16 row groups one after another (SBO = 512 bytes apart).
     */
    private static final int WARPGROUP = 128, WG_A_STAGE_BYTES = BM * SLICE_K * 4, WG_LBO = 128, WG_SBO = 4 * WG_LBO;
    /** wgmma's pipeline: slices s+1 and s+2 copied while s is issued and s-1 still multiplied; s-2's stage refilled. */
    private static final int WG_STAGES = 4;
    private static final String DYNAMIC_SHARED = "dsmem";
    /**
     * Split K, so that GEMMs with few output tiles still fill the GPU. A TN GEMM (K = the batch) is cut into one
     * K slice per 512 rows, at most 16. An NN GEMM with K of 1024+ is cut into as many slices as bring its
     * 128×64 tiles to about FILL_BLOCKS blocks (four 128-thread blocks on each of 132 SMs), at most 8; over fixed
     * rows (at most 512), into 8.
     */
    private static final int SPLIT_ROWS = 512, MAX_SPLITS = 16, LONG_K = 1024, FEW_ROWS = 512, NN_SPLITS = 8, FILL_BLOCKS = 512;
    private static final String WORKSPACE = "workspace";

    /**
     * A fused MLP block ({@link Fn#mlp}): 128 rows per block in 512 threads; the hidden activation made 64 columns
     * at a time; the weights streamed through a 4-stage cp.async pipeline in slices of 2048 floats (32 K rows of
     * the up-projection's 64 columns, or 2048/h K rows of the down-projection's h columns), one 16-byte copy per
     * thread each.
     */
    public static final int MLP_ROWS = 128;
    private static final int MLP_THREADS = 512, MLP_CHUNK = 64, MLP_UP_K = 32, MLP_STAGES = 4,
            MLP_SLICE = MLP_THREADS * 4;

    /**
     * A launch: grid dimensions, threads per block ({@link #BLOCK}, or a GEMM tile's {@link Tile#threads}) and
     * bytes of dynamic shared memory (the wgmma GEMMs' pipeline, a fused MLP block's tiles; 0 for every other kernel).
     */
    public record Launch(int gridX, int gridY, int gridZ, int block, int sharedBytes) {
        Launch(int gridX, int gridY, int gridZ) { this(gridX, gridY, gridZ, BLOCK, 0); }
    }

    /**
     * A tensor-core GEMM's block tile: bm×bn outputs, one warp per 64×(8·warpNTiles) of it, fed by a cp.async
     * pipeline of {@code stages} slices.
     * <ul>
     *   <li>NARROW, the default: 128×64, 4 warps of 64×32, 3 stages.</li>
     *   <li>WIDE, for 3xTF32: 128×128, 8 warps of 64×32, 2 stages. Each A slice in shared memory serves twice the
     *       columns (half the re-reads of A from L2 across a row of blocks); two stages keep its 37 KB of
     *       shared memory under the 48 KB a kernel may declare statically.</li>
     *   <li>WIDE_WARPS, for tf32 and bf16: the same 128×128 block as 4 warps of 64×64. A warp loads each B
     *       fragment once for 4 mma and each A fragment once for 8, one shared-memory wavefront per mma
     *       instead of 1.5: with one mma per fragment pair (not 3xTF32's three), a 64×32 warp's loads take an
     *       estimated 75% of the SM's shared-memory bandwidth at the tensor cores' rate, this 50%.</li>
     *   <li>WGMMA, for tf32 and 3xTF32 on sm_90a: 128×128 as two warpgroups, each computing 64 output columns for
     *       all 128 rows with wgmma.mma_async, 4 stages in dynamic shared memory (see {@link Fn#gemmWgmma}).</li>
     * </ul>
     */
    public record Tile(int bm, int bn, int stages, int warpNTiles, boolean warpgroups) {
        public static final Tile NARROW = new Tile(BM, BN, STAGES, WARP_N_TILES, false), WIDE = new Tile(BM, 2 * BN, 2, WARP_N_TILES, false),
                WIDE_WARPS = new Tile(BM, 2 * BN, 2, 2 * WARP_N_TILES, false), WGMMA = new Tile(BM, 2 * BN, WG_STAGES, 0, true);

        public int threads() { return warpgroups ? 2 * WARPGROUP : bm / (16 * WARP_M_TILES) * (bn / (8 * warpNTiles)) * 32; }

        /**
         * Dynamic shared memory of a wgmma tile: per stage, A's 128×16 slice as core matrices (twice for 3xTF32:
         * TF32 heads and remainders) and B's 16 K rows, padded; 0 for the other tiles, whose arrays are static.
         */
        public int sharedBytes(Matmul matmul) {
            return warpgroups ? stages * ((matmul == Matmul.TF32X3 ? 2 : 1) * WG_A_STAGE_BYTES + 4 * SLICE_K * bStride()) : 0;
        }

        int bStride() { return bn + 8; }
    }

    /**
     * How a program's tensor-core GEMMs are tiled: all 128×64, or 128×128 for those that are not weight
     * gradients (TN, split over the batch) and have 128 columns or more: by mma.sync warps (WIDE), or for tf32
     * and 3xTF32 by wgmma warpgroups (WGMMA, sm_90 only: the module targets sm_90a). fp32 FMA GEMMs are always
     * 128×64; under WGMMA, bf16 GEMMs and the rest keep 128×64 mma.sync tiles.
     */
    public enum Tiling { NARROW, WIDE, WGMMA }

    public static Tile tile(Kernel.Gemm g, Matmul matmul, Tiling tiling) {
        boolean wide = tiling != Tiling.NARROW && matmul != Matmul.FMA && !g.transposeA() && g.domain().cols() >= 2 * BN;
        if (wide && tiling == Tiling.WGMMA) return matmul == Matmul.BF16 ? Tile.NARROW : Tile.WGMMA;
        return !wide ? Tile.NARROW : matmul == Matmul.TF32X3 ? Tile.WIDE : Tile.WIDE_WARPS;
    }

    /**
     * Whether a residual MLP block runs as one kernel here: with tf32 or 3xTF32 GEMMs (the fused kernel has no
     * FMA or bf16 variant), h = 128 or 256 (the down-projection's 128×h accumulators in registers), a hidden width in
     * whole 64-column chunks, and weights at 16-byte boundaries for the copies.
     */
    public static boolean fits(Kernel.Mlp m, Matmul matmul) {
        int h = m.down().domain().cols(), e = m.up().domain().cols();
        return (matmul == Matmul.TF32 || matmul == Matmul.TF32X3) && (h == 128 || h == 256) && e % MLP_CHUNK == 0 && m.norm().domain().cols() == h
                && m.up().k() == h && m.down().k() == e && !m.up().b().shape().batched() && !m.down().b().shape().batched()
                && m.up().b().offset() % 4 == 0 && m.down().b().offset() % 4 == 0;
    }

    /**
     * The program with each residual MLP block that {@link #fits} fused into one kernel (see
     * {@link dev.cmc.fusion.MlpFusion}): the normalised rows and the hidden activation stay on chip.
     */
    public static Program fuseMlps(Program p, Matmul matmul) {
        return dev.cmc.fusion.MlpFusion.fuse(p, m -> fits(m, matmul));
    }

    /** Floats of one stage of a fused MLP's weight pipeline: the larger of an up slice and a down slice, padded. */
    private static int mlpStageFloats(int h) {
        return Math.max(MLP_UP_K * (MLP_CHUNK + 8), MLP_SLICE / h * (h + 8));
    }

    /** A fused MLP's dynamic shared memory: the normalised rows, the hidden chunk, the weight stages (200 KB at h = 256). */
    public static int mlpSharedBytes(int h) {
        return 4 * (MLP_ROWS * (h + 4) + MLP_ROWS * (MLP_CHUNK + 4) + MLP_STAGES * mlpStageFloats(h));
    }

    /** How kernel k is launched at this batch, its GEMMs multiplied and tiled so. */
    public static Launch launch(Kernel k, int batch, Matmul matmul, Tiling tiling) {
        return switch (k) {
            case Kernel.Gemm g -> {
                Tile t = tile(g, matmul, tiling);
                yield new Launch(ceil(g.domain().cols(), t.bn()), ceil(rows(g.domain(), batch), t.bm()), splits(g, batch), t.threads(),
                        t.sharedBytes(matmul));
            }
            case Kernel.Normalize n -> new Launch(ceil(rows(n.domain(), batch), WARPS), 1, 1);
            case Kernel.ReduceCols r -> new Launch(ceil(rows(r.domain(), batch), WARPS), 1, 1);
            case Kernel.ReduceBatch r -> new Launch(ceil(r.domain().cols(), 32), 1, 1);
            case Kernel.SegmentSum s -> new Launch(ceil((long) s.domain().rows() * s.domain().cols(), BLOCK), 1, 1);
            case Kernel.Transpose t -> new Launch(ceil(t.src().shape().rows() * t.src().shape().cols(), BLOCK), 1, 1);
            case Kernel.SumSquares s -> new Launch(1, 1, 1);
            case Kernel.AdamEma a -> new Launch(ceil(a.count(), BLOCK), 1, 1);
            case Kernel.Elementwise e -> new Launch((int) Math.max(1, ceil(rows(e.domain(), batch) * (long) e.domain().cols(), BLOCK)), 1, 1);
            case Kernel.Mlp m -> new Launch(ceil(rows(m.domain(), batch), MLP_ROWS), 1, 1, MLP_THREADS, mlpSharedBytes(m.domain().cols()));
        };
    }

    /**
     * K slices of a GEMM at this batch: for TN GEMMs (weight gradients) one per 512 rows, at most 16; for NN GEMMs
     * with a long K, FILL_BLOCKS over their 128×64 tiles, from 1 to 8 (8 up to 512 rows of 256 columns, 4 at 4,096
     * rows, 1 from 16,384); otherwise 1. It is the launch's grid depth, which the kernels read (%nctaid.z).
     */
    public static int splits(Kernel.Gemm g, int batch) {
        if (g.transposeA()) return Math.min(MAX_SPLITS, Math.max(1, batch / SPLIT_ROWS));
        if (!splitsK(g)) return 1;
        if (!g.domain().batched()) return NN_SPLITS;
        return Math.min(NN_SPLITS, Math.max(1, FILL_BLOCKS / tiles(g, batch)));
    }

    /** 128×64 tiles of a GEMM's output at this batch (a fixed-row output's at any). */
    private static int tiles(Kernel.Gemm g, int batch) {
        return ceil(rows(g.domain(), batch), BM) * ceil(g.domain().cols(), BN);
    }

    /**
     * Whether a kernel may split K, and so takes the workspace (after its arrays): TN GEMMs, and NN GEMMs with K
     * of 1024 or more over the batch or over at most 512 fixed rows (the weight gradient of an embedding
     * computed per distinct σ, whose K is the σ table).
     */
    public static boolean splitsK(Kernel k) {
        return k instanceof Kernel.Gemm g
                && (g.transposeA() || g.k() >= LONG_K && (g.domain().batched() || g.domain().rows() <= FEW_ROWS));
    }

    /**
     * Floats of workspace a kernel needs at any batch up to maxBatch: a counter per output tile, then a partial
     * product per K slice. It must start zeroed; the kernels leave the counters at zero again.
     */
    public static long workspaceFloats(Kernel k, int maxBatch) {
        if (!(k instanceof Kernel.Gemm g) || !splitsK(g)) return 0;
        if (g.transposeA() || !g.domain().batched()) {
            return counterFloats(g) + (long) splits(g, maxBatch) * g.domain().rows() * g.domain().cols();
        }
        // NN over the batch: the most slices × rows at any batch that splits, the most rows of each tile count.
        long most = 0;
        for (int tiles = 1; tiles * BM < maxBatch + BM; tiles++) {
            int rows = Math.min(maxBatch, tiles * BM), s = splits(g, rows);
            if (s == 1) break;
            most = Math.max(most, (long) s * rows);
        }
        return counterFloats(g) + most * g.domain().cols();
    }

    /**
     * The split GEMM's tile counters at the head of its workspace: one per output tile at the most rows it
     * splits at (TN and fixed-row GEMMs: all their rows; NN over the batch: while it has at most FILL_BLOCKS / 2
     * tiles, since fewer than two slices is no split), for tiles of at least 128×64, rounded up to 4 floats so
     * that the slices stay 16-byte aligned.
     */
    private static int counterFloats(Kernel.Gemm g) {
        int tiles = g.domain().batched() ? FILL_BLOCKS / 2 : tiles(g, 0);
        return (tiles + 3) / 4 * 4;
    }

    private static int rows(Shape s, int batch) { return s.batched() ? batch : s.rows(); }

    private static int ceil(long a, int b) { return (int) ((a + b - 1) / b); }

    public static String kernelName(Program p, int i) { return JavaRenderer.methodName(p, i); }

    /**
     * How GEMMs multiply. FMA: fp32 on the FMA units. TF32: the tensor cores, mma.sync m16n8k8 with A and B
     * rounded to TF32 (10-bit mantissa) and fp32 accumulation, as PyTorch's allow_tf32. TF32X3: the tensor
     * cores at fp32 accuracy, each operand split into a TF32 head and a TF32 remainder and the product
     * summed from three mma (lo·hi + hi·lo + hi·hi; lo·lo is below fp32's rounding), as CUTLASS's 3xTF32.
     * BF16: the tensor cores' bf16 mma.sync m16n8k16 (8-bit mantissas in, fp32 accumulation), twice TF32's
     * rate, for sampling where that precision suffices.
     */
    public enum Matmul {
        FMA("fp32 FMA GEMMs"), TF32("tf32 tensor-core GEMMs"), TF32X3("3xTF32 tensor-core GEMMs, fp32 accuracy"),
        BF16("bf16 tensor-core GEMMs");

        /** The GEMMs of a spec's target.precision: fp32 (with the given fp32 arithmetic), tf32 or bf16. */
        public static Matmul of(String precision, Matmul fp32) {
            return switch (precision) {
                case "tf32" -> TF32;
                case "bf16" -> BF16;
                default -> fp32;
            };
        }

        public final String description;

        Matmul(String description) { this.description = description; }
    }

    /** The PTX module of a program for one architecture ("sm_80", "sm_90"), fp32 throughout. */
    public static String render(Program program, String header, String arch) {
        return render(program, header, arch, Matmul.FMA);
    }

    public static String render(Program program, String header, String arch, Matmul matmul) {
        return render(program, header, arch, matmul, Tiling.NARROW);
    }

    public static String render(Program program, String header, String arch, Matmul matmul, Tiling tiling) {
        var sb = new StringBuilder();
        sb.append("// ").append(header.replace("\n", "\n// ")).append(" (").append(matmul.description)
                .append(tiling == Tiling.WIDE ? ", 128x128 tiles" : tiling == Tiling.WGMMA ? ", 128x128 wgmma tiles" : "").append(")\n");
        sb.append("// Generated by cmc: do not edit; regenerate with `cmc compile --target cuda --emit DIR`.\n\n");
        if (tiling == Tiling.WGMMA && !arch.equals("sm_90")) {
            throw new IllegalArgumentException("wgmma tiles need an sm_90 GPU (H100, H200), not " + arch);
        }
        sb.append(".version 8.0\n.target ").append(tiling == Tiling.WGMMA ? "sm_90a" : arch).append("\n.address_size 64\n");
        if (tiling == Tiling.WGMMA || program.kernels().stream().anyMatch(k -> k instanceof Kernel.Mlp)) {
            sb.append(".extern .shared .align 128 .b8 ").append(DYNAMIC_SHARED).append("[];\n");
        }
        for (int i = 0; i < program.kernels().size(); i++) sb.append('\n').append(new Fn(program, i, matmul, tiling).render());
        return sb.toString();
    }

    /** Lanes per FMA in {@link #renderPeak}: scalar FMAs, one thread each. */
    public static final int PEAK_LANES = 1;

    /** {@link PeakFma}'s kernel: CHAINS independent scalar FMA chains per thread, one thread per unit. */
    public static String renderPeak(Program p, String arch) {
        var sb = new StringBuilder("// Generated by cmc: the FMA throughput probe behind `cmc bench`'s fraction of peak.\n");
        sb.append(".version 8.0\n.target ").append(arch).append("\n.address_size 64\n\n");
        sb.append(".visible .entry ").append(kernelName(p, 0)).append("(\n    .param .u64 p_out,\n    .param .u32 rows\n)\n.maxntid 256, 1, 1\n{\n");
        sb.append("    .reg .pred %p1;\n    .reg .f32 %f<").append(PeakFma.CHAINS + 3).append(">;\n    .reg .b32 %r<8>;\n    .reg .b64 %rd<4>;\n\n");
        sb.append("    mov.u32 %r1, %ctaid.x;\n    mov.u32 %r2, %tid.x;\n    mad.lo.s32 %r3, %r1, 256, %r2;\n");
        sb.append("    ld.param.u32 %r4, [rows];\n    setp.ge.s32 %p1, %r3, %r4;\n    @%p1 bra DONE;\n");
        sb.append("    cvt.rn.f32.s32 %f1, %r3;\n");
        for (int c = 0; c < PeakFma.CHAINS; c++) sb.append("    add.f32 %f").append(c + 2).append(", %f1, ").append(Fn.imm(c)).append(";\n");
        sb.append("    mov.u32 %r5, 0;\nLOOP:\n");
        for (int c = 0; c < PeakFma.CHAINS; c++) {
            sb.append("    fma.rn.f32 %f").append(c + 2).append(", %f").append(c + 2).append(", 0f3F7FBE77, 0f3A83126F;\n");
        }
        sb.append("    add.s32 %r5, %r5, 1;\n    setp.lt.s32 %p1, %r5, ").append(PeakFma.ITERATIONS).append(";\n    @%p1 bra LOOP;\n");
        for (int c = 1; c < PeakFma.CHAINS; c++) sb.append("    add.f32 %f2, %f2, %f").append(c + 2).append(";\n");
        sb.append("    ld.param.u64 %rd1, [p_out];\n    cvta.to.global.u64 %rd2, %rd1;\n    mul.wide.s32 %rd3, %r3, 4;\n");
        sb.append("    add.s64 %rd2, %rd2, %rd3;\n    st.global.f32 [%rd2], %f2;\nDONE:\n    ret;\n}\n");
        return sb.toString();
    }

    /** One kernel: its virtual registers, labels and body. */
    private static final class Fn {
        private final Program program;
        private final int index;
        private final Kernel kernel;
        private final StringBuilder body = new StringBuilder();
        private final StringBuilder shared = new StringBuilder();
        private final Map<String, String> base = new HashMap<>();
        private int f, r, rd, p, labels;
        private String rowsReg;

        private final Matmul matmul;
        /** A GEMM's block tile. */
        private final Tile tile;

        Fn(Program program, int index, Matmul matmul, Tiling tiling) {
            this.program = program;
            this.index = index;
            this.kernel = program.kernels().get(index);
            this.matmul = matmul;
            this.tile = kernel instanceof Kernel.Gemm g ? tile(g, matmul, tiling) : null;
        }

        String render() {
            List<String> args = Indexing.arguments(kernel);
            if (splitsK(kernel)) {
                args = new java.util.ArrayList<>(args);
                args.add(WORKSPACE);
            }
            var head = new StringBuilder("// " + kernel.name() + "\n.visible .entry " + kernelName(program, index) + "(\n");
            for (String a : args) head.append("    .param .u64 ").append(param(a)).append(",\n");
            head.append("    .param .u32 rows\n)\n.maxntid ").append(threads()).append(", 1, 1\n");
            // GEMMs hold a 64-float accumulator tile, fragments and addresses: let ptxas use up to 128 registers
            // (four 128-thread blocks per SM) rather than spill to fit its own occupancy guess; 3xTF32, which
            // keeps heads and remainders of its fragments, up to 168 (three blocks).
            // A 64×64 warp tile holds twice the accumulators: up to 232 (two 128-thread blocks per SM).
            // A wgmma warpgroup's 64 accumulators per thread: up to 128 (two 256-thread blocks per SM).
            // A fused MLP's 512 threads: at most 128 each, to fit the register file.
            if (kernel instanceof Kernel.Mlp) head.append(".maxnreg 128\n");
            if (tile != null) {
                head.append(".maxnreg ").append(tile.warpgroups() ? 128 : tile.warpNTiles() > WARP_N_TILES ? 232 : matmul == Matmul.TF32X3 ? 168 : 128).append('\n');
            }
            head.append("{\n");
            for (String a : args) {
                String raw = rd(), g = rd();
                op("ld.param.u64 " + raw + ", [" + param(a) + "];");
                op("cvta.to.global.u64 " + g + ", " + raw + ";");
                base.put(a, g);
            }
            rowsReg = r();
            op("ld.param.u32 " + rowsReg + ", [rows];");
            switch (kernel) {
                case Kernel.Gemm g -> {
                    if (matmul == Matmul.FMA) gemm(g);
                    else if (tile.warpgroups()) gemmWgmma(g);
                    else gemmMma(g);
                }
                case Kernel.Elementwise e -> elementwise(e);
                case Kernel.Normalize n -> normalize(n);
                case Kernel.ReduceCols rc -> reduceCols(rc);
                case Kernel.ReduceBatch rb -> reduceBatch(rb);
                case Kernel.SegmentSum ss -> segmentSum(ss);
                case Kernel.Transpose t -> transpose(t);
                case Kernel.SumSquares s -> sumSquares(s);
                case Kernel.AdamEma a -> adamEma(a);
                case Kernel.Mlp m -> mlp(m);
            }
            label("DONE");
            op("ret;");
            head.append(shared);
            head.append("    .reg .pred %p<").append(p + 1).append(">;\n");
            head.append("    .reg .f32 %f<").append(f + 1).append(">;\n");
            head.append("    .reg .b32 %r<").append(r + 1).append(">;\n");
            head.append("    .reg .b64 %rd<").append(rd + 1).append(">;\n\n");
            return head.append(body).append("}\n").toString();
        }

        // ---- registers, labels, instructions ----

        /** Threads per block of this kernel, as {@link PtxRenderer#launch} launches it. */
        private int threads() {
            return tile != null ? tile.threads() : kernel instanceof Kernel.Mlp ? MLP_THREADS : BLOCK;
        }

        private String f() { return "%f" + (++f); }
        private String r() { return "%r" + (++r); }
        private String rd() { return "%rd" + (++rd); }
        private String p() { return "%p" + (++p); }
        private String newLabel(String what) { return "L" + (++labels) + "_" + what; }
        private void op(String s) { body.append("    ").append(s).append('\n'); }
        private void label(String l) { body.append(l).append(":\n"); }
        private void comment(String s) { body.append("    // ").append(s).append('\n'); }

        private static String param(String array) { return "p_" + Indexing.identifier(array); }

        /** A float immediate, exactly: PTX's 0fXXXXXXXX. */
        static String imm(double v) { return String.format("0f%08X", Float.floatToRawIntBits((float) v)); }

        private String constF(double v) {
            String x = f();
            op("mov.f32 " + x + ", " + imm(v) + ";");
            return x;
        }

        private String constI(int v) {
            String x = r();
            op("mov.u32 " + x + ", " + v + ";");
            return x;
        }

        private String special(String name) {
            String x = r();
            op("mov.u32 " + x + ", " + name + ";");
            return x;
        }

        /** A two-operand instruction into a new register of the opcode's type (.f32, 64-bit, else 32-bit). */
        private String bin(String opcode, String a, String b) {
            String x = opcode.endsWith(".f32") ? f() : opcode.endsWith("64") ? rd() : r();
            op(opcode + " " + x + ", " + a + ", " + b + ";");
            return x;
        }

        private String fma(String a, String b, String c) {
            String x = f();
            op("fma.rn.f32 " + x + ", " + a + ", " + b + ", " + c + ";");
            return x;
        }

        /** a*b + c on 32-bit integers. */
        private String mad(String a, String b, String c) {
            String x = r();
            op("mad.lo.s32 " + x + ", " + a + ", " + b + ", " + c + ";");
            return x;
        }

        private String pred(String cmp, String a, String b) {
            String x = p();
            op("setp." + cmp + " " + x + ", " + a + ", " + b + ";");
            return x;
        }

        /** The global address of element idx (a 32-bit register or immediate) of an array. */
        private String address(String array, String idx) {
            String wide = rd(), a = rd();
            op("mul.wide.s32 " + wide + ", " + idx + ", 4;");
            op("add.s64 " + a + ", " + base.get(array) + ", " + wide + ";");
            return a;
        }

        private String loadGlobal(String array, String idx) {
            String x = f();
            op("ld.global.f32 " + x + ", [" + address(array, idx) + "];");
            return x;
        }

        private void storeGlobal(String array, String idx, String value) {
            op("st.global.f32 [" + address(array, idx) + "], " + value + ";");
        }

        /** The domain's row count: the runtime batch or a constant. */
        private String domainRows(Shape d) {
            return d.batched() ? rowsReg : constI(d.rows());
        }

        /** Index of domain element (row, col) in b, broadcasting b's size-1 dimensions (as {@link Indexing#index}). */
        private String index(Buf b, Shape d, String row, String col) {
            boolean rowBcast = b.shape().rows() == 1 && d.rows() != 1;
            boolean colBcast = b.shape().cols() == 1 && d.cols() != 1;
            String idx = constI(b.offset());
            if (!rowBcast) idx = mad(row, Integer.toString(b.shape().cols()), idx);
            if (!colBcast) idx = bin("add.s32", idx, col);
            return idx;
        }

        // ---- expressions and epilogues ----

        private record Ctx(Shape domain, String row, String col, String acc, Map<Integer, String> vars) {}

        private void lets(List<Let> lets, Ctx c) {
            lets(lets, c, null, null);
        }

        /** The epilogue, its stores to array {@code onChip} handed to {@code keep} instead (a fused MLP's intermediates). */
        private void lets(List<Let> lets, Ctx c, String onChip, java.util.function.Consumer<String> keep) {
            for (Let l : lets) {
                String v = expr(l.value(), c);
                c.vars().put(l.id(), v);
                if (l.store() == null) continue;
                if (l.store().array().equals(onChip)) keep.accept(v);
                else storeGlobal(l.store().array(), index(l.store(), c.domain(), c.row(), c.col()), v);
            }
        }

        private String expr(Expr e, Ctx c) {
            return switch (e) {
                case Expr.Load l -> loadGlobal(l.buf().array(), index(l.buf(), c.domain(), c.row(), c.col()));
                case Expr.Gather g -> {
                    String row = toInt(loadGlobal(g.index().array(), index(g.index(), c.domain(), c.row(), c.col())));
                    yield loadGlobal(g.table().array(), index(g.table(), c.domain(), row, c.col()));
                }
                case Expr.Const k -> constF(k.value());
                case Expr.Acc a -> c.acc();
                case Expr.Var v -> c.vars().get(v.id());
                case Expr.Rows rows -> {
                    String x = f();
                    op("cvt.rn.f32.s32 " + x + ", " + rowsReg + ";");
                    yield x;
                }
                case Expr.Unary u -> unary(u.op(), expr(u.a(), c));
                case Expr.Binary b -> {
                    String x = expr(b.a(), c), y = expr(b.b(), c);
                    yield switch (b.op()) {
                        case ADD -> bin("add.f32", x, y);
                        case SUB -> bin("sub.f32", x, y);
                        case MUL -> bin("mul.f32", x, y);
                        case DIV -> bin("div.rn.f32", x, y);
                        default -> throw new IllegalStateException(b.op().toString());
                    };
                }
            };
        }

        private String unary(Op o, String x) {
            return switch (o) {
                case NEG -> { String y = f(); op("neg.f32 " + y + ", " + x + ";"); yield y; }
                case SQRT -> { String y = f(); op("sqrt.rn.f32 " + y + ", " + x + ";"); yield y; }
                case SQUARE -> bin("mul.f32", x, x);
                case RELU -> bin("max.f32", x, imm(0));
                case EXP -> exp(x);
                case LOG -> { String t = f(); op("lg2.approx.f32 " + t + ", " + x + ";"); yield bin("mul.f32", t, imm(Math.log(2))); }
                case SIN -> sinCos(x, "sin");
                case COS -> sinCos(x, "cos");
                case SILU -> bin("div.rn.f32", x, bin("add.f32", exp(neg(x)), imm(1)));
                case DSILU -> {
                    String s = bin("div.rn.f32", imm(1), bin("add.f32", exp(neg(x)), imm(1)));
                    yield bin("mul.f32", s, fma(x, bin("sub.f32", imm(1), s), imm(1)));
                }
                case GELU -> {
                    String t = tanh(geluInner(x));
                    yield bin("mul.f32", bin("mul.f32", x, imm(0.5)), bin("add.f32", t, imm(1)));
                }
                case DGELU -> {
                    String t = tanh(geluInner(x));
                    String inner = bin("mul.f32", fma(bin("mul.f32", x, x), imm(3 * 0.044715), imm(1)), imm(Math.sqrt(2 / Math.PI)));
                    String left = bin("mul.f32", bin("add.f32", t, imm(1)), imm(0.5));
                    String right = bin("mul.f32", bin("mul.f32", bin("mul.f32", x, imm(0.5)), bin("sub.f32", imm(1), bin("mul.f32", t, t))), inner);
                    yield bin("add.f32", left, right);
                }
                case STEP -> {
                    String q = pred("gt.f32", x, imm(0)), y = f();
                    op("selp.f32 " + y + ", " + imm(1) + ", " + imm(0) + ", " + q + ";");
                    yield y;
                }
                default -> throw new IllegalStateException(o + " is not unary");
            };
        }

        private String neg(String x) {
            String y = f();
            op("neg.f32 " + y + ", " + x + ";");
            return y;
        }

        /** e^x = 2^(x·log2 e) on the SFU; inputs below −87 flush to 0, as in the other backends. */
        private String exp(String x) {
            String t = bin("mul.f32", bin("max.f32", x, imm(-87)), imm(1 / Math.log(2))), y = f();
            op("ex2.approx.ftz.f32 " + y + ", " + t + ";");
            return y;
        }

        /** tanh(u) = 1 − 2/(e^{2u} + 1), exact in the tails (tanh.approx is only good to 2^-11). */
        private String tanh(String u) {
            String e = exp(bin("mul.f32", bin("min.f32", u, imm(40)), imm(2)));
            return bin("sub.f32", imm(1), bin("div.rn.f32", imm(2), bin("add.f32", e, imm(1))));
        }

        private String geluInner(String x) {
            String cube = bin("mul.f32", bin("mul.f32", x, x), x);
            return bin("mul.f32", fma(cube, imm(0.044715), x), imm(Math.sqrt(2 / Math.PI)));
        }

        /** sin/cos.approx are accurate on [−π, π]: reduce by 2π in two parts first. */
        private String sinCos(String x, String which) {
            String k = f();
            op("cvt.rni.f32.f32 " + k + ", " + bin("mul.f32", x, imm(1 / (2 * Math.PI))) + ";");
            String y = fma(k, imm(-6.28125), x);
            y = fma(k, imm(-0.0019353071795864769), y);
            String out = f();
            op(which + ".approx.f32 " + out + ", " + y + ";");
            return out;
        }

        // ---- kernels ----

        /** if (pred) goto DONE. */
        private void exitIf(String pred) {
            op("@" + pred + " bra DONE;");
        }

        private void elementwise(Kernel.Elementwise e) {
            Shape d = e.domain();
            String idx = mad(special("%ctaid.x"), Integer.toString(BLOCK), special("%tid.x"));
            String total = bin("mul.lo.s32", domainRows(d), Integer.toString(d.cols()));
            exitIf(pred("ge.s32", idx, total));
            String row = bin("div.s32", idx, Integer.toString(d.cols())), col = bin("rem.s32", idx, Integer.toString(d.cols()));
            lets(e.epilogue(), new Ctx(d, row, col, null, new HashMap<>()));
        }

        /** for (col = start; col < end; col += step) body(col), as a PTX loop. */
        private void loop(String start, String end, int step, java.util.function.Consumer<String> bodyOf) {
            String col = r(), top = newLabel("loop"), exit = newLabel("end");
            op("mov.u32 " + col + ", " + start + ";");
            label(top);
            op("@" + pred("ge.s32", col, end) + " bra " + exit + ";");
            bodyOf.accept(col);
            op("add.s32 " + col + ", " + col + ", " + step + ";");
            op("bra " + top + ";");
            label(exit);
        }

        /** A running float sum in a register that loops update in place. */
        private String accumulator() {
            return constF(0);
        }

        private void addInto(String sum, String v) {
            op("add.f32 " + sum + ", " + sum + ", " + v + ";");
        }

        /** Sum across the warp by butterfly shuffles: every lane ends with the total. */
        private String warpSum(String v) {
            String s = v;
            for (int offset = 16; offset >= 1; offset /= 2) {
                String t = f();
                op("shfl.sync.bfly.b32 " + t + ", " + s + ", " + offset + ", 31, 0xffffffff;");
                s = bin("add.f32", s, t);
            }
            return s;
        }

        /** Warp w of the block owns row ctaid·8 + w; returns {row, lane}, having sent rows past the end away. */
        private String[] warpRow(Shape d) {
            String tid = special("%tid.x");
            String lane = bin("and.b32", tid, "31"), warp = bin("shr.u32", tid, "5");
            String row = mad(special("%ctaid.x"), Integer.toString(WARPS), warp);
            exitIf(pred("ge.s32", row, domainRows(d)));
            return new String[]{row, lane};
        }

        private void normalize(Kernel.Normalize nk) {
            Shape d = nk.domain();
            int n = d.cols();
            String[] rl = warpRow(d);
            String row = rl[0], lane = rl[1], end = Integer.toString(n);
            comment("mean and variance of the row, lanes striding its columns");
            String sum = accumulator();
            loop(lane, end, 32, c -> addInto(sum, expr(nk.x(), new Ctx(d, row, c, null, new HashMap<>()))));
            String mean = warpMean(sum, n);
            String sq = accumulator();
            loop(lane, end, 32, c -> {
                String t = bin("sub.f32", expr(nk.x(), new Ctx(d, row, c, null, new HashMap<>())), mean);
                op("fma.rn.f32 " + sq + ", " + t + ", " + t + ", " + sq + ";");
            });
            String rstd = rstd(warpMean(sq, n));
            String mg = null, mgx = null;
            if (nk.grad() != null) {
                comment("the gradient's row means: mean(g) and mean(g * xhat)");
                String sg = accumulator(), sgx = accumulator();
                loop(lane, end, 32, c -> {
                    var ctx = new Ctx(d, row, c, null, new HashMap<>());
                    String xh = bin("mul.f32", bin("sub.f32", expr(nk.x(), ctx), mean), rstd);
                    String g = expr(nk.grad(), ctx);
                    addInto(sg, g);
                    op("fma.rn.f32 " + sgx + ", " + g + ", " + xh + ", " + sgx + ";");
                });
                mg = warpMean(sg, n);
                mgx = warpMean(sgx, n);
            }
            final String mgF = mg, mgxF = mgx;
            comment("normalised values through the epilogue");
            loop(lane, end, 32, c -> {
                var ctx = new Ctx(d, row, c, null, new HashMap<>());
                String xh = bin("mul.f32", bin("sub.f32", expr(nk.x(), ctx), mean), rstd);
                String acc = nk.grad() == null ? xh
                        : bin("mul.f32", bin("sub.f32", bin("sub.f32", expr(nk.grad(), ctx), mgF), bin("mul.f32", xh, mgxF)), rstd);
                lets(nk.epilogue(), new Ctx(d, row, c, acc, new HashMap<>()));
            });
        }

        /** The mean over a row of n columns, from each lane's partial sum. */
        private String warpMean(String partial, int n) {
            return bin("div.rn.f32", warpSum(partial), imm(n));
        }

        /** 1/√(variance + ε): a LayerNorm's reciprocal standard deviation. */
        private String rstd(String variance) {
            return bin("div.rn.f32", imm(1), sqrt(bin("add.f32", variance, imm(Op.NORM_EPS))));
        }

        private String sqrt(String x) {
            String y = f();
            op("sqrt.rn.f32 " + y + ", " + x + ";");
            return y;
        }

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

        private void reduceBatch(Kernel.ReduceBatch rb) {
            int n = rb.domain().cols();
            Shape src = Shape.batch(n);
            String tid = special("%tid.x");
            String lane = bin("and.b32", tid, "31"), slice = bin("shr.u32", tid, "5");
            String col = mad(special("%ctaid.x"), "32", lane);
            String inRange = pred("lt.s32", col, Integer.toString(n));
            String[] sums = new String[UNROLL];
            for (int u = 0; u < UNROLL; u++) sums[u] = accumulator();
            String skip = newLabel("skip");
            op("@!" + inRange + " bra " + skip + ";");
            comment("slice s sums rows s, s+8, s+16, ...: " + UNROLL + " rows a trip, each into its own sum, so that "
                    + UNROLL + " loads are in flight rather than one");
            String r0 = r();
            op("mov.u32 " + r0 + ", " + slice + ";");
            String top = newLabel("rows"), tail = newLabel("rows_tail"), end = newLabel("rows_end");
            label(top);
            op("@" + pred("ge.s32", bin("add.s32", r0, Integer.toString((UNROLL - 1) * WARPS)), rowsReg) + " bra " + tail + ";");
            String[] values = new String[UNROLL];
            for (int u = 0; u < UNROLL; u++) values[u] = expr(rb.x(), new Ctx(src, bin("add.s32", r0, Integer.toString(u * WARPS)), col, null, new HashMap<>()));
            for (int u = 0; u < UNROLL; u++) addInto(sums[u], values[u]);
            op("add.s32 " + r0 + ", " + r0 + ", " + UNROLL * WARPS + ";");
            op("bra " + top + ";");
            label(tail);
            op("@" + pred("ge.s32", r0, rowsReg) + " bra " + end + ";");
            addInto(sums[0], expr(rb.x(), new Ctx(src, r0, col, null, new HashMap<>())));
            op("add.s32 " + r0 + ", " + r0 + ", " + WARPS + ";");
            op("bra " + tail + ";");
            label(end);
            for (int width = UNROLL / 2; width >= 1; width /= 2) {
                for (int u = 0; u < width; u++) addInto(sums[u], sums[u + width]);
            }
            String sum = sums[0];
            label(skip);
            String slot = publish(tid, sum);
            exitIf(pred("ne.s32", slice, "0"));
            exitIf(pred("ge.s32", col, Integer.toString(n)));
            comment("the slices in order, so that every run sums alike");
            String acc = constF(0);
            for (int s = 0; s < WARPS; s++) {
                String v = f();
                op("ld.shared.f32 " + v + ", [" + slot + "+" + (4 * 32 * s) + "];");
                addInto(acc, v);
            }
            if (rb.mean()) {
                String rowsF = f();
                op("cvt.rn.f32.s32 " + rowsF + ", " + rowsReg + ";");
                acc = bin("div.rn.f32", acc, rowsF);
            }
            lets(rb.epilogue(), new Ctx(rb.domain(), constI(0), col, acc, new HashMap<>()));
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
            String sum = accumulator();
            loop(from, to, 1, j -> {
                String row = toInt(loadGlobal(ss.order().array(), index(ss.order(), src, j, zero)));
                addInto(sum, expr(ss.x(), new Ctx(src, row, col, null, new HashMap<>())));
            });
            lets(ss.epilogue(), new Ctx(d, k, col, sum, new HashMap<>()));
        }

        /** A row number held as a float, as an integer register. */
        private String toInt(String x) {
            String y = r();
            op("cvt.rzi.s32.f32 " + y + ", " + x + ";");
            return y;
        }

        /** Declares the block's shared "part" array, stores each thread's partial sum at its slot, waits for all. */
        private String publish(String tid, String partial) {
            shared.append("    .shared .align 4 .f32 part[").append(BLOCK).append("];\n");
            String slot = sharedSlot(symbol("part"), tid);
            op("st.shared.f32 [" + slot + "], " + partial + ";");
            op("bar.sync 0;");
            return slot;
        }

        private String symbol(String name) {
            String a = rd();
            op("mov.u64 " + a + ", " + name + ";");
            return a;
        }

        private void transpose(Kernel.Transpose t) {
            int rows = t.src().shape().rows(), cols = t.src().shape().cols();
            String idx = mad(special("%ctaid.x"), Integer.toString(BLOCK), special("%tid.x"));
            exitIf(pred("ge.s32", idx, Integer.toString(rows * cols)));
            String i = bin("div.s32", idx, Integer.toString(cols)), j = bin("rem.s32", idx, Integer.toString(cols));
            String v = loadGlobal(t.src().array(), bin("add.s32", idx, Integer.toString(t.src().offset())));
            String dst = bin("add.s32", mad(j, Integer.toString(rows), i), Integer.toString(t.dst().offset()));
            storeGlobal(t.dst().array(), dst, v);
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

        private void adamEma(Kernel.AdamEma o) {
            String i = mad(special("%ctaid.x"), Integer.toString(BLOCK), special("%tid.x"));
            exitIf(pred("ge.s32", i, Integer.toString(o.count())));
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
            String g = bin("mul.f32", loadGlobal("grads", i), gscale);
            String m = fma(imm(o.beta1()), loadGlobal("adam_m", i), bin("mul.f32", imm(1 - o.beta1()), g));
            storeGlobal("adam_m", i, m);
            String v = fma(imm(o.beta2()), loadGlobal("adam_v", i), bin("mul.f32", imm(1 - o.beta2()), bin("mul.f32", g, g)));
            storeGlobal("adam_v", i, v);
            String adam = bin("div.rn.f32", m, fma(sqrt(v), denom, eps)), update = f();
            op("selp.f32 " + update + ", " + adam + ", " + m + ", " + rectified + ";");
            String p0 = loadGlobal("params", i);
            String pNew = bin("sub.f32", bin("sub.f32", p0, bin("mul.f32", step, update)), bin("mul.f32", decay, p0));
            storeGlobal("params", i, pNew);
            String oneMinusMu = bin("sub.f32", imm(1), mu), oneMinusEma = bin("sub.f32", imm(1), emaDecay);
            storeGlobal("target", i, fma(mu, loadGlobal("target", i), bin("mul.f32", oneMinusMu, pNew)));
            storeGlobal("ema", i, fma(emaDecay, loadGlobal("ema", i), bin("mul.f32", oneMinusEma, pNew)));
        }

        /** A GEMM block's frame: bounds, this block's output corner, its K range, and the double-buffered tiles. */
        private record Frame(String m, String n, String k, String tid, String row0, String col0, String kBegin, String kEnd,
                             String splits, String as, String bs) {}

        /** One accumulator register and the output element it belongs to. */
        private record Out(String row, String col, String acc) {}

        /**
         * Finds this block's output tile (128×64, or 128×128) and its slice of K: all of K, or for a TN GEMM cut into
         * {@link #splits} slices (gridDim.z) the z-th, whole multiples of 16 deep.
         */
        private Frame frame(Kernel.Gemm g) {
            String as, bs;
            if (tile.warpgroups()) {   // dynamic shared memory: A's stages (heads, then 3xTF32's remainders), then B's
                as = symbol(DYNAMIC_SHARED);
                bs = bin("add.s64", as, Integer.toString(tile.sharedBytes(matmul) - tile.stages() * 4 * SLICE_K * tile.bStride()));
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
                String steps = bin("div.s32", bin("add.s32", bin("add.s32", k, Integer.toString(SLICE_K - 1)), bin("mul.lo.s32", bin("add.s32", splits, "-1"), Integer.toString(SLICE_K))),
                        bin("mul.lo.s32", splits, Integer.toString(SLICE_K)));
                String chunk = bin("mul.lo.s32", steps, Integer.toString(SLICE_K));
                kBegin = bin("mul.lo.s32", special("%ctaid.z"), chunk);
                kEnd = bin("min.s32", k, bin("add.s32", kBegin, chunk));
            }
            return new Frame(m, Integer.toString(g.domain().cols()), k, tid, row0, col0, kBegin, kEnd, splits, as, bs);
        }

        /** Elements of the GEMM's output: M·N, M the row count for a batched output. */
        private String outputSize(Kernel.Gemm g) {
            return g.domain().batched() ? bin("mul.lo.s32", rowsReg, Integer.toString(g.domain().cols()))
                                        : constI(g.domain().rows() * g.domain().cols());
        }

        /**
         * The K loop, double-buffered: while the block computes on one 16-deep slice of A (128×16) and B (16×64)
         * in shared memory, each thread already holds its part of the next slice in registers (zero outside the
         * matrices and the K range) and stores it into the other buffer afterwards: one barrier per slice. The
         * FMA GEMM's A is stored K-major whatever its layout in memory, so that one 16-byte load gives 4 rows.
         */
        private void kLoop(Kernel.Gemm g, Frame t, java.util.function.BiConsumer<String, String> compute) {
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
        private String bufferBase(String tile, String buf, int floatsPerBuffer) {
            String wide = rd(), a = rd();
            op("mul.wide.u32 " + wide + ", " + buf + ", " + 4 * floatsPerBuffer + ";");
            op("add.s64 " + a + ", " + tile + ", " + wide + ";");
            return a;
        }

        private void storeShared(String base, String byteOffset, String v) {
            String wide = rd(), a = rd();
            op("cvt.u64.u32 " + wide + ", " + byteOffset + ";");
            op("add.s64 " + a + ", " + base + ", " + wide + ";");
            op("st.shared.f32 [" + a + "], " + v + ";");
        }

        /** One accumulator through the fused epilogue, if (row, col) lies inside the output. */
        private void emit(Kernel.Gemm g, String m, String n, Out o) {
            String skip = newLabel("out");
            op("@" + outside(o.row(), o.col(), m, n) + " bra " + skip + ";");
            lets(g.epilogue(), new Ctx(g.domain(), o.row(), o.col(), o.acc(), new HashMap<>()));
            label(skip);
        }

        /**
         * The accumulators out: through the epilogue; or, for a GEMM cut into several K slices, into slice z of
         * the workspace. Then the last of the tile's blocks to get there, told by a counter per tile that each
         * block increments once, sums the tile's slices in order (z = 0, 1, …: deterministic, unlike atomic
         * adds) and runs the epilogue, so that no second kernel is needed; its threads take the tile's elements
         * in row order, so that their loads are coalesced. The memory ordering is CUTLASS's
         * serial split-K: every thread's partials, a barrier, then one thread's acq_rel atomic at GPU scope;
         * in the last block, that thread's acquire, a barrier, then every thread's loads. The last block sets
         * the counter back to zero for the next launch.
         */
        private void finish(Kernel.Gemm g, Frame t, List<Out> outs) {
            String partial = newLabel("partial");
            if (splitsK(g)) op("@" + pred("gt.s32", t.splits(), "1") + " bra " + partial + ";");
            for (Out o : outs) emit(g, t.m(), t.n(), o);
            if (!splitsK(g)) return;
            op("bra DONE;");
            label(partial);
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
            comment("the tile's elements, consecutive threads on consecutive columns: each one's slices summed in order");
            int elements = tile.bm() * tile.bn();
            String e = r(), top = newLabel("tile"), done = newLabel("tile_end");
            op("mov.u32 " + e + ", " + t.tid() + ";");
            label(top);
            op("@" + pred("ge.s32", e, Integer.toString(elements)) + " bra " + done + ";");
            String row = bin("add.s32", t.row0(), bin("shr.u32", e, log2(tile.bn())));
            String col = bin("add.s32", t.col0(), bin("and.b32", e, Integer.toString(tile.bn() - 1)));
            String next = newLabel("element");
            op("@" + outside(row, col, t.m(), t.n()) + " bra " + next + ";");
            String sum = constF(0), z = constI(0), idx = bin("add.s32", first, mad(row, t.n(), col));
            String slices = newLabel("slices"), summed = newLabel("slices_end");
            label(slices);
            op("@" + pred("ge.s32", z, t.splits()) + " bra " + summed + ";");
            String v = f();
            op("ld.global.cg.f32 " + v + ", [" + address(WORKSPACE, idx) + "];");
            op("add.f32 " + sum + ", " + sum + ", " + v + ";");
            op("add.s32 " + idx + ", " + idx + ", " + size + ";");
            op("add.s32 " + z + ", " + z + ", 1;");
            op("bra " + slices + ";");
            label(summed);
            emit(g, t.m(), t.n(), new Out(row, col, sum));
            label(next);
            op("add.s32 " + e + ", " + e + ", " + threads() + ";");
            op("bra " + top + ";");
            label(done);
        }

        /** Whether element (row, col) lies outside an m×n output. */
        private String outside(String row, String col, String m, String n) {
            String x = p();
            op("setp.ge.s32 " + x + ", " + row + ", " + m + ";");
            op("setp.ge.or.s32 " + x + ", " + col + ", " + n + ", " + x + ";");
            return x;
        }

        /**
         * An fp32 GEMM on the FMA units: a 128×64 tile per block, 8×16 threads each holding an 8×8 register tile
         * (rows ty·4…+3 and 64+ty·4…+3, columns tx·4…+3 and 32+tx·4…+3), so every 16-byte shared load feeds 16
         * FMAs, and 64 independent accumulators keep the FMA pipes busy.
         */
        private void gemm(Kernel.Gemm g) {
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
         * A tensor-core GEMM: the same 128×64 block tile as {@link #gemm} (or 128×128, see {@link Tile}), each warp owning a 64×32 piece
         * as 4×4 mma.sync.m16n8k8 tiles per 8-deep K step (three mma each for 3xTF32), fed by the cp.async
         * pipeline of {@link #asyncKLoop}. An NN GEMM's A fragments come by ldmatrix (one instruction for a 16×8
         * fragment); a TN GEMM's A and every B fragment by 32-bit shared loads, which the padded rows keep in 32
         * banks. Fragments are rounded to TF32, or split into a TF32 head and remainder, as they are loaded; for
         * bf16, a slice's two m16n8k8 fragments pack into one m16n8k16 fragment (see {@link #bf16A}).
         */
        private void gemmMma(Kernel.Gemm g) {
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
            asyncKLoop(g, t, ac, mmaStageA(g), tile.stages() - 1, stage -> {}, (aBase, bBase) -> {
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

        /**
         * A tensor-core GEMM on Hopper's warpgroup MMA (sm_90a), for tf32 and 3xTF32 NN GEMMs of 128+ columns. wgmma
         * takes its B operand only from shared memory, and for TF32 only K-major, so the block computes the
         * transposed product, Cᵀ = Bᵀ·Aᵀ, whose operands lie as wgmma wants them: A's [M, K] rows are K-major as
         * they are, and go to shared memory as core matrices; Bᵀ comes from registers, loaded from B's padded
         * K rows exactly like an mma.sync B fragment. Two warpgroups each take 64 of the tile's 128 output columns
         * (wgmma's M) for all 128 rows (its N): one m64n128k8 per 8-deep K step, three for 3xTF32, whose A
         * remainders are split off in shared memory by the threads that copied them, as soon as they land.
         * Each 8-deep K step is a commit group of its own, and each step waits only for the step before's group:
         * the tensor cores do not drain between steps or slices. A step's A fragments live in registers of their
         * own (a slice's two steps, two sets), free again once the next step's wait has retired them; a slice's
         * stage is refilled two trips later, after the barrier that follows its last step's retirement.
         */
        private void gemmWgmma(Kernel.Gemm g) {
            Frame t = frame(g);
            boolean x3 = matmul == Matmul.TF32X3;
            int wgN = tile.bm(), loOffset = tile.stages() * WG_A_STAGE_BYTES;
            String lane = bin("and.b32", t.tid(), "31"), warp = bin("and.b32", bin("shr.u32", t.tid(), "5"), "3");
            String group = bin("shr.u32", t.tid(), "7"), grp = bin("shr.u32", lane, "2"), tig = bin("and.b32", lane, "3");
            // This thread's first output column in the tile: 64 per warpgroup, 16 per warp (wgmma's rows), g.
            String colIn = bin("add.s32", bin("add.s32", bin("shl.b32", group, "6"), bin("shl.b32", warp, "4")), grp);
            String[] acc = new String[wgN / 2];
            for (int i = 0; i < acc.length; i++) acc[i] = constF(0);
            Copies ac = aCopies(g, t, true);
            String bOff = wideBytes(bin("shl.b32", mad(tig, Integer.toString(tile.bStride()), colIn), "2"));
            asyncKLoop(g, t, ac, WG_A_STAGE_BYTES / 4, tile.stages() - 2, stage -> {
                if (x3) splitIntoHeadsAndRemainders(ac, bufferBase(t.as(), stage, WG_A_STAGE_BYTES / 4), loOffset);
                comment("the slice was written through the generic proxy; wgmma reads it through the async proxy");
                op("fence.proxy.async.shared::cta;");
            }, (aBase, bBase) -> {
                String bRead = bin("add.s64", bBase, bOff), desc = descriptor(aBase);
                for (int ks = 0; ks < SLICE_K; ks += 8) {
                    comment("k step " + ks + (x3 ? ": remainder products first" : ""));
                    String[][] a = tf32(transposedBWords(bRead, ks));
                    op("wgmma.fence.sync.aligned;");
                    // The next two core matrices along K: the descriptor's start address counts 16-byte units.
                    String d = ks == 0 ? desc : bin("add.s64", desc, Integer.toString(ks / 4 * WG_LBO >> 4));
                    if (x3) {
                        wgmma(wgN, acc, a[0], bin("add.s64", d, Integer.toString(loOffset >> 4)));
                        wgmma(wgN, acc, a[1], d);
                    }
                    wgmma(wgN, acc, a[0], d);
                    op("wgmma.commit_group.sync.aligned;");
                    comment("the step before is multiplied: its A fragments are free, and after the next barrier its stage");
                    op("wgmma.wait_group.sync.aligned 1;");
                }
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
         * wgmma's shared-memory matrix descriptor of a core-matrix slice at a shared address: the start address,
         * LBO and SBO in 16-byte units (bits 0-13, 16-29, 32-45), no swizzle (bits 62-63 zero).
         */
        private String descriptor(String sharedAddress) {
            String low = r();
            op("cvt.u32.u64 " + low + ", " + sharedAddress + ";");
            String start = bin("and.b32", bin("shr.u32", low, "4"), "16383");
            String word = bin("or.b32", start, Integer.toString((WG_LBO >> 4) << 16));
            return bin("or.b64", wideBytes(word), Long.toString((long) (WG_SBO >> 4) << 32));
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

        /**
         * 3xTF32 under wgmma: this thread's landed copies of A, each float split in place into its TF32 head, and
         * its TF32 remainder stored loOffset bytes on (wgmma reads TF32 from shared memory as it lies).
         */
        private void splitIntoHeadsAndRemainders(Copies ac, String stageBase, int loOffset) {
            comment("3xTF32: this thread's copies split into TF32 heads (in place) and remainders");
            String at = bin("add.s64", stageBase, ac.sharedBytes());
            for (int l = 0; l < ac.count(); l++) {
                int off = l * ac.sharedStep();
                String[] v = new String[ac.width()];
                for (int q = 0; q < v.length; q++) v[q] = f();
                String vec = v.length == 4 ? ".v4" : "";
                op("ld.shared" + vec + ".f32 " + operands(v) + ", [" + at + "+" + off + "];");
                String[][] split = tf32(v);
                op("st.shared" + vec + ".b32 [" + at + "+" + off + "], " + operands(split[0]) + ";");
                op("st.shared" + vec + ".b32 [" + at + "+" + (off + loOffset) + "], " + operands(split[1]) + ";");
            }
        }

        /** One register, or several as a PTX vector. */
        private static String operands(String[] regs) { return regs.length == 1 ? regs[0] : "{" + String.join(", ", regs) + "}"; }

        private void wgmma(int n, String[] acc, String[] a, String desc) {
            op("wgmma.mma_async.sync.aligned.m64n" + n + "k8.f32.tf32.tf32 {" + String.join(", ", acc) + "}, {" + String.join(", ", a) + "}, "
                    + desc + ", 1, 1, 1;");
        }

        /**
         * A residual MLP block in one kernel ({@link Kernel.Mlp}), on the tensor cores (tf32): 128 rows per block,
         * 16 warps. The block's rows are normalised once into shared memory; then for each 64-column chunk of the
         * hidden activation, the up-projection's 128×64 piece (each warp 32×16 of it) goes through its epilogue
         * (bias, activation) into shared memory, and the down-projection adds that chunk's product into 128×h
         * accumulators that stay in registers to the end (each warp 32×h/4), where the down-projection's epilogue
         * (bias, residual) stores the block's output. So a row costs one read and one write of h floats, where the
         * three kernels it replaces moved 2h + 2e more: the normalised rows and the hidden activation, each
         * written and read back. The weights (L2-resident) stream through one 4-stage cp.async pipeline of equal
         * slices, up slices and down slices in turn, so that every stage index is known when the kernel is
         * written: a chunk is 16 slices (h = 256) or 8, both whole multiples of the 4 stages.
         */
        private void mlp(Kernel.Mlp m) {
            int h = m.domain().cols(), e = m.up().domain().cols();
            int lnStride = h + 4, actStride = MLP_CHUNK + 4, upStride = MLP_CHUNK + 8, downStride = h + 8;
            int downK = MLP_SLICE / h, upSteps = h / MLP_UP_K, steps = upSteps + MLP_CHUNK / downK, chunks = e / MLP_CHUNK;
            int stageBytes = 4 * mlpStageFloats(h), ahead = MLP_STAGES - 1, downTiles = h / 32;
            if (steps % MLP_STAGES != 0) throw new IllegalStateException(m.name() + ": " + steps + " slices a chunk");
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
            record Slice(int s, boolean next, String valid, int stage) {}
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
                String dst = bin("add.s64", stages, wideBytes(bin("shl.b32", mad(row, Integer.toString(up ? upStride : downStride), q), "2")));
                op((sl.valid() == null ? "" : "@" + sl.valid() + " ") + "cp.async.cg.shared.global [" + dst + "+" + sl.stage() * stageBytes
                        + "], [" + address(w.array(), bin("add.s32", src, Integer.toString(offset))) + "], 16, 16;");
                op("cp.async.commit_group;");
            };
            comment("the first " + ahead + " weight slices on their way while the rows are normalised");
            for (int s = 0; s < ahead; s++) issue.accept(new Slice(s, false, null, s));

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
                String mean = warpMean(sum, h), sq = accumulator();
                for (int q = 0; q < perLane; q++) {
                    String t = bin("sub.f32", v[q], mean);
                    op("fma.rn.f32 " + sq + ", " + t + ", " + t + ", " + sq + ";");
                }
                String rstd = rstd(warpMean(sq, h));
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

            String top = newLabel("chunk"), done = newLabel("chunk_end");
            label(top);
            op(".pragma \"nounroll\";");
            op("@" + pred("ge.s32", chunk, Integer.toString(chunks)) + " bra " + done + ";");
            String moreChunks = pred("lt.s32", bin("add.s32", chunk, "1"), Integer.toString(chunks));
            for (int i = 0; i < steps; i++) {
                int stage = i % MLP_STAGES, s = i + ahead;
                comment("slice " + i + " of " + steps + " (" + (i < upSteps ? "up, K rows " + MLP_UP_K * i : "down, K rows " + downK * (i - upSteps))
                        + " of the chunk) in stage " + stage + "; slice " + s % steps + (s < steps ? "" : " of the next chunk") + " on its way");
                op("cp.async.wait_group " + (ahead - 1) + ";");
                op("bar.sync 0;");
                issue.accept(new Slice(s % steps, s >= steps, s >= steps ? moreChunks : null, s % MLP_STAGES));
                // The up chunk's accumulators start at zero here, so that they hold no registers through the down slices.
                if (i == 0) for (String[][] a : upAcc) for (String[] b : a) for (String x : b) op("mov.f32 " + x + ", 0f00000000;");
                if (i < upSteps) {
                    for (int ks = 0; ks < MLP_UP_K; ks += 8) {
                        String[][][] bf = new String[2][][];
                        for (int jn = 0; jn < 2; jn++) {
                            int at = stage * stageBytes + 4 * (ks * upStride + 8 * jn);
                            bf[jn] = tf32(new String[]{sharedB32(upRead, at), sharedB32(upRead, at + 16 * upStride)});
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
                            int at = stage * stageBytes + 4 * (ks * downStride + 8 * jn);
                            String[][] bf = tf32(new String[]{sharedB32(downRead, at), sharedB32(downRead, at + 16 * downStride)});
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
            for (int ti = 0; ti < 2; ti++) for (int jn = 0; jn < downTiles; jn++) for (int q = 0; q < 4; q++) {
                String row = bin("add.s32", bin("add.s32", row0, accRow), Integer.toString(16 * ti + 8 * (q / 2)));
                String col = bin("add.s32", outCol, Integer.toString(8 * jn + q % 2));
                emit(m.down(), rows, Integer.toString(h), new Out(row, col, downAcc[ti][jn][q]));
            }
        }

        /** An A fragment from on-chip operands: as it is (already TF32), or for 3xTF32 split into {heads, remainders}. */
        private String[][] fragment(String[] words, boolean split) {
            return split ? tf32(words) : new String[][]{words};
        }

        /** acc += a·b in TF32: one mma, or 3xTF32's three (remainder products first), given {heads[, remainders]}. */
        private void mmas(String[] acc, String[][] a, String[][] b) {
            if (a.length > 1) {
                mma(acc, a[1], b[0]);
                mma(acc, a[0], b[1]);
            }
            mma(acc, a[0], b[0]);
        }

        /** An fp32 value rounded to TF32, as the mma reads it. */
        private String roundTf32(String x) {
            String y = r();
            op("cvt.rna.tf32.f32 " + y + ", " + x + ";");
            return y;
        }

        /** Floats of one pipeline stage of a tensor-core GEMM's A: 128 rows of MMA_A_ROW (NN), or SLICE_K rows of A_STRIDE (TN). */
        private static int mmaStageA(Kernel.Gemm g) { return g.transposeA() ? SLICE_K * A_STRIDE : BM * MMA_A_ROW; }

        /**
         * The tensor-core GEMMs' K loop: a cp.async pipeline over the tile's stages. Slices are copied {@code ahead}
         * slices before they are computed: each trip waits for its own slice's copies, meets the block at one
         * barrier and refills the stage of the slice {@code stages - ahead} trips back, which every thread is done
         * with by then. For mma.sync, ahead = stages - 1 (3 stages for 128×64: slices s+1 and s+2 on their way while
         * s is computed; 2 for 128×128). For wgmma, ahead = stages - 2: the slice before is still being multiplied
         * asynchronously while this one is issued, and its stage is refilled a trip later. Copies outside the
         * matrices or the K range are zero-filled (src-size 0, from a valid address).
         */
        private void asyncKLoop(Kernel.Gemm g, Frame t, Copies ac, int aStage, int ahead, java.util.function.Consumer<String> landed,
                                java.util.function.BiConsumer<String, String> compute) {
            int stages = tile.stages();
            Copies bc = kRowCopies(g.b(), tile.bn(), g.domain().cols(), t.col0(), t.n(), tile.bStride(), t.tid());
            int bStage = SLICE_K * tile.bStride();
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
            for (int s = 0; s < ahead; s++) issue.accept(bin("add.s32", t.kBegin(), Integer.toString(s * SLICE_K)), Integer.toString(s));
            String kCur = r(), kNext = r(), readStage = r(), writeStage = r();
            op("mov.u32 " + kCur + ", " + t.kBegin() + ";");
            op("add.s32 " + kNext + ", " + t.kBegin() + ", " + ahead * SLICE_K + ";");
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
            comment("slice k+" + ahead * SLICE_K + " into the stage computed " + (stages - ahead) + " trip(s) ago, then compute this one");
            issue.accept(kNext, writeStage);
            compute.accept(bufferBase(t.as(), readStage, aStage), bufferBase(t.bs(), readStage, bStage));
            op("add.s32 " + kCur + ", " + kCur + ", " + SLICE_K + ";");
            op("add.s32 " + kNext + ", " + kNext + ", " + SLICE_K + ";");
            nextStage(readStage, stages);
            nextStage(writeStage, stages);
            op("bra " + top + ";");
            label(done);
            op("cp.async.wait_group 0;");
        }

        /**
         * The copies of a tensor-core GEMM's A: a TN GEMM's A ([K, M]) kept as it is, K row by K row; an NN GEMM's
         * ([M, K]) a chunk of aw K of one row each. For mma.sync, rows of MMA_A_ROW floats, consecutive threads
         * along a row. For wgmma, core matrices (see {@link #WG_A_STAGE_BYTES}), which consecutive threads fill in
         * the order they lie: a row's 16 bytes, the core matrix's 8 rows, the 4 along K, then the next row group.
         * So thread i's first chunk lies at byte 4·aw·i, and a warp's chunks are contiguous: 3xTF32's in-place
         * split reads and writes them without bank conflicts.
         */
        private Copies aCopies(Kernel.Gemm g, Frame t, boolean coreMatrices) {
            Buf a = g.a();
            if (g.transposeA()) return kRowCopies(a, tile.bm(), a.shape().cols(), t.row0(), t.m(), A_STRIDE, t.tid());
            // A thread's copies step by the same amounts from the first: a block's threads' chunks on is a fixed
            // number of rows further down (the tile's rows are whole multiples of chunks), so one set of registers
            // and immediate offsets describe them all, however many 4-byte copies an odd shape needs.
            int aw = chunkWidth(g.k(), a.offset()), perRow = SLICE_K / aw, down = tile.threads() / perRow;
            String row, kk, sharedBytes;
            int sharedStep;
            if (coreMatrices) {
                int perCoreRow = 4 / aw;   // chunks in a core matrix's 16-byte row: 1, or 4 of one float
                String r8 = bin("and.b32", aw == 4 ? t.tid() : bin("shr.u32", t.tid(), log2(perCoreRow)), "7");
                String kCore = bin("and.b32", bin("shr.u32", t.tid(), log2(8 * perCoreRow)), "3");
                String rowGroup = bin("shr.u32", t.tid(), log2(32 * perCoreRow));
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
            return new Copies(a, aw, tile.bm() * SLICE_K / aw / tile.threads(), kk, 0, "1",
                    bin("add.s32", mad(gRow, Integer.toString(g.k()), kk), Integer.toString(a.offset())), down * g.k(), gRow, down, t.m(),
                    wideBytes(sharedBytes), sharedStep);
        }

        /**
         * This thread's cp.async copies of one operand per slice: copy l moves {@code width} floats of buf from
         * element kStride·kBase + fixed + l·fixedStep into the stage at sharedBytes + l·sharedStep (bytes), if
         * kBase + kk + l·kkStep is inside K and at + l·atStep (its row or column) is below limit.
         */
        private record Copies(Buf buf, int width, int count, String kk, int kkStep, String kStride, String fixed, int fixedStep,
                              String at, int atStep, String limit, String sharedBytes, int sharedStep) {}

        /**
         * Copies of a tile kept K row by K row (a TN GEMM's A, and every B): a chunk is consecutive elements of one
         * K row of buf (rowLen apart in memory), tileCols of them from column origin, padded to stride in shared.
         */
        private Copies kRowCopies(Buf buf, int tileCols, int rowLen, String origin, String limit, int stride, String tid) {
            int width = chunkWidth(rowLen, buf.offset()), perRow = tileCols / width, down = tile.threads() / perRow;
            String kk = bin("shr.u32", tid, log2(perRow)), col = bin("shl.b32", bin("and.b32", tid, Integer.toString(perRow - 1)), log2(width));
            String gCol = bin("add.s32", origin, col);
            return new Copies(buf, width, SLICE_K * tileCols / width / tile.threads(), kk, down, Integer.toString(rowLen),
                    bin("add.s32", mad(kk, Integer.toString(rowLen), gCol), Integer.toString(buf.offset())), down * rowLen, gCol, 0, limit,
                    wideBytes(bin("shl.b32", mad(kk, Integer.toString(stride), col), "2")), 4 * down * stride);
        }

        /** 16-byte copies where rows and the offset keep every chunk aligned and whole, else 4-byte ones. */
        private static int chunkWidth(int rowLength, int offset) { return rowLength % 4 == 0 && offset % 4 == 0 ? 4 : 1; }

        private static String log2(int v) { return Integer.toString(Integer.numberOfTrailingZeros(v)); }

        private void nextStage(String stage, int stages) {
            op("add.s32 " + stage + ", " + stage + ", 1;");
            String wrap = pred("eq.s32", stage, Integer.toString(stages));
            op("selp.s32 " + stage + ", 0, " + stage + ", " + wrap + ";");
        }

        /** Four 32-bit words by ldmatrix.x4: an NN GEMM's A fragment A(g, t), A(g+8, t), A(g, t+4), A(g+8, t+4). */
        private String[] ldmatrix(String base, int byteOffset) {
            String[] v = {r(), r(), r(), r()};
            op("ldmatrix.sync.aligned.m8n8.x4.shared.b16 {" + String.join(", ", v) + "}, [" + base + "+" + byteOffset + "];");
            return v;
        }

        /** A TN GEMM's A fragment of m tile i at k step ks, from the K-major tile: A(g, t), A(g+8, t), A(g, t+4), A(g+8, t+4). */
        private String[] aFragmentTn(String aRead, int ks, int i) {
            String[] af = new String[4];
            for (int e = 0; e < 4; e++) af[e] = sharedB32(aRead, 4 * ((ks + (e >= 2 ? 4 : 0)) * A_STRIDE + 16 * i + (e % 2 == 1 ? 8 : 0)));
            return af;
        }

        /** This lane's fp32 words of A's m16n8k8 fragment for m tile i at k step ks: by ldmatrix (NN) or 32-bit loads (TN). */
        private String[] aWords(String aRead, boolean nn, int ks, int i) {
            return nn ? ldmatrix(aRead, 4 * (16 * i * MMA_A_ROW + ks)) : aFragmentTn(aRead, ks, i);
        }

        /** This lane's fp32 words of B's m16n8k8 fragment for n tile j at k step ks: B(t, g), B(t+4, g). */
        private String[] bWords(String bRead, int ks, int j) {
            int stride = tile.bStride();
            return new String[]{sharedB32(bRead, 4 * (ks * stride + 8 * j)), sharedB32(bRead, 4 * ((ks + 4) * stride + 8 * j))};
        }

        /**
         * An m16n8k16 bf16 A fragment from the two m16n8k8 fragments of a 16-deep slice. Its K order is the
         * slice's permuted, k_(2t, 2t+1) ↦ (t, t+4) and k_(2t+8, 2t+9) ↦ (t+8, t+12), and {@link #bf16B}
         * permutes B alike, so each product still pairs A and B at the same k; the fp32 fragments'
         * conflict-free loads serve bf16 unchanged. A pair's lower k goes in the lower half.
         */
        private String[] bf16A(String[] lo, String[] hi) {
            return new String[]{pack(lo[2], lo[0]), pack(lo[3], lo[1]), pack(hi[2], hi[0]), pack(hi[3], hi[1])};
        }

        /** An m16n8k16 bf16 B fragment: B(t, g) and B(t+4, g), then B(t+8, g) and B(t+12, g), permuted as {@link #bf16A}. */
        private String[] bf16B(String[] lo, String[] hi) {
            return new String[]{pack(lo[1], lo[0]), pack(hi[1], hi[0])};
        }

        /** Two fp32 values rounded to bf16 in one register: {@code upper} in the high half, {@code lower} in the low. */
        private String pack(String upper, String lower) {
            String v = r();
            op("cvt.rn.bf16x2.f32 " + v + ", " + upper + ", " + lower + ";");
            return v;
        }

        private void mmaBf16(String[] acc, String[] a, String[] b) {
            String c = "{" + String.join(", ", acc) + "}";
            op("mma.sync.aligned.m16n8k16.row.col.f32.bf16.bf16.f32 " + c + ", {" + String.join(", ", a) + "}, {" + String.join(", ", b) + "}, " + c + ";");
        }

        /** fp32 fragment words as the mma takes them: {TF32 heads} or, for 3xTF32, {heads, TF32 remainders}. */
        private String[][] tf32(String[] words) {
            String[] hi = new String[words.length], lo = new String[words.length];
            for (int e = 0; e < words.length; e++) {
                hi[e] = roundTf32(words[e]);
                if (matmul == Matmul.TF32X3) lo[e] = roundTf32(bin("sub.f32", words[e], hi[e]));
            }
            return matmul == Matmul.TF32X3 ? new String[][]{hi, lo} : new String[][]{hi};
        }

        private void mma(String[] acc, String[] a, String[] b) {
            String c = "{" + String.join(", ", acc) + "}";
            op("mma.sync.aligned.m16n8k8.row.col.f32.tf32.tf32.f32 " + c + ", {" + String.join(", ", a) + "}, {" + String.join(", ", b) + "}, " + c + ";");
        }

        /** A 32-bit word (a TF32 value) from shared memory. */
        private String sharedB32(String base, int byteOffset) {
            String v = r();
            op("ld.shared.b32 " + v + ", [" + base + "+" + byteOffset + "];");
            return v;
        }

        private String wideBytes(String bytes32) {
            String w = rd();
            op("cvt.u64.u32 " + w + ", " + bytes32 + ";");
            return w;
        }

        /** The shared-memory address of float slot idx of an array whose address is in base. */
        private String sharedSlot(String base, String idx) {
            String wide = rd(), a = rd();
            op("mul.wide.u32 " + wide + ", " + idx + ", 4;");
            op("add.s64 " + a + ", " + base + ", " + wide + ";");
            return a;
        }
    }
}
