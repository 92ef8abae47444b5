package dev.cmc.runtime.cuda;

import dev.cmc.kernel.Kernel;
import dev.cmc.kernel.PeakFma;
import dev.cmc.kernel.Program;
import dev.cmc.render.JavaRenderer;
import dev.cmc.render.PtxRenderer;
import dev.cmc.runtime.Backend;

import java.util.List;
import java.util.Map;

/** Generated PTX, JIT-compiled and run by the CUDA driver (libcuda.so.1) through Java's FFM API. */
public final class CudaBackend implements Backend {
    private final CudaDevices.Device device;
    private PtxRenderer.Matmul matmul = fp32Matmul();

    /**
     * How fp32 GEMMs run: on the tensor cores at fp32 accuracy (3xTF32, see {@link PtxRenderer.Matmul#TF32X3}),
     * or with CMC_CUDA_FP32_MATMUL=fma on the FMA units. 3xTF32 is the default because it was the faster of the
     * two in both of the H200's measurements (1M-sample sampling 134.0 vs 154.9 ms, CT step at 4,096 3.84 vs
     * 3.99 ms) and passes the same 1e-4 parity.
     */
    public static PtxRenderer.Matmul fp32Matmul() {
        return envChoice("CMC_CUDA_FP32_MATMUL", Map.entry("3xtf32", PtxRenderer.Matmul.TF32X3), Map.entry("fma", PtxRenderer.Matmul.FMA));
    }

    /** The tiling CMC_CUDA_TILES asks for, or none: by the batch (see {@link #tiling(int)}). */
    private PtxRenderer.Tiling tiling = configuredTiling().orElse(null);

    /**
     * How tensor-core GEMMs are tiled, as CMC_CUDA_TILES asks: auto (empty, the default) picks by the GPU and the
     * batch ({@link #tiling(int)}); narrow is 128×64; where GEMMs have 128 columns or more, wide is 128×128 by
     * mma.sync warps, wgmma 128×128 by wgmma warpgroups (compute capability 9.0; see {@link PtxRenderer.Tile}),
     * wgmma-deep the same in 32-deep slices for tf32, wgmma-nn wgmma for NN GEMMs only (the weight gradients in
     * 128×64 mma.sync tiles, as wgmma was before they had a wgmma path), wgmma-wide 128×256 wgmma tiles for
     * GEMMs of 256 columns or more, wgmma-mixed each GEMM's tile by its shape ({@link PtxRenderer#tile}),
     * wgmma-mixed-early and wgmma-wide-early those with more slices in flight ({@link PtxRenderer.Tile#refilledEarly}),
     * wgmma-mixed-cluster and wgmma-mixed-early-cluster the mixed ones with split K summed across a thread block
     * cluster ({@link PtxRenderer.Tile#summedByCluster}),
     * wgmma-mlp wgmma's tiles and tf32's fused MLP blocks on wgmma too, wgmma-chain the same with each run of
     * consecutive blocks one kernel; wgmma-mlp-bulk and wgmma-chain-bulk those two with the blocks' weight slices
     * one bulk copy each.
     */
    public static java.util.Optional<PtxRenderer.Tiling> configuredTiling() {
        var choices = new java.util.ArrayList<Map.Entry<String, java.util.Optional<PtxRenderer.Tiling>>>(List.of(Map.entry("auto", java.util.Optional.empty())));
        for (var t : PtxRenderer.Tiling.values()) choices.add(Map.entry(t.setting, java.util.Optional.of(t)));
        return envChoice("CMC_CUDA_TILES", choices);
    }

    /** The least maxBatch whose programs take wgmma tiles by default on compute capability 9.0. */
    public static final int WGMMA_ROWS = 4096;

    /** The least maxBatch whose 3xTF32 programs take 128×256 wgmma tiles by default: the sampler's launches ({@link #SAMPLING_ROWS}). */
    public static final int WIDE_ROWS = 65_536;

