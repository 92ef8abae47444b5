package dev.cmc.runtime.cuda;

import java.lang.foreign.Arena;
import java.lang.foreign.MemorySegment;
import java.util.ArrayList;
import java.util.List;

import static java.lang.foreign.ValueLayout.*;

/** The NVIDIA GPUs the driver reports, found once (cuInit), for `cmc devices` and backend selection. */
public final class CudaDevices {
    private CudaDevices() {}

    /** A GPU; sharedPerBlock is the most shared memory one block may opt in to, in bytes. */
    public record Device(int index, int handle, String name, int major, int minor, int multiprocessors, long memory, int sharedPerBlock) {
        /** The PTX target cmc writes for it: sm_80 or sm_90 (newer GPUs JIT sm_90 PTX forward). */
        public String arch() {
            return major >= 9 ? "sm_90" : "sm_80";
        }

        public String describe() {
            return String.format("cuda:%-4d %s, compute capability %d.%d, %d SMs, %.1f GiB, %d KB shared memory a block, PTX for %s", index, name,
                    major, minor, multiprocessors, memory / (1024.0 * 1024 * 1024), sharedPerBlock / 1024, arch());
        }
    }

    private static List<Device> devices;
    private static String why;

    /** Every device, or an empty list (then {@link #unavailable()} says why). */
    public static synchronized List<Device> list() {
        if (devices != null) return devices;
        devices = List.of();
        why = Cu.unavailable();
        if (why != null) return devices;
        try (Arena a = Arena.ofConfined()) {
            int init = (int) Cu.call(Cu.cuInit, 0);
            if (init != Cu.SUCCESS) {
                why = "the CUDA driver is installed but cuInit failed: " + Cu.name(init) + " (no usable NVIDIA GPU?)";
                return devices;
            }
            MemorySegment n = a.allocate(JAVA_INT), dev = a.allocate(JAVA_INT), value = a.allocate(JAVA_INT), mem = a.allocate(JAVA_LONG);
            MemorySegment name = a.allocate(256);
            Cu.status(Cu.cuDeviceGetCount, "cuDeviceGetCount", n);
            var out = new ArrayList<Device>();
            for (int i = 0; i < n.get(JAVA_INT, 0); i++) {
                Cu.status(Cu.cuDeviceGet, "cuDeviceGet", dev, i);
                int h = dev.get(JAVA_INT, 0);
                Cu.status(Cu.cuDeviceGetName, "cuDeviceGetName", name, 256, h);
                Cu.status(Cu.cuDeviceTotalMem, "cuDeviceTotalMem", mem, h);
                out.add(new Device(i, h, name.getString(0), attribute(value, Cu.ATTR_COMPUTE_CAPABILITY_MAJOR, h),
                        attribute(value, Cu.ATTR_COMPUTE_CAPABILITY_MINOR, h), attribute(value, Cu.ATTR_MULTIPROCESSOR_COUNT, h), mem.get(JAVA_LONG, 0),
                        attribute(value, Cu.ATTR_MAX_SHARED_MEMORY_PER_BLOCK_OPTIN, h)));
            }
            devices = List.copyOf(out);
            if (devices.isEmpty()) why = "the CUDA driver reports no devices";
            else if (devices.stream().allMatch(d -> d.major() < 8)) why = "cmc's PTX needs compute capability 8.0 or newer (Ampere, Hopper)";
        } catch (RuntimeException e) {
            why = "the CUDA driver failed: " + e.getMessage();
        }
        return devices;
    }

    private static int attribute(MemorySegment value, int attr, int device) {
        Cu.status(Cu.cuDeviceGetAttribute, "cuDeviceGetAttribute", value, attr, device);
        return value.get(JAVA_INT, 0);
    }

    /** Why no CUDA device can be used, or null when at least one can. */
    public static String unavailable() {
        list();
        return devices.stream().anyMatch(d -> d.major() >= 8) ? null : why;
    }
}
