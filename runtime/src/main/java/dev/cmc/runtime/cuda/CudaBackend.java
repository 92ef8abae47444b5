package dev.cmc.runtime.cuda;

import dev.cmc.kernel.PeakFma;
import dev.cmc.kernel.Program;
import dev.cmc.render.JavaRenderer;
import dev.cmc.render.PtxRenderer;
import dev.cmc.runtime.Backend;

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
        return envChoice("CMC_CUDA_FP32_MATMUL", "3xtf32", PtxRenderer.Matmul.TF32X3, "fma", PtxRenderer.Matmul.FMA);
    }

    private PtxRenderer.Tiling tiling = configuredTiling();

    /**
     * How tensor-core GEMMs are tiled: 128×64 (the default), or with CMC_CUDA_TILES=wide 128×128 where they have
     * 128 columns or more (see {@link PtxRenderer.Tile}). Not yet timed on a GPU: scripts/gpu-check.sh times both.
     */
    public static PtxRenderer.Tiling configuredTiling() {
        return envChoice("CMC_CUDA_TILES", "narrow", PtxRenderer.Tiling.NARROW, "wide", PtxRenderer.Tiling.WIDE);
    }

    /** An environment switch between two values, the first the default; anything else is an error naming both. */
    private static <T> T envChoice(String name, String first, T firstValue, String second, T secondValue) {
        String v = System.getenv(name);
        if (v == null || v.isBlank() || v.equalsIgnoreCase(first)) return firstValue;
        if (v.equalsIgnoreCase(second)) return secondValue;
        throw new dev.cmc.runtime.SettingException(name + "=" + v + ": expected " + first + " (the default) or " + second);
    }

    public CudaBackend withTiling(PtxRenderer.Tiling t) {
        this.tiling = t;
        return this;
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

    @Override
    public String deviceName() {
        return device.name() + " (compute capability " + device.major() + "." + device.minor() + "; " + matmul.description
                + (tiling == PtxRenderer.Tiling.WIDE ? ", 128×128 tiles" : "") + ")";
    }

    @Override
    public Map<String, String> render(Program program, String header) {
        return Map.of(JavaRenderer.className(program) + "." + device.arch() + ".ptx", PtxRenderer.render(program, header, device.arch(), matmul, tiling));
    }

    @Override
    public CudaExecutable load(Program program, int maxBatch) {
        return new CudaExecutable(device, program, PtxRenderer.render(program, "program " + program.name(), device.arch(), matmul, tiling), maxBatch,
                matmul, tiling);
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
