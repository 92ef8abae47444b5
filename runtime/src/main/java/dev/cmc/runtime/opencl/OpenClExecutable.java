package dev.cmc.runtime.opencl;

import dev.cmc.kernel.Extent;
import dev.cmc.kernel.Kernel;
import dev.cmc.kernel.MemoryPlan;
import dev.cmc.kernel.Program;
import dev.cmc.render.Indexing;
import dev.cmc.render.OpenClRenderer;
import dev.cmc.runtime.Executable;

import java.lang.foreign.Arena;
import java.lang.foreign.MemorySegment;
import java.util.List;

import static java.lang.foreign.ValueLayout.*;

/**
 * A program on one OpenCL device: a context and an in-order queue, one buffer per array that lives on the
 * device across runs, and the kernels with their buffer arguments set once. A run enqueues every kernel
 * and waits once at the end; only what the host asks for is copied back.
 */
public final class OpenClExecutable implements Executable {
    private final Program program;
    private final int maxBatch;
    private final Arena arena = Arena.ofShared();
    private final MemorySegment context, queue, clProgram;
    private final MemorySegment[] buffers, kernels;
    private final MemoryPlan memory;
    private final long[] sizes;
    private final MemorySegment rowsArg = arena.allocate(JAVA_INT), globalSize = arena.allocate(CL.SIZE_T, 2), localSize = arena.allocate(CL.SIZE_T, 2);
    private final OpenClRenderer.Style style;

    OpenClExecutable(OpenClDevices.Device device, Program program, String source, int maxBatch) {
        this(device, program, source, null, maxBatch, OpenClRenderer.Style.CPU);
    }

    /** With a device binary (from {@link OpenClBinaries}), the program is loaded from it instead of compiled. */
    OpenClExecutable(OpenClDevices.Device device, Program program, String source, byte[] binary, int maxBatch, OpenClRenderer.Style style) {
        this.program = program;
        this.style = style;
        this.maxBatch = maxBatch;
        MemorySegment err = arena.allocate(JAVA_INT);
        MemorySegment dev = arena.allocate(ADDRESS);
        dev.set(ADDRESS, 0, device.id());
        context = (MemorySegment) CL.call(CL.clCreateContext, MemorySegment.NULL, 1, dev, MemorySegment.NULL, MemorySegment.NULL, err);
        CL.check(err.get(JAVA_INT, 0), "clCreateContext");
        // Profiling on: events then carry start and end times, which profile() reads; the cost is negligible.
        queue = (MemorySegment) CL.call(CL.clCreateCommandQueue, context, device.id(), CL.QUEUE_PROFILING_ENABLE, err);
        CL.check(err.get(JAVA_INT, 0), "clCreateCommandQueue");

        if (binary == null) {
            MemorySegment strings = arena.allocate(ADDRESS);
            strings.set(ADDRESS, 0, arena.allocateFrom(source));
            clProgram = (MemorySegment) CL.call(CL.clCreateProgramWithSource, context, 1, strings, MemorySegment.NULL, err);
            CL.check(err.get(JAVA_INT, 0), "clCreateProgramWithSource");
        } else {
            MemorySegment lengths = arena.allocate(CL.SIZE_T);
            lengths.set(JAVA_LONG, 0, binary.length);
            MemorySegment pointers = arena.allocate(ADDRESS);
            pointers.set(ADDRESS, 0, arena.allocateFrom(JAVA_BYTE, binary));
            MemorySegment binaryStatus = arena.allocate(JAVA_INT);
            clProgram = (MemorySegment) CL.call(CL.clCreateProgramWithBinary, context, 1, dev, lengths, pointers, binaryStatus, err);
            CL.check(err.get(JAVA_INT, 0), "clCreateProgramWithBinary(" + program.name() + ")");
        }
        int built = (int) CL.call(CL.clBuildProgram, clProgram, 1, dev, arena.allocateFrom("-cl-std=CL1.2"), MemorySegment.NULL, MemorySegment.NULL);
        if (built != CL.SUCCESS) throw buildFailure(built, device, source);

        buffers = new MemorySegment[program.arrays().size()];
        sizes = new long[buffers.length];
        memory = MemoryPlan.of(program);
        for (int i = 0; i < buffers.length; i++) {
            Program.Array a = program.arrays().get(i);
            sizes[i] = Math.max(1, a.size(maxBatch));
            if (!memory.owns(i)) {   // an activation in the memory of an earlier one, dead by the time it is written
                buffers[i] = buffers[memory.storage(i)];
                continue;
            }
            buffers[i] = (MemorySegment) CL.call(CL.clCreateBuffer, context, CL.MEM_READ_WRITE, 4 * sizes[i], MemorySegment.NULL, err);
            CL.check(err.get(JAVA_INT, 0), "clCreateBuffer(" + a.name() + ", " + 4 * sizes[i] + " bytes)");
            // New buffers hold garbage; optimizer state and EMAs must start at zero, as on the JVM.
            CL.status(CL.clEnqueueFillBuffer, "clEnqueueFillBuffer(" + a.name() + ")", queue, buffers[i], arena.allocate(JAVA_FLOAT), 4L, 0L,
                    4 * sizes[i], 0, MemorySegment.NULL, MemorySegment.NULL);
            if (a.constValues() != null) {
                float[] v = new float[(int) sizes[i]];
                for (int j = 0; j < v.length; j++) v[j] = (float) a.constValues()[j];
                write(a.name(), v, v.length);
            }
        }
        kernels = new MemorySegment[program.kernels().size()];
        for (int k = 0; k < kernels.length; k++) {
            kernels[k] = (MemorySegment) CL.call(CL.clCreateKernel, clProgram, arena.allocateFrom(OpenClRenderer.kernelName(program, k)), err);
            CL.check(err.get(JAVA_INT, 0), "clCreateKernel(" + OpenClRenderer.kernelName(program, k) + ")");
            List<String> args = Indexing.arguments(program.kernels().get(k));
            for (int a = 0; a < args.size(); a++) {
                MemorySegment handle = arena.allocate(ADDRESS);
                handle.set(ADDRESS, 0, buffers[program.arrayIndex(args.get(a))]);
                CL.status(CL.clSetKernelArg, "clSetKernelArg", kernels[k], a, ADDRESS.byteSize(), handle);
            }
        }
    }

