package dev.cmc.render;

import dev.cmc.ir.Shape;
import dev.cmc.kernel.*;

import java.util.ArrayList;
import java.util.List;

/**
 * Kernel IR to PTX (ISA 8.0, sm_80 or sm_90), written directly: no nvcc, no NVRTC. This class is the module and
 * the plan the runtime launches it by: which GEMM arithmetic ({@link Matmul}) and tiles ({@link Tiling},
 * {@link Tile}), each kernel's grid ({@link #launch}), how K is split ({@link #splits}, {@link #workspaceFloats})
 * and which MLP blocks fuse ({@link #fits}). Each kernel is written by the family it belongs to:
 * <ul>
 *   <li>{@link PtxGemm}: GEMMs on the FMA units or the tensor cores' mma.sync, split over K where few output
 *       tiles would leave the GPU idle; {@link PtxWgmmaGemm}: Hopper's warpgroup wgmma (sm_90a).</li>
 *   <li>{@link PtxMlp}: a residual MLP block in one kernel, its intermediates on chip (sm_90); {@link PtxWgmmaMlp}:
 *       the same on wgmma (tf32, sm_90a).</li>
 *   <li>{@link PtxBandwidthKernels}: elementwise kernels, row normalisations, reductions, transposes, Adam + EMA.</li>
 * </ul>
 * {@link PtxFunction}, their base, holds a kernel's registers and instructions and writes the IR's expressions.
 * Transcendentals use the hardware's ex2/lg2/sin/cos units with range reduction where it matters, and the
 * activations divide with div.full (2 ulp); the results agree with the float64 reference to ~1e-6 relative,
 * not bit for bit with the other backends.
 */
public final class PtxRenderer {
    public static final int BLOCK = 256;
    /** Warps per 256-thread block: a row kernel's rows per block. */
    static final int WARPS = BLOCK / 32;
    /**
     * Row slices of a batch reduction's block, a warp each: a column's 4,096 rows are 128 a warp, not 512 as in
     * 8 warps, where the loop's trips to L2 in a row bound the kernel (14 µs each for the 17 bias and LayerNorm
     * gradients of the CT step at 4,096 rows on an H200, 8 to 32 blocks apiece).
     */
    static final int REDUCE_SLICES = 32, REDUCE_THREADS = 32 * REDUCE_SLICES;
    /** GEMM block tile (BM×BN outputs); shared rows padded so that a warp's fragment reads hit 32 different banks. */
    static final int BM = 128, BN = 64, A_STRIDE = BM + 8, B_STRIDE = BN + 8;
    /**
     * K depth of a GEMM's slice, FMA and tensor-core alike; split-K cuts K into whole multiples of it.
     * The tensor-core GEMMs' pipeline: STAGES slices filled by cp.async, so that two slices are
     * in flight while the third is computed. An NN GEMM's A slice is kept row by row (MMA_A_ROW floats: 16 of
     * K and a pad that spreads a fragment's 8 rows over all banks and keeps every row 16-byte aligned for
     * ldmatrix); a TN GEMM's A and every B are kept K row by K row, padded like the FMA tiles.
     */
    static final int SLICE_K = 16, STAGES = 3, MMA_A_ROW = SLICE_K + 4;
    /** A tensor-core GEMM warp's m16n8 tiles down (16×4 = 64 rows) and, by default, across (8×4 = 32 columns). */
    static final int WARP_M_TILES = 4, WARP_N_TILES = 4;
    /**
     * The wgmma GEMMs: threads per warpgroup; a stage's A slice (128 rows × the tile's slice depth) is kept as
     * wgmma's core matrices (8 rows × 16 bytes, 128 contiguous bytes each), those of a row group side by side in
     * K (LBO = 128 bytes apart) and the 16 row groups one after another ({@link Tile#sbo}).
     */
    static final int WARPGROUP = 128, WG_LBO = 128;
    /** wgmma's pipeline: slices s+1 and s+2 copied while s is issued and s-1 still multiplied; s-2's stage refilled. */
    static final int WG_STAGES = 4;
    static final String DYNAMIC_SHARED = "dsmem";
    /**
     * Split K, so that GEMMs with few output tiles still fill the GPU. A TN GEMM (K = the batch) is cut into one
     * K slice per 512 rows, or as many as its tiles fit in one wave of the GPU if that is more, at most 16. An NN
     * GEMM over the batch is cut into as many slices as its tiles fit in one wave (see {@link #splits}), at most
     * 8. Either's slices are at least 64 deep. An NN GEMM over fixed rows (at most 512) with K of 1024+: 8.
     */
    private static final int SPLIT_ROWS = 512, MAX_SPLITS = 16, LONG_K = 1024, FEW_ROWS = 512, NN_SPLITS = 8, MIN_SLICE_K = 64;
    /**
     * The most K slices of a GEMM summed across a cluster ({@link Tile#summedByCluster}): 8, the largest cluster
     * every sm_90 GPU launches without opting in to non-portable sizes.
     */
    public static final int CLUSTER_SLICES = 8;
    /**
     * What split K fills: the GPU's SMs, each with 64K registers, which bound how many GEMM blocks it holds (at
     * most 4). At most an H100's or H200's 132 SMs: the tile counters in the workspace cover the tiles of a
     * split grid on that many, so a GPU with more (a B200's 148) fills 132 of them.
     */
    public static final int MOST_SMS = 132;
    private static final int REGISTERS_PER_SM = 65536, MOST_BLOCKS_PER_SM = 4;
    static final String WORKSPACE = "workspace";