    /**
     * The default tiling of a program loaded for maxBatch rows on a GPU of this compute capability, on compute
     * capability 9.0 from 4,096 rows (128×64 mma.sync otherwise, and for bf16 and FMA GEMMs, which wgmma lacks):
     * <ul>
     * <li>tf32: wgmma GEMMs, and where blocks fuse (large batches) each run of consecutive blocks one wgmma kernel
     *     fed by bulk copies ({@link PtxRenderer.Tiling#WGMMA_CHAIN_BULK}). On an H200 (fourth run) it sampled 1M
     *     rows in 17.2 ms, against 33.7 chained with cp.async copies, 21.8 for wgmma blocks one kernel each fed by
     *     bulk copies, 38.2 by cp.async, and 41.0 for the mma.sync blocks that were the default; PyTorch took 39.2.
     *     Below the fused blocks' batch it is plain {@link PtxRenderer.Tiling#WGMMA}.</li>
     * <li>3xTF32 (fp32): wgmma tiles by each GEMM's shape ({@link PtxRenderer.Tiling#WGMMA_MIXED}: 128×128, and
     *     128×256 for NN GEMMs of 1,024 columns or more), and 128×256 throughout from {@link #WIDE_ROWS}: the fourth
     *     run sampled 1M rows in 56.5 ms in 128×256 tiles against 64.2 and 64.3 in 128×128, where its CT step at
     *     4,096 took 1.42 ms against 1.38 and 1.39; its per-kernel times in the step gave the mixed choice. (The
     *     third run: wgmma 72.8 against 96.1 ms for 128×64, CT step 1.75 against 1.98.)</li>
     * </ul>
     * The CT step at 256 keeps 128×64: 0.51 ms against 0.54 in wgmma tiles (fourth run).
     */
    public static PtxRenderer.Tiling defaultTiling(int major, int maxBatch, PtxRenderer.Matmul matmul) {
        if (major != 9 || maxBatch < WGMMA_ROWS) return PtxRenderer.Tiling.NARROW;
        return switch (matmul) {
            case TF32 -> PtxRenderer.Tiling.WGMMA_CHAIN_BULK;
            case TF32X3 -> maxBatch >= WIDE_ROWS ? PtxRenderer.Tiling.WGMMA_WIDE : PtxRenderer.Tiling.WGMMA_MIXED;
            case BF16, FMA -> PtxRenderer.Tiling.NARROW;
        };
    }

    /** When residual MLP blocks run as one kernel each: by the arithmetic (the default), never, in programs loaded for many rows, or always (tests). */
    public enum MlpFusion { AUTO, SPLIT, LARGE_BATCHES, ALWAYS }

    private MlpFusion mlpFusion = configuredMlpFusion();

    /**
     * CMC_CUDA_MLP=fused runs each residual MLP block as one kernel (see {@link PtxRenderer#fits}: tf32 or 3xTF32
     * GEMMs, h of 128 or 256) in programs loaded for at least 256 rows per SM, which is sampling at large batches;
     * split keeps three kernels a block; auto, the default, fuses with tf32 GEMMs only, where an H200 sampled 1M
     * rows in 44.2 ms fused against 51.8-53.6 split (3xTF32: 98.6 fused, 96.4 split, 72.8 with wgmma split).
     * Below that size the fused kernel's 128-row blocks, one per SM (218 KB of shared memory at h = 256), would
     * leave most SMs idle where the split GEMMs' 128×64 tiles fill the GPU: a CT step at 4,096 rows would fuse into
     * 32 blocks on 132 SMs. Blocks fuse only where their shared memory fits the GPU's (see {@link #prepare}).
     */
    public static MlpFusion configuredMlpFusion() {
        return envChoice("CMC_CUDA_MLP", Map.entry("auto", MlpFusion.AUTO), Map.entry("split", MlpFusion.SPLIT), Map.entry("fused", MlpFusion.LARGE_BATCHES));
    }

    /** Whether auto fuses blocks with these GEMMs at large batches: tf32's alone (see {@link #configuredMlpFusion}). */
    public static boolean autoFuses(PtxRenderer.Matmul matmul) { return matmul == PtxRenderer.Matmul.TF32; }

    /** A fusion setting with auto resolved by the GEMMs' arithmetic: fused at large batches or split. */
    public static MlpFusion resolved(MlpFusion fusion, PtxRenderer.Matmul matmul) {
        return fusion != MlpFusion.AUTO ? fusion : autoFuses(matmul) ? MlpFusion.LARGE_BATCHES : MlpFusion.SPLIT;
    }

    /** The fusion this backend applies. */
    private MlpFusion fusion() { return resolved(mlpFusion, matmul); }

    /** Fused blocks whatever the batch (true), or never (false). */
    public CudaBackend withFusedMlp(boolean fused) {
        this.mlpFusion = fused ? MlpFusion.ALWAYS : MlpFusion.SPLIT;
        return this;
    }

    /** The least maxBatch a program is fused at: two of the fused kernel's 128-row blocks per SM. */
    private int fusedMlpRows() {
        return switch (fusion()) {
            case AUTO, SPLIT -> Integer.MAX_VALUE;
            case LARGE_BATCHES -> 2 * PtxRenderer.MLP_ROWS * device.multiprocessors();
            case ALWAYS -> 0;
        };
    }

    /** An environment switch among named values, the first the default; anything else is an error naming them all. */
    @SafeVarargs
    private static <T> T envChoice(String name, Map.Entry<String, T>... choices) {
        return envChoice(name, List.of(choices));
    }