    /** The build log and where the generated source was saved, not a bare error code. */
    private RuntimeException buildFailure(int status, OpenClDevices.Device device, String source) {
        String log;
        try (Arena a = Arena.ofConfined()) {
            MemorySegment size = a.allocate(CL.SIZE_T);
            CL.call(CL.clGetProgramBuildInfo, clProgram, device.id(), CL.PROGRAM_BUILD_LOG, 0L, MemorySegment.NULL, size);
            long n = size.get(JAVA_LONG, 0);
            MemorySegment buf = a.allocate(Math.max(1, n));
            CL.call(CL.clGetProgramBuildInfo, clProgram, device.id(), CL.PROGRAM_BUILD_LOG, n, buf, MemorySegment.NULL);
            log = buf.getString(0);
        }
        String where = dev.cmc.runtime.GeneratedSource.saveForDiagnosis(program.name(), ".cl", source);
        return new CL.ClException("clBuildProgram for " + program.name() + " on " + device.name(), status,
                "generated source: " + where + "\nbuild log:\n" + log.strip());
    }

    /** The device binary of the built program (clGetProgramInfo CL_PROGRAM_BINARIES), for offline toolchains. */
    byte[] binary() {
        try (Arena a = Arena.ofConfined()) {
            MemorySegment size = a.allocate(CL.SIZE_T);
            CL.status(CL.clGetProgramInfo, "clGetProgramInfo(CL_PROGRAM_BINARY_SIZES)", clProgram, CL.PROGRAM_BINARY_SIZES, CL.SIZE_T.byteSize(), size, MemorySegment.NULL);
            long n = size.get(JAVA_LONG, 0);
            MemorySegment data = a.allocate(Math.max(1, n));
            MemorySegment pointers = a.allocate(ADDRESS);
            pointers.set(ADDRESS, 0, data);
            CL.status(CL.clGetProgramInfo, "clGetProgramInfo(CL_PROGRAM_BINARIES)", clProgram, CL.PROGRAM_BINARIES, ADDRESS.byteSize(), pointers, MemorySegment.NULL);
            return data.asSlice(0, n).toArray(JAVA_BYTE);
        }
    }

    /** The array's index, where it holds count floats; else an error naming its size. */
    private int fitting(String array, long count) {
        int i = program.arrayIndex(array);
        if (count > sizes[i]) throw new IllegalArgumentException(array + " holds " + sizes[i] + " floats, not " + count);
        return i;
    }

    @Override
    public void write(String array, float[] src, int count) {
        int i = fitting(array, count);
        try (Arena a = Arena.ofConfined()) {
            MemorySegment staging = a.allocateFrom(JAVA_FLOAT, java.util.Arrays.copyOf(src, count));
            CL.status(CL.clEnqueueWriteBuffer, "clEnqueueWriteBuffer(" + array + ")", queue, buffers[i], 1, 0L, 4L * count, staging, 0,
                    MemorySegment.NULL, MemorySegment.NULL);
        }
    }