    /**
     * A fused MLP block ({@link PtxMlp}): 128 rows per block in 512 threads; the hidden activation made 64 columns
     * at a time; the weights streamed through a 6-stage cp.async pipeline in slices of 2048 floats (32 K rows of
     * the up-projection's 64 columns, or 2048/h K rows of the down-projection's h columns), one 16-byte copy per
     * thread each. Six stages, not four, where h = 256 leaves room for them (218 KB of the 227 an H100's block may
     * have): five slices in flight, not three, since the block is the SM's only one and a slice's copies are all
     * it has in flight to hide the trip to L2 (the third H200 run's fused tf32 sampler streamed its weights at
     * about 1.6 TB/s, 27 KB in flight an SM).
     */
    public static final int MLP_ROWS = 128;
    static final int MLP_THREADS = 512, MLP_CHUNK = 64, MLP_UP_K = 32, MLP_STAGES = 6,
            MLP_SLICE = MLP_THREADS * 4;

    /**
     * A fused tf32 MLP block on wgmma ({@link PtxWgmmaMlp}): 128 rows per block in two warpgroups; the weights
     * streamed in slices of 4096 floats (16 KB: 64 K rows of the up-projection's 64 columns, or 4096/h of the
     * down-projection's h) through 6 stages, 4 slices (64 KB) in flight, beside the normalised rows (128 KB at
     * h = 256): 224 KB.
     */
    static final int WG_MLP_THREADS = 2 * 128, WG_MLP_SLICE = 4096, WG_MLP_STAGES = 6;

    /** Whether fused MLP blocks run on wgmma ({@link PtxWgmmaMlp}) in this arithmetic and tiling: tf32 under WGMMA_MLP or WGMMA_CHAIN (bulk or not). */
    static boolean wgmmaMlp(Matmul matmul, Tiling tiling) {
        return matmul == Matmul.TF32 && (tiling == Tiling.WGMMA_MLP || tiling == Tiling.WGMMA_CHAIN || tiling.bulk());
    }

    /** Whether this block runs on wgmma: where {@link #wgmmaMlp} and {@link #fuseMlps} gave it its weights transposed. */
    static boolean onWgmma(Kernel.Mlp m, Matmul matmul, Tiling tiling) {
        return wgmmaMlp(matmul, tiling) && m.transposedWeights();
    }

    /** A wgmma MLP block's dynamic shared memory: the normalised rows as core matrices, the weight stages (and, for bulk copies, their mbarriers). */
    static int wgmmaMlpSharedBytes(int h, Tiling tiling) {
        return 4 * (MLP_ROWS * h + WG_MLP_STAGES * WG_MLP_SLICE) + (tiling.bulk() ? 8 * WG_MLP_STAGES : 0);
    }

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
     *       all 128 rows with wgmma.mma_async, 4 stages of 16-deep slices in dynamic shared memory, each 8-deep K
     *       step a commit group of its own (see {@link PtxWgmmaGemm}).</li>
     *   <li>WGMMA_DEEP, for tf32 on sm_90a: the same in 3 stages of 32-deep slices (100 KB, two blocks an SM),
     *       each step waiting for the group a slice back: four wgmma in flight a warpgroup instead of two, and half
     *       the barriers per multiply.</li>
     *   <li>WGMMA_WIDE, for GEMMs of 256 columns or more: 128×256 as four warpgroups of 64 columns (one block an
     *       SM), which share each A slice, so that A crosses from L2 once per 256 columns, not per 128, and 3xTF32
     *       splits it once for twice the products. As many stages as about 200 KB of shared memory hold (6 for
     *       3xTF32, 8 for tf32): 4 and 6 slices in flight, against 2 a block (4 an SM) in 128×128 tiles, whose
     *       two blocks an SM leave no room for more. The third H200 run's GEMMs looked bound by the bytes in
     *       flight: tf32 moved no more data per second than 3xTF32 at a third of the products, and 32-deep
     *       slices (the same bytes ahead) gained nothing.</li>
     * </ul>
     * sliceK is the K depth of a slice, which split K cuts K into whole multiples of.
     */
    public record Tile(int bm, int bn, int stages, int warpNTiles, boolean warpgroups, int sliceK, boolean refillEarly, boolean clusterSum) {
        public Tile(int bm, int bn, int stages, int warpNTiles, boolean warpgroups, int sliceK) {
            this(bm, bn, stages, warpNTiles, warpgroups, sliceK, false, false);
        }

        public static final Tile NARROW = new Tile(BM, BN, STAGES, WARP_N_TILES, false, SLICE_K),
                WIDE = new Tile(BM, 2 * BN, 2, WARP_N_TILES, false, SLICE_K),
                WIDE_WARPS = new Tile(BM, 2 * BN, 2, 2 * WARP_N_TILES, false, SLICE_K),
                WGMMA = new Tile(BM, 2 * BN, WG_STAGES, 0, true, SLICE_K),
                WGMMA_DEEP = new Tile(BM, 2 * BN, 3, 0, true, 2 * SLICE_K),
                WGMMA_WIDE = new Tile(BM, 4 * BN, 6, 0, true, SLICE_K),
                WGMMA_WIDE_TF32 = new Tile(BM, 4 * BN, 8, 0, true, SLICE_K);

        /**
         * The same wgmma tile refilling each stage a trip sooner ({@link Tiling#WGMMA_MIXED_EARLY}): once the
         * last multiply that reads it has retired, part-way through the next slice, behind a second barrier a
         * trip, rather than at the top of the trip after; and one stage more, in the shared memory that 3xTF32's
         * remainders no longer take ({@link #remainderSlots}). Two slices more in flight: 4 of 5 stages in 128×128
         * tiles (two blocks an SM, 8 slices an SM instead of 4), 6 of 7 in 128×256 (instead of 4 of 6).
         */
        public Tile refilledEarly() { return warpgroups && !refillEarly ? new Tile(bm, bn, stages + 1, warpNTiles, true, sliceK, true, clusterSum) : this; }

        /**
         * The same wgmma tile with its split-K slices summed across a thread block cluster ({@link Tiling#clustered}):
         * the slices of one output tile are launched as one cluster (1×1×slices, at most {@link PtxRenderer#CLUSTER_SLICES}),
         * each block leaves its partial tile in its own shared memory, and after one cluster barrier each sums its
         * share of the tile's rows from every block's shared memory (DSMEM), in slice order, and runs the epilogue:
         * no partials through L2, no counter, no last block summing the whole tile alone (see {@link PtxGemm#finish}).
         */
        public Tile summedByCluster() { return warpgroups ? new Tile(bm, bn, stages, warpNTiles, true, sliceK, refillEarly, true) : this; }