    private static <T> T envChoice(String name, List<Map.Entry<String, T>> choices) {
        String v = System.getenv(name);
        if (v == null || v.isBlank()) return choices.getFirst().getValue();
        for (var c : choices) if (v.equalsIgnoreCase(c.getKey())) return c.getValue();
        var words = choices.stream().map(Map.Entry::getKey).toList();
        throw new dev.cmc.runtime.SettingException(name + "=" + v + ": expected one of " + words.getFirst() + " (the default), "
                + String.join(", ", words.subList(1, words.size())));
    }

    private boolean timeline;

    /**
     * Programs loaded from now on record when each kernel and each of its blocks runs (see {@link PtxRenderer#TIMELINE}),
     * for {@link CudaExecutable#timeline}: `cmc bench --trace`. Two reductions and two stores a block: the figures of
     * such a run are the timeline's, not the product's.
     */
    public CudaBackend withTimeline(boolean timeline) {
        this.timeline = timeline;
        return this;
    }

    public CudaBackend withTiling(PtxRenderer.Tiling t) {
        this.tiling = t;
        return this;
    }

    /** A setting this GPU cannot run: what it needs, what this GPU has, and what to use instead. */
    private dev.cmc.runtime.SettingException cannotRun(String setting, String needs, String has, String instead) {
        return new dev.cmc.runtime.SettingException(setting + " needs " + needs + "; " + device.name() + " " + has + ": use " + instead);
    }

    /**
     * The tiling of a program loaded for maxBatch rows: CMC_CUDA_TILES's (or {@link #withTiling}'s), else
     * {@link #defaultTiling}. wgmma's modules target sm_90a, whose code runs on compute capability 9.0 alone (H100,
     * H200; not on Blackwell), and asking for it elsewhere is an error; so is asking for split K summed across
     * clusters of a driver without cuLaunchKernelEx (before CUDA 11.8), which cluster launches take.
     */
    public PtxRenderer.Tiling tiling(int maxBatch) {
        if (tiling == null) return defaultTiling(device.major(), maxBatch, matmul);
        if (tiling.wgmma() && device.major() != 9) {
            throw cannotRun("CMC_CUDA_TILES=" + tiling.setting, "a compute capability 9.0 GPU (H100, H200): its sm_90a code runs on no other",
                    "is compute capability " + device.major() + "." + device.minor(), "narrow or wide");
        }
        if (tiling.clustered() && Cu.cuLaunchKernelEx == null) {
            throw cannotRun("CMC_CUDA_TILES=" + tiling.setting, "a driver with cuLaunchKernelEx (CUDA 11.8 or newer) for its cluster launches",
                    "has a driver without it", "wgmma-mixed");
        }
        return tiling;
    }

    /** target.precision: fp32 (see {@link #fp32Matmul}), or tf32 or bf16 GEMMs on the tensor cores (fp32 accumulation). */
    public CudaBackend withPrecision(String precision) {
        return withMatmul(PtxRenderer.Matmul.of(precision, fp32Matmul()));
    }

    public CudaBackend withMatmul(PtxRenderer.Matmul m) {
        this.matmul = m;
        return this;
    }

    public PtxRenderer.Matmul matmul() { return matmul; }

    public CudaBackend(int index) {
        var all = CudaDevices.list();
        if (index < 0 || index >= all.size()) {
            String why = CudaDevices.unavailable();
            throw new IllegalArgumentException("no CUDA device " + index + (why != null ? ": " + why : "; devices are 0.." + (all.size() - 1)));
        }
        this.device = all.get(index);
    }

    public CudaDevices.Device device() { return device; }

    @Override
    public String name() { return "cuda"; }

    /** 65,536 rows a launch: hundreds of blocks for each of 132 SMs, about 0.5 GB of activations for the seed's model (7.2 KB a row, see MemoryPlan). */
    public static final int SAMPLING_ROWS = 65_536;

    @Override
    public int samplingRows() { return SAMPLING_ROWS; }

    @Override
    public String deviceName() {
        String tiles = tiling != null ? tiling.description : defaultTilings(device.major(), matmul);
        return device.name() + " (compute capability " + device.major() + "." + device.minor() + "; " + matmul.description
                + (tiles.isEmpty() ? "" : ", " + tiles.replace("128x128", "128×128").replace("128x256", "128×256"))
                + switch (fusion()) {
                    case AUTO, SPLIT -> "";
                    case ALWAYS -> ", fused MLP blocks";
                    case LARGE_BATCHES -> ", fused MLP blocks at large batches";
                } + (timesTiles() ? ", each GEMM timed in its tiling's variants" : "")
                + (timeline ? "; kernels recording their timeline" : "") + ")";
    }