    @Override
    public void read(String array, float[] dst, int count) {
        int i = program.arrayIndex(array);
        try (Arena a = Arena.ofConfined()) {
            MemorySegment staging = a.allocate(JAVA_FLOAT, Math.max(1, count));
            CL.status(CL.clEnqueueReadBuffer, "clEnqueueReadBuffer(" + array + ")", queue, buffers[i], 1, 0L, 4L * count, staging, 0,
                    MemorySegment.NULL, MemorySegment.NULL);
            MemorySegment.copy(staging, JAVA_FLOAT, 0, dst, 0, count);
        }
    }

    @Override
    public void clear(String array, int count) {
        int i = fitting(array, count);
        try (Arena a = Arena.ofConfined()) {   // the runtime copies the pattern before the call returns
            CL.status(CL.clEnqueueFillBuffer, "clEnqueueFillBuffer(" + array + ")", queue, buffers[i], a.allocate(JAVA_FLOAT), 4L, 0L,
                    4L * count, 0, MemorySegment.NULL, MemorySegment.NULL);
        }
    }

    @Override
    public void copy(String from, String to, int count) {
        int src = fitting(from, count), dst = fitting(to, count);
        // In queue order, like the kernels: the next run reads what this wrote.
        CL.status(CL.clEnqueueCopyBuffer, "clEnqueueCopyBuffer(" + from + ", " + to + ")", queue, buffers[src], buffers[dst], 0L, 0L, 4L * count, 0,
                MemorySegment.NULL, MemorySegment.NULL);
    }

    @Override
    public void run(int batch) {
        enqueueAll(batch, null);
        CL.status(CL.clFinish, "clFinish", queue);
    }

    /** Runs once with an event per kernel and returns each kernel's device time in milliseconds, by name. */
    public java.util.Map<String, Double> profile(int batch) {
        MemorySegment[] events = new MemorySegment[kernels.length];
        enqueueAll(batch, events);
        CL.status(CL.clFinish, "clFinish", queue);
        var times = new java.util.LinkedHashMap<String, Double>();
        try (Arena a = Arena.ofConfined()) {
            MemorySegment start = a.allocate(JAVA_LONG), end = a.allocate(JAVA_LONG);
            for (int k = 0; k < kernels.length; k++) {
                if (events[k] == null) continue;
                CL.status(CL.clGetEventProfilingInfo, "clGetEventProfilingInfo", events[k], CL.PROFILING_COMMAND_START, 8L, start, MemorySegment.NULL);
                CL.status(CL.clGetEventProfilingInfo, "clGetEventProfilingInfo", events[k], CL.PROFILING_COMMAND_END, 8L, end, MemorySegment.NULL);
                times.merge(program.kernels().get(k).name(), (end.get(JAVA_LONG, 0) - start.get(JAVA_LONG, 0)) / 1e6, Double::sum);
                CL.call(CL.clReleaseEvent, events[k]);
            }
        }
        return times;
    }

    private void enqueueAll(int batch, MemorySegment[] events) {
        if (batch > maxBatch || batch < 1) throw new IllegalArgumentException("batch " + batch + " outside 1.." + maxBatch);
        rowsArg.set(JAVA_INT, 0, batch);
        MemorySegment event = events == null ? MemorySegment.NULL : arena.allocate(ADDRESS);
        for (int k = 0; k < kernels.length; k++) {
            Kernel kernel = program.kernels().get(k);
            OpenClRenderer.Launch launch = OpenClRenderer.launch(kernel, batch, style);
            boolean empty = false;
            for (int d = 0; d < launch.global().length; d++) {
                globalSize.setAtIndex(JAVA_LONG, d, launch.global()[d]);
                if (launch.local() != null) localSize.setAtIndex(JAVA_LONG, d, launch.local()[d]);
                empty |= launch.global()[d] == 0;
            }
            if (empty) continue;
            CL.status(CL.clSetKernelArg, "clSetKernelArg(rows)", kernels[k], Indexing.arguments(kernel).size(), JAVA_INT.byteSize(), rowsArg);
            CL.status(CL.clEnqueueNDRangeKernel, "clEnqueueNDRangeKernel(" + kernel.name() + ")", queue, kernels[k], launch.global().length,
                    MemorySegment.NULL, globalSize, launch.local() == null ? MemorySegment.NULL : localSize, 0, MemorySegment.NULL, event);
            if (events != null) events[k] = event.get(ADDRESS, 0);
        }
    }

    @Override
    public int maxBatch() { return maxBatch; }

    @Override
    public void close() {
        for (MemorySegment k : kernels) CL.call(CL.clReleaseKernel, k);
        for (int i = 0; i < buffers.length; i++) if (memory.owns(i)) CL.call(CL.clReleaseMemObject, buffers[i]);
        CL.call(CL.clReleaseProgram, clProgram);
        CL.call(CL.clReleaseCommandQueue, queue);
        CL.call(CL.clReleaseContext, context);
        arena.close();
    }
}