        /** Floats between rows of a cluster-summed partial tile in shared memory: 4 more than a row, so that the accumulators' stores hit 32 banks. */
        int clusterStride() { return bn + 4; }

        /**
         * 3xTF32's A remainders in an early-refilled tile: a ring of 2 slots after the stages, not one a stage.
         * A remainder is read by its slice's multiplies alone, and the slice two back has retired by the barrier
         * part-way through the slice before, so two serve. The shared memory saved holds one stage more in
         * about as much: 128×128 in 5 stages (98.5 KB, two blocks an SM), 4 in flight instead of 2; 128×256 in 7.
         */
        int remainderSlots(Matmul matmul) {
            return matmul != Matmul.TF32X3 ? 0 : refillEarly ? 2 : stages;
        }

        /** Slices in flight while one is multiplied: wgmma's stage a slice back is still read by its last step's multiply. */
        public int ahead() { return warpgroups && !refillEarly ? stages - 2 : stages - 1; }

        /** Bytes of a wgmma stage's A slice as core matrices. */
        int aStageBytes() { return bm * sliceK * 4; }

        /** Bytes between a wgmma A slice's row groups: its core matrices along K, LBO apart. */
        int sbo() { return sliceK / 4 * WG_LBO; }

        public int threads() { return warpgroups ? bn / 64 * WARPGROUP : bm / (16 * WARP_M_TILES) * (bn / (8 * warpNTiles)) * 32; }

        /**
         * Dynamic shared memory of a wgmma tile: per stage, A's 128×16 slice as core matrices (twice for 3xTF32:
         * TF32 heads and remainders) and B's 16 K rows, padded; for a tile summed by cluster, at least its partial
         * tile (which the pipeline's holds, but for tf32's 128×128: 67.6 KB against 66.8); 0 for the other tiles,
         * whose arrays are static.
         */
        public int sharedBytes(Matmul matmul) {
            if (!warpgroups) return 0;
            int pipeline = stages * (aStageBytes() + 4 * sliceK * bStride()) + remainderSlots(matmul) * aStageBytes();
            return clusterSum ? Math.max(pipeline, 4 * bm * clusterStride()) : pipeline;
        }

        int bStride() { return bn + 8; }

        /**
         * The registers a thread may use (.maxnreg): a 64-float accumulator tile, fragments and addresses in 128
         * (four 128-thread blocks per SM) rather than spills to fit ptxas's own occupancy guess; 3xTF32, which keeps
         * heads and remainders of its fragments, 168 (three blocks). A 64×64 warp tile holds twice the
         * accumulators: 232 (two 128-thread blocks). A wgmma warpgroup's 64 accumulators a thread: 128 (two
         * 256-thread blocks, or one of 512).
         */
        public int registers(Matmul matmul) {
            return warpgroups ? 128 : warpNTiles > WARP_N_TILES ? 232 : matmul == Matmul.TF32X3 ? 168 : 128;
        }

        /** Blocks of this tile an SM holds at once, as its 64K registers allow. */
        public int blocksPerSm(Matmul matmul) { return REGISTERS_PER_SM / (threads() * registers(matmul)); }
    }

    /**
     * How a program's tensor-core GEMMs are tiled: all 128×64, or 128×128 for those with 128 columns or more:
     * by mma.sync warps (WIDE, NN GEMMs only: weight gradients, TN and split over the batch, keep 128×64), or for
     * tf32 and 3xTF32 by wgmma warpgroups (WGMMA, sm_90 only: the module targets sm_90a), NN and TN alike;
     * WGMMA_NN leaves the TN GEMMs in 128×64 mma.sync tiles, as WGMMA did before TN GEMMs had a wgmma path, to
     * time the one against the other; WGMMA_WIDE tiles those of 256 columns or more 128×256; WGMMA_MLP tiles as
     * WGMMA does and runs fused tf32 MLP blocks on wgmma too ({@link PtxWgmmaMlp}); WGMMA_CHAIN runs each run of
     * consecutive such blocks as one kernel ({@link Kernel.MlpChain}), the residual stream on chip, with the input
     * and output projections around them where they qualify. WGMMA_MLP_BULK and WGMMA_CHAIN_BULK are those two
     * with each weight slice one bulk copy (cp.async.bulk, completing on an mbarrier) instead of 1,024 16-byte
     * cp.async, from weights packed slice by slice (see {@link PtxWgmmaMlp}). WGMMA_MIXED picks each GEMM's
     * tile by its shape, as the fourth H200 run timed them in one call at 4,096 rows (see {@link #tile});
     * WGMMA_MIXED_EARLY and WGMMA_WIDE_EARLY those of WGMMA_MIXED and WGMMA_WIDE with more slices in flight
     * ({@link Tile#refilledEarly}); WGMMA_MIXED_CLUSTER and WGMMA_MIXED_EARLY_CLUSTER those of the two mixed tilings
     * with split K summed across a thread block cluster ({@link Tile#summedByCluster}). fp32 FMA
     * GEMMs are always 128×64; under the wgmma tilings, bf16 GEMMs and the narrower ones keep 128×64 mma.sync tiles.
     */
    public enum Tiling {
        NARROW("narrow", ""), WIDE("wide", "128x128 tiles"), WGMMA("wgmma", "128x128 wgmma tiles"),
        WGMMA_DEEP("wgmma-deep", "128x128 wgmma tiles, 32-deep for tf32"),
        WGMMA_NN("wgmma-nn", "128x128 wgmma tiles for NN GEMMs only"),
        WGMMA_WIDE("wgmma-wide", "128x256 wgmma tiles"),
        WGMMA_MIXED("wgmma-mixed", "128x128 wgmma tiles, 128x256 for 1024+ columns"),
        WGMMA_MIXED_EARLY("wgmma-mixed-early", "128x128 wgmma tiles, 128x256 for 1024+ columns, stages refilled a trip sooner"),
        WGMMA_WIDE_EARLY("wgmma-wide-early", "128x256 wgmma tiles, stages refilled a trip sooner"),
        WGMMA_MIXED_CLUSTER("wgmma-mixed-cluster", "128x128 wgmma tiles, 128x256 for 1024+ columns, split K summed across a cluster"),
        WGMMA_MIXED_EARLY_CLUSTER("wgmma-mixed-early-cluster",
                "128x128 wgmma tiles, 128x256 for 1024+ columns, stages refilled a trip sooner, split K summed across a cluster"),
        WGMMA_MLP("wgmma-mlp", "128x128 wgmma tiles, tf32 MLP blocks on wgmma"),
        WGMMA_CHAIN("wgmma-chain", "128x128 wgmma tiles, tf32 MLP blocks on wgmma, chained"),
        WGMMA_MLP_BULK("wgmma-mlp-bulk", "128x128 wgmma tiles, tf32 MLP blocks on wgmma fed by bulk copies"),
        WGMMA_CHAIN_BULK("wgmma-chain-bulk", "128x128 wgmma tiles, tf32 MLP blocks on wgmma fed by bulk copies, chained");

