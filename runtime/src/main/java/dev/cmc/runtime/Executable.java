package dev.cmc.runtime;

/**
 * A program loaded onto a device: named arrays and a schedule of kernels. Arrays stay on the device
 * between runs; the host copies in what changes and copies out what it asked for.
 */
public interface Executable extends AutoCloseable {
    /** Copies count floats from src into the named array. */
    void write(String array, float[] src, int count);

    /**
     * Copies each of several arrays in whole (name to its floats), as one transfer where the runtime can: a
     * training step's inputs, which are many and small, each a round trip of its own otherwise.
     */
    default void writeAll(java.util.Map<String, float[]> arrays) {
        arrays.forEach((name, values) -> write(name, values, values.length));
    }

    /**
     * Copies count floats from the named array into dst. An activation that shares its memory with others
     * ({@link dev.cmc.kernel.MemoryPlan}) holds, after a run, whichever of them used it last.
     */
    void read(String array, float[] dst, int count);

    /**
     * Copies the first count floats of one array into another, on the device: a sampler's output becomes its
     * next step's input without a trip through the host. This default goes through the host.
     */
    default void copy(String from, String to, int count) {
        float[] staging = new float[count];
        read(from, staging, count);
        write(to, staging, count);
    }

    /** Sets the first count floats of an array to zero, on the device. This default writes zeros from the host. */
    default void clear(String array, int count) {
        write(array, new float[count], count);
    }

    /** Launches every kernel in order, at this batch size. */
    void run(int batch);

    /** The largest batch the arrays were allocated for. */
    int maxBatch();

    /** Bytes in use on the whole device as its driver reports them, or -1 where the runtime cannot tell. */
    default long deviceBytesInUse() { return -1; }

    @Override
    void close();
}
