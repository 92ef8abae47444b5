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

    private PtxRenderer.Tiling tiling = configuredTiling();

    /**
     * How tensor-core GEMMs are tiled: 128×64 (the default), or where they have 128 columns or more, with
     * CMC_CUDA_TILES=wide 128×128 by mma.sync warps, with CMC_CUDA_TILES=wgmma 128×128 by wgmma warpgroups
     * (compute capability 9.0; see {@link PtxRenderer.Tile}), with wgmma-deep the same in 32-deep slices for
     * tf32. On an H200, wgmma was the fastest (1M fp32 samples in 72.3 ms, 96.4 by default); its parity on the
     * card and wgmma-deep are for scripts/gpu-check.sh's next run.
     */
    public static PtxRenderer.Tiling configuredTiling() {
        return envChoice("CMC_CUDA_TILES", java.util.Arrays.stream(PtxRenderer.Tiling.values()).map(t -> Map.entry(t.setting, t)).toList());
    }

    /** When residual MLP blocks run as one kernel each: never, in programs loaded for many rows, or always (tests). */
    public enum MlpFusion { SPLIT, LARGE_BATCHES, ALWAYS }

    private MlpFusion mlpFusion = configuredMlpFusion();

    /**
     * CMC_CUDA_MLP=fused runs each residual MLP block as one kernel (see {@link PtxRenderer#fits}: tf32 or 3xTF32
     * GEMMs, h of 128 or 256) in programs loaded for at least 256 rows per SM, which is sampling at large batches;
     * split, the default until it is timed on a GPU, keeps three kernels a block. Below that size the fused
     * kernel's 128-row blocks, one per SM (200 KB of shared memory at h = 256), would leave most SMs idle where
     * the split GEMMs' 128×64 tiles fill the GPU: a CT step at 4,096 rows would fuse into 32 blocks on 132 SMs.
     * Blocks fuse only where their shared memory fits the GPU's (see {@link #prepare}).
     */
    public static MlpFusion configuredMlpFusion() {
        return envChoice("CMC_CUDA_MLP", Map.entry("split", MlpFusion.SPLIT), Map.entry("fused", MlpFusion.LARGE_BATCHES));
    }

    /** Fused blocks whatever the batch (true), or never (false). */
    public CudaBackend withFusedMlp(boolean fused) {
        this.mlpFusion = fused ? MlpFusion.ALWAYS : MlpFusion.SPLIT;
        return this;
    }

    /** The least maxBatch a program is fused at: two of the fused kernel's 128-row blocks per SM. */
    private int fusedMlpRows() {
        return switch (mlpFusion) {
            case SPLIT -> Integer.MAX_VALUE;
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

    public CudaBackend withTiling(PtxRenderer.Tiling t) {
        this.tiling = t;
        return this;
    }

    /** A setting this GPU cannot run: what it needs, what this GPU has, and what to use instead. */
    private dev.cmc.runtime.SettingException cannotRun(String setting, String needs, String has, String instead) {
        return new dev.cmc.runtime.SettingException(setting + " needs " + needs + "; " + device.name() + " " + has + ": use " + instead);
    }

    /**
     * The tiling this device can run: wgmma's modules target sm_90a, whose code runs on compute capability 9.0
     * alone (H100, H200; not on Blackwell), and asking for it elsewhere is an error.
     */
    public PtxRenderer.Tiling tiling() {
        if (tiling.wgmma() && device.major() != 9) {
            throw cannotRun("CMC_CUDA_TILES=" + tiling.setting, "a compute capability 9.0 GPU (H100, H200): its sm_90a code runs on no other",
                    "is compute capability " + device.major() + "." + device.minor(), "narrow or wide");
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
    @Override
    public int samplingRows() { return 65_536; }

    @Override
    public String deviceName() {
        return device.name() + " (compute capability " + device.major() + "." + device.minor() + "; " + matmul.description
                + (tiling.description.isEmpty() ? "" : ", " + tiling.description.replace("128x128", "128×128"))
                + (mlpFusion == MlpFusion.SPLIT ? "" : mlpFusion == MlpFusion.ALWAYS ? ", fused MLP blocks" : ", fused MLP blocks at large batches") + ")";
    }

    /**
     * The program as this GPU runs it: with fused MLP blocks where they are asked for, the batch is large enough
     * and a block's tiles fit the shared memory a block may have here (200 KB at h = 256: an H100's or H200's 227
     * KB, not an A100's 163 KB; 136 KB at h = 128, on both).
     */
    @Override
    public Program prepare(Program program, int maxBatch) {
        if (mlpFusion == MlpFusion.SPLIT) return program;
        // Every block that could be one kernel, whatever its shared memory: what the check below and the result need.
        Program fusable = PtxRenderer.fuseMlps(program, matmul);
        var shared = fusable.kernels().stream().filter(k -> k instanceof Kernel.Mlp)
                .mapToInt(k -> PtxRenderer.mlpSharedBytes(k.domain().cols())).summaryStatistics();
        int limit = device.sharedPerBlock();
        // Said whatever the batch, so that a setting this GPU cannot run fails at once, not at the first large batch.
        if (shared.getCount() > 0 && shared.getMin() > limit) {
            throw cannotRun("CMC_CUDA_MLP=fused", shared.getMin() / 1024 + " KB of shared memory a block for this model's fused blocks",
                    "allows " + limit / 1024 + " KB", "split");
        }
        if (maxBatch < fusedMlpRows()) return program;
        return shared.getCount() == 0 || shared.getMax() <= limit ? fusable : PtxRenderer.fuseMlps(program, matmul, limit);
    }

    @Override
    public Map<String, String> render(Program program, String header) {
        return Map.of(JavaRenderer.className(program) + "." + device.arch() + ".ptx",
                PtxRenderer.render(prepare(program, Integer.MAX_VALUE), header, device.arch(), matmul, tiling()));
    }

    @Override
    public CudaExecutable load(Program program, int maxBatch) {
        PtxRenderer.Tiling t = tiling();
        Program p = prepare(program, maxBatch);
        return new CudaExecutable(device, p, PtxRenderer.modules(p, device.arch(), matmul, t), maxBatch, matmul, t);
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