    /** What {@link #defaultTiling} gives a GPU of this compute capability and arithmetic, by batch, for the device's name: "" where it is 128×64 throughout. */
    static String defaultTilings(int major, PtxRenderer.Matmul matmul) {
        PtxRenderer.Tiling first = defaultTiling(major, WGMMA_ROWS, matmul), most = defaultTiling(major, Integer.MAX_VALUE, matmul);
        if (!most.wgmma()) return "";
        return first.description + " from " + WGMMA_ROWS + " rows" + (most == first ? "" : "; " + most.description + " from " + WIDE_ROWS);
    }

    /**
     * The program as this GPU runs it: with fused MLP blocks where they are asked for, the batch is large enough
     * and a block's tiles fit the shared memory a block may have here (218 KB at h = 256: an H100's or H200's 227
     * KB, not an A100's 163 KB; 154 KB at h = 128, on both).
     */
    @Override
    public Program prepare(Program program, int maxBatch) {
        if (fusion() == MlpFusion.SPLIT) return program;
        // Every block that could be one kernel, whatever its shared memory: what the check below and the result need.
        var tiles = tiling(maxBatch);
        Program fusable = PtxRenderer.fuseMlps(program, matmul, tiles);
        var shared = fusable.kernels().stream().filter(k -> k instanceof Kernel.Mlp || k instanceof Kernel.MlpChain)
                .mapToInt(k -> PtxRenderer.mlpSharedBytes(k instanceof Kernel.MlpChain c ? c.width() : k.domain().cols(), matmul, tiles)).summaryStatistics();
        int limit = device.sharedPerBlock();
        // Said whatever the batch, so that a setting this GPU cannot run fails at once, not at the first large batch
        // (auto fuses what fits, and says nothing).
        if (mlpFusion != MlpFusion.AUTO && shared.getCount() > 0 && shared.getMin() > limit) {
            throw cannotRun("CMC_CUDA_MLP=fused", shared.getMin() / 1024 + " KB of shared memory a block for this model's fused blocks",
                    "allows " + limit / 1024 + " KB", "split");
        }
        if (maxBatch < fusedMlpRows()) return program;
        return shared.getCount() == 0 || shared.getMax() <= limit ? fusable : PtxRenderer.fuseMlps(program, matmul, tiles, limit);
    }

    @Override
    public Map<String, String> render(Program program, String header) {
        return Map.of(JavaRenderer.className(program) + "." + device.arch() + ".ptx",
                PtxRenderer.render(prepare(program, Integer.MAX_VALUE), header, device.arch(), matmul, tiling(Integer.MAX_VALUE), timeline));
    }

    @Override
    public CudaExecutable load(Program program, int maxBatch) {
        PtxRenderer.Tiling t = tiling(maxBatch);
        Program p = prepare(program, maxBatch);
        return new CudaExecutable(device, p, PtxRenderer.modules(p, device.arch(), matmul, t, timeline), maxBatch, matmul, t, timeline, tunesTiles());
    }

    /**
     * Whether GEMMs are timed in their tiling's variants too ({@link GemmTuning#TILES}): the default tiling's, while
     * launches are timed at all. A tiling fixed by CMC_CUDA_TILES, or timing turned off, leaves the tiles as they
     * are; where CMC_CUDA_TUNE_TILES=1 says otherwise, it is an error saying which setting to drop.
     */
    private boolean tunesTiles() {
        if (!GemmTuning.TILES.value()) return false;
        if (timesTiles()) return true;
        String set = System.getenv(GemmTuning.TILES.name());
        if (set == null || set.isBlank()) return false;   // the default, not asked for
        throw new dev.cmc.runtime.SettingException(tiling != null
                ? "CMC_CUDA_TUNE_TILES=1 times the variants of the default tiling's GEMMs, and CMC_CUDA_TILES=" + tiling.setting
                  + " fixes the tiling: unset one of them"
                : "CMC_CUDA_TUNE_TILES=1 times tiles on the GPU, and CMC_CUDA_TUNE=0 turns timing off: unset one of them");
    }

    /** Whether tile tuning is on and nothing stops it: the default tiling, and launches timed at all ({@link #tunesTiles} says why not). */
    private boolean timesTiles() {
        return tiling == null && GemmTuning.TILES.value() && GemmTuning.SETTING.value();
    }

    @Override
    public double measurePeakGflops() {
        Program p = PeakFma.program();
        int units = 2048 * 16 * device.multiprocessors();
        try (var exe = new CudaExecutable(device, p, PtxRenderer.renderPeak(p, device.arch()), units)) {
            return PeakFma.flops(units, PtxRenderer.PEAK_LANES) / Backend.bestSeconds(exe, units) / 1e9;
        }
    }
}