        /** Its CMC_CUDA_TILES value, and what a module's header and a device's name say of it (none for the default). */
        public final String setting, description;

        Tiling(String setting, String description) {
            this.setting = setting;
            this.description = description;
        }

        /** Whether the module has wgmma GEMMs, and so targets sm_90a. */
        public boolean wgmma() { return this != NARROW && this != WIDE; }

        /** Whether wgmma MLP blocks take their weight slices by bulk copies. */
        public boolean bulk() { return this == WGMMA_MLP_BULK || this == WGMMA_CHAIN_BULK; }

        /** Whether it tiles each GEMM by its shape ({@link #tile}). */
        public boolean mixed() { return this == WGMMA_MIXED || this == WGMMA_MIXED_EARLY || clustered(); }

        /** Whether its wgmma tiles refill each stage a trip sooner ({@link Tile#refilledEarly}). */
        public boolean early() { return this == WGMMA_MIXED_EARLY || this == WGMMA_WIDE_EARLY || this == WGMMA_MIXED_EARLY_CLUSTER; }

        /** Whether its split wgmma GEMMs sum their K slices across a thread block cluster ({@link Tile#summedByCluster}). */
        public boolean clustered() { return this == WGMMA_MIXED_CLUSTER || this == WGMMA_MIXED_EARLY_CLUSTER; }

        /** Whether consecutive wgmma MLP blocks run as one kernel. */
        public boolean chained() { return this == WGMMA_CHAIN || this == WGMMA_CHAIN_BULK; }

        /**
         * The tilings whose tiles a GEMM of this one may run in instead, kernel by kernel, where the runtime times
         * them (CMC_CUDA_TUNE_TILES=1): the same tile shapes with stages refilled a trip sooner, split K summed
         * across a cluster, or both; and for wgmma-mixed, 128×128 wgmma tiles where it takes 128×256 (the mixed
         * choice by shape, made on one H200 at 4,096 rows, timed again on the GPU at hand). Where the variant's tile
         * multiplies on the same instructions (wgmma, m64n128k8 a warpgroup), every output is the same sum in the
         * same order at a given slice count, so that the choice of tiling changes only the time (a slice count, as
         * ever, its rounding too); the runtime offers no variant on other instructions. None for the other tilings.
         */
        public List<Tiling> variants() {
            return switch (this) {
                case WGMMA_MIXED -> List.of(WGMMA_MIXED_EARLY, WGMMA_MIXED_CLUSTER, WGMMA_MIXED_EARLY_CLUSTER, WGMMA);
                case WGMMA_WIDE -> List.of(WGMMA_WIDE_EARLY);
                default -> List.of();
            };
        }
    }

    /**
     * A GEMM's tile under a tiling. WGMMA_MIXED chooses by shape, from one call of the fourth H200 run at 4,096
     * rows that timed every kernel in 128×128 and in 128×256 wgmma tiles (its other kernels within 3%), 3xTF32:
     * <ul>
     *   <li>NN GEMMs of {@link #MIXED_WIDE_COLUMNS} columns or more take 128×256: the up-projections (256 into
     *       1,024) 34.7–36.8 µs against 37.7–40.0, the target network's 28.6 against 32.2–33.1, the input
     *       gradients into the hidden activation 29.7–31.6 against 35.2–35.9 (tf32 alike, 10% less); those into
     *       256 columns took longer in 128×256 (down-projections 42.4–50.2 against 40.4–44.8: their K is cut into
     *       slices to fill the GPU, and 128×256 tiles leave half as many).</li>
     *   <li>TN GEMMs whose output has fewer rows than a tile (the input projection's weight gradient, 64 rows by
     *       256) take 128×64 mma.sync tiles: 20.8 µs against 28.1 (twice the blocks, half of each tile's rows
     *       wasted rather than three quarters), at the tail of the step's longest chain.</li>
     * </ul>
     */
    public static Tile tile(Kernel.Gemm g, Matmul matmul, Tiling tiling) {
        boolean wideEnough = tiling != Tiling.NARROW && matmul != Matmul.FMA && g.domain().cols() >= 2 * BN;
        boolean mixedFewRows = tiling.mixed() && g.transposeA() && !g.domain().batched() && g.domain().rows() < BM;
        if (wideEnough && tiling.wgmma() && (!g.transposeA() || tiling != Tiling.WGMMA_NN) && !mixedFewRows) {
            if (matmul == Matmul.BF16) return Tile.NARROW;
            boolean wide = tiling.mixed() ? !g.transposeA() && g.domain().cols() >= MIXED_WIDE_COLUMNS
                    : (tiling == Tiling.WGMMA_WIDE || tiling == Tiling.WGMMA_WIDE_EARLY) && g.domain().cols() >= 4 * BN;
            Tile t = wide ? (matmul == Matmul.TF32 ? Tile.WGMMA_WIDE_TF32 : Tile.WGMMA_WIDE)
                    : matmul == Matmul.TF32 && tiling == Tiling.WGMMA_DEEP ? Tile.WGMMA_DEEP : Tile.WGMMA;
            if (tiling.early()) t = t.refilledEarly();
            return tiling.clustered() && splitsK(g) ? t.summedByCluster() : t;
        }
        return !wideEnough || g.transposeA() ? Tile.NARROW : matmul == Matmul.TF32X3 ? Tile.WIDE : Tile.WIDE_WARPS;
    }

