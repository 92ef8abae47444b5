package dev.cmc.runtime.opencl;

import java.lang.foreign.Arena;
import java.lang.foreign.MemorySegment;
import java.util.ArrayList;
import java.util.List;

import static java.lang.foreign.ValueLayout.*;

/** Every OpenCL device on every platform, as the loader reports them. */
public final class OpenClDevices {
    private OpenClDevices() {}

    public record Device(int index, MemorySegment platform, MemorySegment id, String platformName, String name, long type,
                         int computeUnits, long globalMemory, String openClC, long maxWorkGroupSize) {
        public boolean isCpu() { return (type & CL.DEVICE_TYPE_CPU) != 0; }
        public boolean isGpu() { return (type & CL.DEVICE_TYPE_GPU) != 0; }

        public String describe() {
            return String.format("opencl:%d  %s — %s, %s, %d compute units, %.1f GiB, %s", index, name, platformName,
                    isGpu() ? "GPU" : isCpu() ? "CPU" : "accelerator", computeUnits, globalMemory / (1024.0 * 1024 * 1024), openClC);
        }
    }

    /** Why there are no devices (no loader, no platform), or null when there are some. */
    public static String unavailable() {
        String why = CL.unavailable();
        if (why != null) return why;
        try {
            return list().isEmpty() ? "no OpenCL platform or device found (install pocl-opencl-icd for CPUs, or a GPU driver's ICD)" : null;
        } catch (RuntimeException e) {
            return "OpenCL is installed but reports no usable platform: " + e.getMessage();
        }
    }

    public static List<Device> list() {
        if (CL.unavailable() != null) return List.of();
        var out = new ArrayList<Device>();
        try (Arena arena = Arena.ofConfined()) {
            MemorySegment count = arena.allocate(JAVA_INT);
            int s = (int) CL.call(CL.clGetPlatformIDs, 0, MemorySegment.NULL, count);
            if (s == -1001 || count.get(JAVA_INT, 0) == 0) return List.of();
            CL.check(s, "clGetPlatformIDs");
            int np = count.get(JAVA_INT, 0);
            MemorySegment platforms = arena.allocate(ADDRESS, np);
            CL.status(CL.clGetPlatformIDs, "clGetPlatformIDs", np, platforms, MemorySegment.NULL);
            for (int p = 0; p < np; p++) {
                MemorySegment platform = platforms.getAtIndex(ADDRESS, p);
                String platformName = string(arena, platform, CL.PLATFORM_NAME, true);
                int ds = (int) CL.call(CL.clGetDeviceIDs, platform, CL.DEVICE_TYPE_ALL, 0, MemorySegment.NULL, count);
                if (ds != CL.SUCCESS) continue;
                int nd = count.get(JAVA_INT, 0);
                MemorySegment ids = arena.allocate(ADDRESS, nd);
                CL.status(CL.clGetDeviceIDs, "clGetDeviceIDs", platform, CL.DEVICE_TYPE_ALL, nd, ids, MemorySegment.NULL);
                for (int d = 0; d < nd; d++) {
                    MemorySegment id = ids.getAtIndex(ADDRESS, d);
                    out.add(new Device(out.size(), platform, id, platformName, string(arena, id, CL.DEVICE_NAME, false).trim(),
                            number(arena, id, CL.DEVICE_TYPE, 8), (int) number(arena, id, CL.DEVICE_MAX_COMPUTE_UNITS, 4),
                            number(arena, id, CL.DEVICE_GLOBAL_MEM_SIZE, 8), string(arena, id, CL.DEVICE_OPENCL_C_VERSION, false).trim(),
                            number(arena, id, CL.DEVICE_MAX_WORK_GROUP_SIZE, (int) CL.SIZE_T.byteSize())));
                }
            }
        }
        return out;
    }

    private static String string(Arena arena, MemorySegment handle, int param, boolean platform) {
        MemorySegment size = arena.allocate(CL.SIZE_T);
        var h = platform ? CL.clGetPlatformInfo : CL.clGetDeviceInfo;
        String call = platform ? "clGetPlatformInfo" : "clGetDeviceInfo";
        CL.status(h, call, handle, param, 0L, MemorySegment.NULL, size);
        long n = size.get(JAVA_LONG, 0);
        MemorySegment buf = arena.allocate(Math.max(1, n));
        CL.status(h, call, handle, param, n, buf, MemorySegment.NULL);
        return buf.getString(0);
    }

    private static long number(Arena arena, MemorySegment device, int param, int bytes) {
        MemorySegment buf = arena.allocate(8);
        CL.status(CL.clGetDeviceInfo, "clGetDeviceInfo", device, param, (long) bytes, buf, MemorySegment.NULL);
        return bytes == 4 ? Integer.toUnsignedLong(buf.get(JAVA_INT, 0)) : buf.get(JAVA_LONG, 0);
    }
}
