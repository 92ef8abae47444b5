package dev.cmc.runtime.jvm;

import dev.cmc.kernel.Extent;
import dev.cmc.kernel.Kernel;
import dev.cmc.kernel.MemoryPlan;
import dev.cmc.kernel.Program;
import dev.cmc.render.GeneratedKernels;
import dev.cmc.runtime.Executable;

/**
 * A generated program on the JVM: a float[] per array (activations whose lives do not overlap share one, see
 * {@link MemoryPlan}), kernels launched in order across threads.
 */
public final class JvmExecutable implements Executable {
    /** Below this many elements of work a kernel runs on the calling thread: splitting would cost more. */
    private static final long SPLIT_THRESHOLD = 16_384;

    private final Program program;
    private final GeneratedKernels kernels;
    private final float[][] arrays;
    private final int maxBatch;
    private final Parallel parallel;
    private final int lanes;

    JvmExecutable(Program program, GeneratedKernels kernels, int maxBatch, Parallel parallel, int lanes) {
        this.program = program;
        this.kernels = kernels;
        this.maxBatch = maxBatch;
        this.parallel = parallel;
        this.lanes = lanes;
        this.arrays = new float[program.arrays().size()][];
        var memory = MemoryPlan.of(program);
        for (int i = 0; i < arrays.length; i++) {
            Program.Array a = program.arrays().get(i);
            if (!memory.owns(i)) {
                arrays[i] = arrays[memory.storage(i)];
                continue;
            }
            long size = a.size(maxBatch);
            if (size > Integer.MAX_VALUE - 16) throw new IllegalArgumentException("array " + a.name() + " needs " + size + " floats: batch too large");
            arrays[i] = new float[(int) size];
            if (a.constValues() != null) for (int j = 0; j < size; j++) arrays[i][j] = (float) a.constValues()[j];
        }
    }

    /** Shares storage with the caller (the jvm backend only): the array becomes this float[]. */
    public void bind(String array, float[] storage) {
        int i = program.arrayIndex(array);
        if (storage.length < arrays[i].length) throw new IllegalArgumentException(array + " needs " + arrays[i].length + " floats");
        arrays[i] = storage;
    }

    public float[] array(String name) { return arrays[program.arrayIndex(name)]; }

    @Override
    public void write(String array, float[] src, int count) {
        System.arraycopy(src, 0, arrays[program.arrayIndex(array)], 0, count);
    }

    @Override
    public void read(String array, float[] dst, int count) {
        System.arraycopy(arrays[program.arrayIndex(array)], 0, dst, 0, count);
    }

    @Override
    public void clear(String array, int count) {
        java.util.Arrays.fill(arrays[program.arrayIndex(array)], 0, count, 0f);
    }

    @Override
    public void copy(String from, String to, int count) {
        System.arraycopy(arrays[program.arrayIndex(from)], 0, arrays[program.arrayIndex(to)], 0, count);
    }

    @Override
    public void run(int batch) {
        if (batch > maxBatch || batch < 1) throw new IllegalArgumentException("batch " + batch + " outside 1.." + maxBatch);
        for (int k = 0; k < program.kernels().size(); k++) launch(k, batch);
    }

    /** Runs one kernel; exposed so tests and the profiler can time kernels one by one. */
    public void launch(int k, int batch) {
        Kernel kernel = program.kernels().get(k);
        Extent e = Extent.of(kernel, batch, lanes);
        long work = (long) e.size() * Math.max(1, kernel.domain().cols()) * (kernel instanceof Kernel.Gemm g ? Math.max(1, g.k() < 0 ? batch : g.k()) : 1);
        final int kk = k;
        parallel.forRange(e.size(), e.grain(), work >= SPLIT_THRESHOLD, (lo, hi) -> kernels.run(kk, arrays, batch, lo, hi));
    }

    public Program program() { return program; }

    @Override
    public int maxBatch() { return maxBatch; }

    @Override
    public void close() { parallel.shutdown(); }
}
