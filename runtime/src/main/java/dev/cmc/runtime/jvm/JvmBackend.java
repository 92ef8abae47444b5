package dev.cmc.runtime.jvm;

import dev.cmc.kernel.PeakFma;
import dev.cmc.kernel.Program;
import dev.cmc.render.GeneratedKernels;
import dev.cmc.render.JavaRenderer;
import dev.cmc.runtime.Backend;
import dev.cmc.runtime.Executable;
import jdk.incubator.vector.FloatVector;

import java.util.Map;

/** The embedded backend: generated Java with the Vector API, compiled in-process, run on every core. */
public final class JvmBackend implements Backend {
    private final int threads;

    public JvmBackend() { this(Runtime.getRuntime().availableProcessors()); }

    public JvmBackend(int threads) { this.threads = threads; }

    public static int lanes() { return FloatVector.SPECIES_PREFERRED.length(); }

    @Override
    public String name() { return "jvm"; }

    @Override
    public Map<String, String> render(Program program, String header) {
        return Map.of(JavaRenderer.className(program) + ".java", JavaRenderer.render(program, lanes(), header));
    }

    @Override
    public String deviceName() {
        return "JVM, " + threads + " threads, " + FloatVector.SPECIES_PREFERRED.vectorBitSize() + "-bit vectors, " + cpuModel();
    }

    @Override
    public String peakKey() { return cpuKey(threads); }

    /** The CPU with this many threads in use, as every CPU backend names it for the peak cache. */
    public static String cpuKey(int threads) { return "cpu | " + cpuModel() + " | " + threads + " threads"; }

    @Override
    public double measurePeakGflops() {
        Program p = PeakFma.program();
        Class<?> cls = InMemoryJavaCompiler.compile(JavaRenderer.PACKAGE + "." + JavaRenderer.className(p), JavaRenderer.renderPeak(p, lanes()));
        int units = 16384 * threads;
        try (var exe = new JvmExecutable(p, (GeneratedKernels) cls.getDeclaredConstructor().newInstance(), units, new Parallel(threads), lanes())) {
            return PeakFma.flops(units, lanes()) / Backend.bestSeconds(exe, units) / 1e9;
        } catch (ReflectiveOperationException e) {
            throw new IllegalStateException("cannot instantiate the generated FMA probe", e);
        }
    }

    public static String cpuModel() {
        try {
            for (String l : java.nio.file.Files.readAllLines(java.nio.file.Path.of("/proc/cpuinfo"))) {
                if (l.startsWith("model name")) return l.substring(l.indexOf(':') + 1).trim();
            }
        } catch (java.io.IOException | RuntimeException ignored) {
            // not Linux: name the architecture only
        }
        return System.getProperty("os.arch");
    }

    @Override
    public JvmExecutable load(Program program, int maxBatch) {
        String source = JavaRenderer.render(program, lanes(), "program " + program.name());
        Class<?> cls = InMemoryJavaCompiler.compile(JavaRenderer.PACKAGE + "." + JavaRenderer.className(program), source);
        try {
            var kernels = (GeneratedKernels) cls.getDeclaredConstructor().newInstance();
            return new JvmExecutable(program, kernels, maxBatch, new Parallel(threads), lanes());
        } catch (ReflectiveOperationException e) {
            throw new IllegalStateException("cannot instantiate generated " + cls.getName(), e);
        }
    }
}
