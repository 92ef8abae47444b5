package dev.cmc.runtime;

import dev.cmc.kernel.MemoryPlan;
import dev.cmc.kernel.Program;

/** A renderer plus a runtime: turns a program into generated source, and runs it. */
public interface Backend {
    String name();

    /**
     * The program as this backend runs it when loaded for maxBatch rows: the compiler's, with any fusion that only
     * this backend's kernels can do, where it pays at that size (cuda's fused MLP blocks). {@link #render} and
     * {@link #load} apply it themselves; reports that count a program's kernels (FLOPs and bytes) ask for it.
     */
    default Program prepare(Program program, int maxBatch) { return program; }

    /**
     * Rows a sampler is loaded for, and so drawn per launch: enough to fill the device, few enough that the
     * activations fit comfortably.
     */
    default int samplingRows() { return 4096; }

    /**
     * Which arrays share memory when this backend loads the program: activations whose lives do not overlap, on
     * every backend but TornadoVM, whose task graph keeps an array's device copy by its Java object.
     */
    default MemoryPlan memoryPlan(Program program) { return MemoryPlan.of(program); }

    /** What the program's arrays take on the device at a batch size. */
    default long arrayBytes(Program program, int batch) { return memoryPlan(program).bytes(program, batch); }

    /** The generated source files for a program: file name to text. */
    java.util.Map<String, String> render(Program program, String header);

    /** Renders, compiles and loads the program, with batched arrays sized for maxBatch. */
    Executable load(Program program, int maxBatch);

    /** The device in words, for reports and for caching what was measured on it. */
    default String deviceName() { return name(); }

    /**
     * Names the silicon, so that two backends on one device share its peak: the jvm backend and PoCL on the
     * same CPU are one device, whose peak is the best either backend's FMA probe reached.
     */
    default String peakKey() { return name() + " | " + deviceName(); }

    /**
     * The device's fp32 FMA throughput in GFLOP/s, timed on {@link dev.cmc.kernel.PeakFma}'s kernel as this
     * backend renders it; NaN where the backend cannot measure it. Takes a fraction of a second: cache it.
     */
    default double measurePeakGflops() { return Double.NaN; }

    /** Times runs of an executable: the best of five after three warm-up runs, in seconds. */
    static double bestSeconds(Executable exe, int batch) {
        for (int i = 0; i < 3; i++) exe.run(batch);
        double best = Double.POSITIVE_INFINITY;
        for (int i = 0; i < 5; i++) {
            long t = System.nanoTime();
            exe.run(batch);
            best = Math.min(best, (System.nanoTime() - t) / 1e9);
        }
        return best;
    }
}