    /** The least columns of an NN GEMM that WGMMA_MIXED tiles 128×256: four such tiles across (see {@link #tile}). */
    public static final int MIXED_WIDE_COLUMNS = 16 * BN;

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
        return fuseMlps(p, matmul, Tiling.NARROW);
    }

    /**
     * The same for a module tiled so: under WGMMA_MLP, tf32's blocks read their weights transposed (see
     * {@link PtxWgmmaMlp}); under WGMMA_CHAIN, consecutive blocks also run as one kernel (see {@link dev.cmc.fusion.MlpFusion#chain});
     * under their BULK forms, the transposed weights are packed slice by slice ({@link PtxWgmmaMlp#packWeights}).
     */
    public static Program fuseMlps(Program p, Matmul matmul, Tiling tiling) {
        return fuseMlps(p, matmul, tiling, Integer.MAX_VALUE);
    }

    /** The same, fusing only blocks whose shared memory ({@link #mlpSharedBytes}) is at most what a block may have. */
    public static Program fuseMlps(Program p, Matmul matmul, Tiling tiling, int sharedPerBlock) {
        Program fused = dev.cmc.fusion.MlpFusion.fuse(p, m -> fits(m, matmul) && mlpSharedBytes(m.domain().cols(), matmul, tiling) <= sharedPerBlock);
        if (!wgmmaMlp(matmul, tiling) || fused == p) return fused;
        Program transposed = dev.cmc.fusion.MlpFusion.withTransposedWeights(fused);
        Program chained = tiling.chained() ? dev.cmc.fusion.MlpFusion.chain(transposed) : transposed;
        return tiling.bulk() ? PtxWgmmaMlp.packWeights(chained) : chained;
    }

    /**
     * The most shared memory a block may opt in to on an architecture's data-centre GPU: an A100's 163 KB for
     * sm_80, an H100's or H200's 227 KB for sm_90 (what `cmc compile` fuses for, having no device to ask).
     */
    public static int sharedPerBlock(String arch) {
        return arch.equals("sm_90") ? 232_448 : 166_912;
    }

    /** Floats of one stage of a fused MLP's weight pipeline: the larger of an up slice and a down slice, padded. */
    static int mlpStageFloats(int h) {
        return Math.max(MLP_UP_K * (MLP_CHUNK + 8), MLP_SLICE / h * (h + 8));
    }

    /** A fused MLP block's dynamic shared memory in this arithmetic and tiling. */
    public static int mlpSharedBytes(int h, Matmul matmul, Tiling tiling) {
        return wgmmaMlp(matmul, tiling) ? wgmmaMlpSharedBytes(h, tiling) : mlpSharedBytes(h);
    }

    /** A fused MLP's dynamic shared memory: the normalised rows, the hidden chunk, the weight stages (218 KB at h = 256, 154 KB at 128). */
    public static int mlpSharedBytes(int h) {
        return 4 * (MLP_ROWS * (h + 4) + MLP_ROWS * (MLP_CHUNK + 4) + MLP_STAGES * mlpStageFloats(h));
    }

    /** How kernel k is launched at this batch on a GPU of 132 SMs or more, its GEMMs multiplied and tiled so. */
    public static Launch launch(Kernel k, int batch, Matmul matmul, Tiling tiling) {
        return launch(k, batch, matmul, tiling, MOST_SMS);
    }

    /** How kernel k is launched at this batch on a GPU of this many SMs, its GEMMs multiplied and tiled so. */
    public static Launch launch(Kernel k, int batch, Matmul matmul, Tiling tiling, int sms) {
        return switch (k) {
            case Kernel.Gemm g -> {
                Tile t = tile(g, matmul, tiling);
                yield new Launch(ceil(g.domain().cols(), t.bn()), ceil(rows(g.domain(), batch), t.bm()), splits(g, batch, matmul, tiling, sms), t.threads(),
                        t.sharedBytes(matmul));
            }
            case Kernel.Normalize n -> new Launch(ceil(rows(n.domain(), batch), WARPS), 1, 1);
            case Kernel.ReduceCols r -> new Launch(ceil(rows(r.domain(), batch), WARPS), 1, 1);
            case Kernel.ReduceBatch r -> new Launch(ceil(r.domain().cols(), PtxBandwidthKernels.reduceColumns(r.domain().cols())), 1, 1, REDUCE_THREADS, 0);
            case Kernel.SegmentSum s -> new Launch(ceil((long) s.domain().rows() * s.domain().cols(), BLOCK), 1, 1);
            case Kernel.Transpose t when t.packing() != null -> new Launch(ceil(t.src().shape().rows() * t.src().shape().cols(), BLOCK), 1, 1);
            case Kernel.Transpose t -> new Launch(ceil(t.src().shape().cols(), PtxBandwidthKernels.TRANSPOSE_TILE),
                    ceil(t.src().shape().rows(), PtxBandwidthKernels.TRANSPOSE_TILE), 1);
            case Kernel.SumSquares s -> new Launch(1, 1, 1);
            case Kernel.AdamEma a -> new Launch(ceil(a.count() / PtxBandwidthKernels.adamWidth(a), BLOCK), 1, 1);
            case Kernel.Elementwise e -> new Launch((int) Math.max(1, ceil(rows(e.domain(), batch) * (long) e.domain().cols(), BLOCK)), 1, 1);
            case Kernel.MlpChain c -> new Launch(ceil(rows(c.domain(), batch), MLP_ROWS), 1, 1, WG_MLP_THREADS, wgmmaMlpSharedBytes(c.width(), tiling));
            case Kernel.Mlp m when onWgmma(m, matmul, tiling) ->
                    new Launch(ceil(rows(m.domain(), batch), MLP_ROWS), 1, 1, WG_MLP_THREADS, wgmmaMlpSharedBytes(m.domain().cols(), tiling));
            case Kernel.Mlp m -> new Launch(ceil(rows(m.domain(), batch), MLP_ROWS), 1, 1, MLP_THREADS, mlpSharedBytes(m.domain().cols()));
        };
    }

    /**
     * K slices of a GEMM at this batch, its GEMMs multiplied and tiled so. NN GEMMs over the batch: as many as keep
     * the grid within one wave of the GPU (132 SMs × the tile's blocks per SM, over its tiles), from 1 to 8, each
     * at least 64 deep. So a down-projection (K = 1,024 into 256 columns) in 128×64 tiles takes 8 slices up to
     * 1,024 rows; at 4,096 rows 4 for fp32 FMAs and tf32 (4 blocks an SM: 512 blocks for 528 places) and 3 for
     * 3xTF32 (3 an SM: 384 for 396, where 4 would run 1.3 waves); none from 16,384. An up-projection (K = 256
     * into 1,024 columns) takes 4 at 256 rows, none from 2,048 rows for 3xTF32 and from 4,096 for FMAs. TN GEMMs
     * (weight gradients): one per 512 rows, or as many as fill one wave where that is more, each at least 64 rows
     * deep, at most 16 (a 256×256 weight's gradient over 256 rows: 4). NN GEMMs over at most 512 fixed rows with
     * K of 1024+: 8; with shorter K, as NN GEMMs over the batch at their fixed rows (the σ table's embedding, 150
     * rows, K = 256: 4). Otherwise 1. It is the launch's grid depth, which the kernels read (%nctaid.z).
     */
    public static int splits(Kernel.Gemm g, int batch, Matmul matmul, Tiling tiling) {
        return splits(g, batch, matmul, tiling, MOST_SMS);
    }

    /**
     * The same on a GPU of this many SMs (at most {@link #MOST_SMS} count): an A100's 108 take fewer slices where
     * 132 would make 1.2 waves. Never more than on 132, so the workspace sized for 132 holds every slice.
     */
    public static int splits(Kernel.Gemm g, int batch, Matmul matmul, Tiling tiling, int sms) {
        if (!splitsK(g)) return 1;
        if (!g.domain().batched() && !g.transposeA() && g.k() >= LONG_K) return NN_SPLITS;
        Tile t = tile(g, matmul, tiling);
        int wave = Math.min(sms, MOST_SMS) * t.blocksPerSm(matmul), toFill = wave / tiles(g, batch, t);
        int most = t.clusterSum() ? CLUSTER_SLICES : MAX_SPLITS;
        if (g.transposeA()) return Math.min(most, Math.max(1, Math.max(batch / SPLIT_ROWS, Math.min(batch / MIN_SLICE_K, toFill))));
        return Math.max(1, Math.min(Math.min(NN_SPLITS, g.k() / MIN_SLICE_K), toFill));
    }

    /** The slice counts {@link #splitChoices} considers; the kernels take any (they read %nctaid.z). */
    private static final int[] SLICE_COUNTS = {1, 2, 3, 4, 6, 8, 12, 16, 24, 32};

    /**
     * The most slices a runtime may time a TN or fixed-row GEMM at, where its output is at most {@link #SMALL_OUTPUT}
     * floats; the workspace holds that many of its partial tiles. Such a GEMM has few tiles: the input projection's
     * weight gradient (64×256, K = the batch) is 4 tiles of 128×64, 64 blocks in the formula's 16 slices, half the
     * H200's SMs, and each of them is 256 rows deep. On the H200 both small weight gradients of the CT step at 4,096
     * rows kept the formula's 16 slices, the most on offer then, in every tiling of the fourth run: no fewer were 3%
     * faster. The input projection's is on the step's tail (28 µs there), after the last input gradient. More
     * slices cost a longer sum in the last block, so only the timing, not the formula, takes them.
     */
    private static final int TUNED_SPLITS = 32;

    /** Floats of a TN or fixed-row GEMM's output up to which its workspace holds {@link #TUNED_SPLITS} slices: a 256×256 weight's. */
    private static final int SMALL_OUTPUT = 256 * 256;

    /**
     * The slice counts a GEMM may be launched with at this batch, for a runtime that times them on its GPU and
     * takes the fastest: {@link #splits}'s own, and every other of 1, 2, 3, 4, 6, 8, 12, 16, 24 and 32 whose
     * slices are each at least 64 deep and none empty, and whose partial products and tile counters fit the
     * workspace {@link #workspaceFloats} sets aside for maxBatch (24 and 32 only for the small outputs that it
     * holds {@link #TUNED_SPLITS} slices of). Ascending. Just {1} for a GEMM that never splits.
     */
    public static List<Integer> splitChoices(Kernel.Gemm g, int batch, int maxBatch, Matmul matmul, Tiling tiling, int sms) {
        if (!splitsK(g)) return List.of(1);
        int own = splits(g, batch, matmul, tiling, sms), k = g.transposeA() ? batch : g.k();
        Tile t = tile(g, matmul, tiling);
        long room = workspaceFloats(g, maxBatch, matmul, tiling) - counterFloats(g), size = (long) rows(g.domain(), batch) * g.domain().cols();
        boolean counted = tiles(g, batch, t) <= counterFloats(g);
        var out = new ArrayList<Integer>();
        for (int s : SLICE_COUNTS) {
            int chunk = ceil(ceil(k, t.sliceK()), s) * t.sliceK();   // as the kernel cuts K (PtxGemm.frame)
            boolean fits = s == 1 || (k / s >= MIN_SLICE_K && (long) (s - 1) * chunk < k
                    && (t.clusterSum() ? s <= CLUSTER_SLICES : counted && s * size <= room));
            if (fits || s == own) out.add(s);
        }
        if (!out.contains(own)) {
            out.add(own);
            out.sort(null);
        }
        return List.copyOf(out);
    }

    /** Tiles of a GEMM's output at this batch (a fixed-row output's at any). */
    private static int tiles(Kernel.Gemm g, int batch, Tile t) {
        return ceil(rows(g.domain(), batch), t.bm()) * ceil(g.domain().cols(), t.bn());
    }

    /**
     * Whether a kernel may split K, and so takes the workspace (after its arrays): TN GEMMs; NN GEMMs over the
     * batch with K of two 64-deep slices or more, which split at batches whose tiles leave most of the GPU idle
     * (at 256 rows an up-projection's 32 tiles of 128×64 would leave 100 of 132 SMs so); and NN GEMMs over at
     * most 512 fixed rows with K of two such slices or more: the weight gradient of an embedding computed per
     * distinct σ, whose K is the σ table, and the embedding itself, whose 150 rows make 4 wgmma tiles (22 µs
     * unsplit on an H200, at the head of the CT step's longest chain at 4,096 rows).
     */
    public static boolean splitsK(Kernel k) {
        return k instanceof Kernel.Gemm g
                && (g.transposeA() || g.k() >= 2 * MIN_SLICE_K && (g.domain().batched() || g.domain().rows() <= FEW_ROWS));
    }

    /**
     * Whether a kernel is a GEMM that sums its K slices across a thread block cluster ({@link Tile#summedByCluster}):
     * launched with more than one slice, its slices must be one cluster of (1, 1, slices), and it takes no workspace.
     */
    public static boolean sumsByCluster(Kernel k, Matmul matmul, Tiling tiling) {
        return k instanceof Kernel.Gemm g && tile(g, matmul, tiling).clusterSum();
    }

    /**
     * Floats of workspace a kernel needs at any batch up to maxBatch: a counter per output tile, then a partial
     * product per K slice; none where the slices are summed across a cluster. It must start zeroed; the kernels
     * leave the counters at zero again.
     */
    public static long workspaceFloats(Kernel k, int maxBatch, Matmul matmul, Tiling tiling) {
        if (!(k instanceof Kernel.Gemm g) || !splitsK(g) || sumsByCluster(g, matmul, tiling)) return 0;
        // Whole lines, so that the next kernel's part starts on one too (the workspace's allocation does).
        return wholeLines(slicesAndCounters(g, maxBatch, matmul, tiling));
    }

    /**
     * Floats of a 128-byte line, L2's: the workspace parts and their slices start on one. A slice's rows of 256
     * floats then take 8 whole lines, and the last block's 16-byte loads of a warp 4 lines a row, not 5 (each part
     * was 16-byte aligned only, after its 264 counters: 32 bytes into a line).
     */
    static final int LINE_FLOATS = 32;

    /** floats rounded up to whole lines of {@link #LINE_FLOATS}. */
    private static long wholeLines(long floats) { return (floats + LINE_FLOATS - 1) / LINE_FLOATS * LINE_FLOATS; }

    private static long slicesAndCounters(Kernel.Gemm g, int maxBatch, Matmul matmul, Tiling tiling) {
        if (g.transposeA() || !g.domain().batched()) {   // most slices at the most rows; none where it never splits
            int s = splits(g, maxBatch, matmul, tiling);
            if (s == 1) return 0;
            long size = (long) g.domain().rows() * g.domain().cols();
            int k = g.transposeA() ? maxBatch : g.k();
            if (size <= SMALL_OUTPUT) s = Math.max(s, Math.min(TUNED_SPLITS, k / MIN_SLICE_K));   // room to time more
            return counterFloats(g) + s * size;
        }
        // NN over the batch: the most slices × rows at any batch that splits, the most rows of each tile count.
        long most = 0;
        for (int tiles = 1; tiles * BM < maxBatch + BM; tiles++) {
            int rows = Math.min(maxBatch, tiles * BM), s = splits(g, rows, matmul, tiling);
            if (s == 1) break;
            most = Math.max(most, (long) s * rows);
        }
        return counterFloats(g) + most * g.domain().cols();
    }

    /**
     * The split GEMM's tile counters at the head of its workspace: one per output tile at the most rows it
     * splits at (TN and fixed-row GEMMs: all their rows; NN over the batch: while it has at most half the blocks
     * of a wave, since fewer than two slices is no split), for tiles of at least 128×64, rounded up to a whole
     * line ({@link #LINE_FLOATS}), so that the slices start on one.
     */
    static int counterFloats(Kernel.Gemm g) {
        int tiles = g.domain().batched() ? MOST_SMS * MOST_BLOCKS_PER_SM / 2 : tiles(g, 0, Tile.NARROW);
        return (int) wholeLines(tiles);
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
        return render(program, header, arch, matmul, tiling, false);
    }

    /** With timeline, every kernel records when it ran ({@link #TIMELINE}). */
    public static String render(Program program, String header, String arch, Matmul matmul, Tiling tiling, boolean timeline) {
        var sb = new StringBuilder();
        sb.append("// ").append(header.replace("\n", "\n// ")).append(" (").append(matmul.description)
                .append(tiling.description.isEmpty() ? "" : ", " + tiling.description).append(")\n");
        sb.append("// Generated by cmc: do not edit; regenerate with `cmc compile --target cuda --emit DIR`.\n\n");
        sb.append(preamble(program, arch, tiling));
        for (int i = 0; i < program.kernels().size(); i++) sb.append('\n').append(function(program, i, matmul, tiling).render(awaitsGrids(arch), timeline));
        return sb.toString();
    }

    /**
     * The parameter through which a kernel rendered with a timeline records when it ran, before rows: the address
     * of 2n 64-bit slots for a program of n kernels, which the runtime sets to all ones (the first n) and zeros (the
     * rest) before a run, then n regions of {@link #TIMELINE_BLOCKS} block records, zeros before a run. Kernel k
     * keeps in slot k the least global timer (ns) at which a block of it got past its wait for the grids before,
     * and in slot n + k the greatest at which one ended; a kernel not launched leaves both as they were. Its block
     * b (ctaid.x + nctaid.x·(ctaid.y + nctaid.y·ctaid.z)), if below TIMELINE_BLOCKS, writes record b of region k,
     * 16 bytes: its start (u64), its end's low 32 bits and its SM (%smid). Two reductions and two stores a block,
     * by its thread 0: meant for a timeline of one run (cmc bench --trace), not for the figures of the same run.
     */
    public static final String TIMELINE = "timeline";

    /** Block records a kernel keeps in its timeline (see {@link #TIMELINE}); blocks past them record only the kernel's span. */
    public static final int TIMELINE_BLOCKS = 4096;

    /** Bytes of a timeline for a program of n kernels. */
    public static long timelineBytes(int n) { return 16L * n + 16L * TIMELINE_BLOCKS * n; }

    /**
     * The same PTX as one module per kernel, each with the module's directives: what the cuda runtime loads, so
     * that the driver's JIT compiles a program's kernels on several host threads at once (the seed's CT step is
     * 4 MB of PTX, 12-16 s of JIT as one module on an H200's host). Kernel k's module holds kernel k alone.
     */
    public static List<String> modules(Program program, String arch, Matmul matmul, Tiling tiling) {
        return modules(program, arch, matmul, tiling, false);
    }

    /** With timeline, every kernel records when it ran ({@link #TIMELINE}). */
    public static List<String> modules(Program program, String arch, Matmul matmul, Tiling tiling, boolean timeline) {
        String preamble = "// " + program.name() + " (" + matmul.description + "): one module per kernel\n" + preamble(program, arch, tiling);
        var out = new ArrayList<String>();
        for (int i = 0; i < program.kernels().size(); i++) out.add(preamble + '\n' + function(program, i, matmul, tiling).render(awaitsGrids(arch), timeline));
        return out;
    }

    /**
     * Whether a module's kernels take part in programmatic dependent launch (sm_90 and newer: PTX's
     * griddepcontrol): each waits for the kernels before it at its start, then lets the next one launch, so
     * that the next kernel's launch overlaps this one's run instead of following its end (see
     * {@link PtxFunction#render}). The cuda runtime launches sm_90 code with the launch attribute that allows it.
     */
    public static boolean awaitsGrids(String arch) {
        return !arch.equals("sm_80");
    }

    /** A module's directives: PTX 8.0 for the architecture (sm_90a for wgmma), and the dynamic shared memory kernels may use. */
    private static String preamble(Program program, String arch, Tiling tiling) {
        if (tiling.wgmma() && !arch.equals("sm_90")) {
            throw new IllegalArgumentException("wgmma tiles need an sm_90 GPU (H100, H200), not " + arch);
        }
        var sb = new StringBuilder(".version 8.0\n.target ").append(tiling.wgmma() ? "sm_90a" : arch).append("\n.address_size 64\n");
        if (tiling.wgmma() || program.kernels().stream().anyMatch(k -> k instanceof Kernel.Mlp || k instanceof Kernel.MlpChain)) {
            sb.append(".extern .shared .align 128 .b8 ").append(DYNAMIC_SHARED).append("[];\n");
        }
        return sb.toString();
    }

    /** Kernel i of the program, written by the family of kernels it belongs to. */
    private static PtxFunction function(Program program, int i, Matmul matmul, Tiling tiling) {
        return switch (program.kernels().get(i)) {
            case Kernel.Gemm g when tile(g, matmul, tiling).warpgroups() -> new PtxWgmmaGemm(program, i, matmul, tile(g, matmul, tiling));
            case Kernel.Gemm g -> new PtxGemm(program, i, matmul, tile(g, matmul, tiling));
            case Kernel.Mlp m when onWgmma(m, matmul, tiling) -> new PtxWgmmaMlp(program, i, tiling.bulk());
            case Kernel.MlpChain _ -> new PtxWgmmaMlp(program, i, tiling.bulk());
            case Kernel.Mlp m -> new PtxMlp(program, i, matmul);
            default -> new PtxBandwidthKernels(program, i);
        };
    }

    /** Lanes per FMA in {@link #renderPeak}: scalar FMAs, one thread each. */
    public static final int PEAK_LANES = 1;

    /** {@link PeakFma}'s kernel: CHAINS independent scalar FMA chains per thread, one thread per unit. */
    public static String renderPeak(Program p, String arch) {
        var sb = new StringBuilder("// Generated by cmc: the FMA throughput probe behind `cmc bench`'s fraction of peak.\n");
        sb.append(".version 8.0\n.target ").append(arch).append("\n.address_size 64\n\n");
        sb.append(".visible .entry ").append(kernelName(p, 0)).append("(\n    .param .u64 p_out,\n    .param .u32 rows\n)\n.maxntid 256, 1, 1\n{\n");
        sb.append("    .reg .pred %p1;\n    .reg .f32 %f<").append(PeakFma.CHAINS + 3).append(">;\n    .reg .b32 %r<8>;\n    .reg .b64 %rd<4>;\n\n");
        if (awaitsGrids(arch)) sb.append("    griddepcontrol.wait;\n    griddepcontrol.launch_dependents;\n");   // as every kernel, see PtxFunction#render
        sb.append("    mov.u32 %r1, %ctaid.x;\n    mov.u32 %r2, %tid.x;\n    mad.lo.s32 %r3, %r1, 256, %r2;\n");
        sb.append("    ld.param.u32 %r4, [rows];\n    setp.ge.s32 %p1, %r3, %r4;\n    @%p1 bra DONE;\n");
        sb.append("    cvt.rn.f32.s32 %f1, %r3;\n");
        for (int c = 0; c < PeakFma.CHAINS; c++) sb.append("    add.f32 %f").append(c + 2).append(", %f1, ").append(PtxFunction.imm(c)).append(";\n");
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
}
