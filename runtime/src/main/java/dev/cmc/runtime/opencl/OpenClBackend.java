package dev.cmc.runtime.opencl;

import dev.cmc.kernel.PeakFma;
import dev.cmc.kernel.Program;
import dev.cmc.render.JavaRenderer;
import dev.cmc.render.OpenClRenderer;
import dev.cmc.runtime.Backend;

import java.nio.file.Path;
import java.util.Map;

/** Generated OpenCL C, built and run through libOpenCL.so.1 with Java's FFM API. */
public final class OpenClBackend implements Backend {
    private final OpenClDevices.Device device;
    private Path binaryFile;
    private OpenClBinaries.Container binaries;
    private OpenClRenderer.Style style;

    /** Kernel style: chosen from the device type unless set (tests force the GPU style on a CPU device). */
    public OpenClBackend withStyle(OpenClRenderer.Style style) {
        this.style = style;
        return this;
    }

    public OpenClRenderer.Style style() {
        if (style != null) return style;
        // The GPU style needs 16×16 work-groups; a device that cannot run them gets the CPU style.
        return device.isGpu() && device.maxWorkGroupSize() >= 256 ? OpenClRenderer.Style.GPU : OpenClRenderer.Style.CPU;
    }

    /** Loads programs from an offline-built binary file instead of compiling them (target.kernel_binary). */
    public OpenClBackend withBinaries(Path file) {
        this.binaryFile = file;
        this.binaries = OpenClBinaries.read(file);
        return this;
    }

    public OpenClBackend(int index) {
        var all = OpenClDevices.list();
        if (index < 0 || index >= all.size()) {
            String why = OpenClDevices.unavailable();
            throw new IllegalArgumentException("no OpenCL device " + index + (why != null ? ": " + why : "; devices are 0.." + (all.size() - 1)));
        }
        this.device = all.get(index);
    }

    public OpenClDevices.Device device() { return device; }

    /** A GPU takes 65,536 rows a launch to fill it; a CPU is full at the jvm backend's 4,096. */
    @Override
    public int samplingRows() { return device().isGpu() ? 65_536 : Backend.super.samplingRows(); }

    @Override
    public String name() { return "opencl"; }

    @Override
    public Map<String, String> render(Program program, String header) {
        return Map.of(JavaRenderer.className(program) + ".cl", OpenClRenderer.render(program, header, style()));
    }

    @Override
    public String deviceName() {
        return device.name() + " (" + device.platformName() + ", " + device.computeUnits() + " compute units)";
    }

    @Override
    public String peakKey() {
        return device.isCpu() ? dev.cmc.runtime.jvm.JvmBackend.cpuKey(device.computeUnits()) : name() + " | " + deviceName();
    }

    @Override
    public double measurePeakGflops() {
        Program p = PeakFma.program();
        // Enough work-items to fill a GPU; a CPU device runs them as a loop.
        int units = device.isGpu() ? 1 << 20 : 16384 * device.computeUnits();
        try (var exe = new OpenClExecutable(device, p, OpenClRenderer.renderPeak(p), null, units, OpenClRenderer.Style.CPU)) {
            return PeakFma.flops(units, OpenClRenderer.lanes()) / Backend.bestSeconds(exe, units) / 1e9;
        }
    }

    @Override
    public OpenClExecutable load(Program program, int maxBatch) {
        String source = OpenClRenderer.render(program, "program " + program.name(), style());
        if (binaries != null) {
            return new OpenClExecutable(device, program, source, OpenClBinaries.find(binaries, binaryFile, device, program, source), maxBatch, style());
        }
        return ProgramCache.load(device, program, source, maxBatch, style());
    }
}
