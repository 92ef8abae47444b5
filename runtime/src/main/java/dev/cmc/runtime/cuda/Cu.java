package dev.cmc.runtime.cuda;

import java.lang.foreign.*;
import java.lang.invoke.MethodHandle;

import static java.lang.foreign.ValueLayout.*;

/**
 * Thin FFM bindings to the CUDA driver API in libcuda.so.1 (the versioned _v2 entry points): one method handle
 * per call, and one {@link #check} that turns a CUresult into an exception naming the call and the error
 * (cuGetErrorName). CUdeviceptr is 64-bit; CUdevice is an int; every other handle is a pointer.
 */
final class Cu {
    static final int SUCCESS = 0;
    static final int ATTR_MULTIPROCESSOR_COUNT = 16, ATTR_COMPUTE_CAPABILITY_MAJOR = 75, ATTR_COMPUTE_CAPABILITY_MINOR = 76,
            ATTR_MAX_SHARED_MEMORY_PER_BLOCK_OPTIN = 97;
    static final int JIT_INFO_LOG_BUFFER = 3, JIT_INFO_LOG_BUFFER_SIZE_BYTES = 4, JIT_ERROR_LOG_BUFFER = 5, JIT_ERROR_LOG_BUFFER_SIZE_BYTES = 6;
    static final int FUNC_ATTRIBUTE_MAX_DYNAMIC_SHARED_SIZE_BYTES = 8, FUNC_ATTRIBUTE_PREFERRED_SHARED_MEMORY_CARVEOUT = 9, CARVEOUT_MAX_SHARED = 100;
    static final int STREAM_NON_BLOCKING = 1, STREAM_CAPTURE_MODE_THREAD_LOCAL = 1, EVENT_DISABLE_TIMING = 2;

    /** The driver library: libcuda.so.1 from the loader's path, or the file CMC_CUDA_LIBRARY names (a driver elsewhere, as on WSL). */
    private static final String LIBRARY = System.getenv().getOrDefault("CMC_CUDA_LIBRARY", "libcuda.so.1");
    private static final dev.cmc.runtime.NativeLibrary LIB = dev.cmc.runtime.NativeLibrary.open(LIBRARY,
            "no CUDA driver (" + LIBRARY + ") on this machine: the cuda backend needs an NVIDIA GPU and its driver");

    static final MethodHandle cuInit = fn("cuInit", JAVA_INT, JAVA_INT);
    static final MethodHandle cuDriverGetVersion = fn("cuDriverGetVersion", JAVA_INT, ADDRESS);
    static final MethodHandle cuDeviceGetCount = fn("cuDeviceGetCount", JAVA_INT, ADDRESS);
    static final MethodHandle cuDeviceGet = fn("cuDeviceGet", JAVA_INT, ADDRESS, JAVA_INT);
    static final MethodHandle cuDeviceGetName = fn("cuDeviceGetName", JAVA_INT, ADDRESS, JAVA_INT, JAVA_INT);
    static final MethodHandle cuDeviceTotalMem = fn("cuDeviceTotalMem_v2", JAVA_INT, ADDRESS, JAVA_INT);
    static final MethodHandle cuDeviceGetAttribute = fn("cuDeviceGetAttribute", JAVA_INT, ADDRESS, JAVA_INT, JAVA_INT);
    static final MethodHandle cuDevicePrimaryCtxRetain = fn("cuDevicePrimaryCtxRetain", JAVA_INT, ADDRESS, JAVA_INT);
    static final MethodHandle cuCtxSetCurrent = fn("cuCtxSetCurrent", JAVA_INT, ADDRESS);
    static final MethodHandle cuCtxSynchronize = fn("cuCtxSynchronize", JAVA_INT);
    /** cuCtxGetStreamPriorityRange(int *least, int *greatest): numerically lower is more urgent; both 0 where priorities are not supported. */
    static final MethodHandle cuCtxGetStreamPriorityRange = fn("cuCtxGetStreamPriorityRange", JAVA_INT, ADDRESS, ADDRESS);
    static final MethodHandle cuMemGetInfo = fn("cuMemGetInfo_v2", JAVA_INT, ADDRESS, ADDRESS);
    static final MethodHandle cuModuleLoadDataEx = fn("cuModuleLoadDataEx", JAVA_INT, ADDRESS, ADDRESS, JAVA_INT, ADDRESS, ADDRESS);
    static final MethodHandle cuModuleGetFunction = fn("cuModuleGetFunction", JAVA_INT, ADDRESS, ADDRESS, ADDRESS);
    static final MethodHandle cuFuncSetAttribute = fn("cuFuncSetAttribute", JAVA_INT, ADDRESS, JAVA_INT, JAVA_INT);
    static final MethodHandle cuModuleUnload = fn("cuModuleUnload", JAVA_INT, ADDRESS);
    static final MethodHandle cuMemAlloc = fn("cuMemAlloc_v2", JAVA_INT, ADDRESS, JAVA_LONG);
    static final MethodHandle cuMemFree = fn("cuMemFree_v2", JAVA_INT, JAVA_LONG);
    static final MethodHandle cuMemsetD32Async = fn("cuMemsetD32Async", JAVA_INT, JAVA_LONG, JAVA_INT, JAVA_LONG, ADDRESS);
    static final MethodHandle cuMemcpyHtoDAsync = fn("cuMemcpyHtoDAsync_v2", JAVA_INT, JAVA_LONG, ADDRESS, JAVA_LONG, ADDRESS);
    static final MethodHandle cuMemcpyDtoDAsync = fn("cuMemcpyDtoDAsync_v2", JAVA_INT, JAVA_LONG, JAVA_LONG, JAVA_LONG, ADDRESS);
    static final MethodHandle cuMemcpyDtoHAsync = fn("cuMemcpyDtoHAsync_v2", JAVA_INT, ADDRESS, JAVA_LONG, JAVA_LONG, ADDRESS);
    static final MethodHandle cuMemHostAlloc = fn("cuMemAllocHost_v2", JAVA_INT, ADDRESS, JAVA_LONG);
    static final MethodHandle cuMemFreeHost = fn("cuMemFreeHost", JAVA_INT, ADDRESS);
    static final MethodHandle cuStreamCreate = fn("cuStreamCreate", JAVA_INT, ADDRESS, JAVA_INT);
    static final MethodHandle cuStreamWaitEvent = fn("cuStreamWaitEvent", JAVA_INT, ADDRESS, ADDRESS, JAVA_INT);
    static final MethodHandle cuStreamSynchronize = fn("cuStreamSynchronize", JAVA_INT, ADDRESS);
    static final MethodHandle cuStreamDestroy = fn("cuStreamDestroy_v2", JAVA_INT, ADDRESS);
    static final MethodHandle cuLaunchKernel = fn("cuLaunchKernel", JAVA_INT, ADDRESS, JAVA_INT, JAVA_INT, JAVA_INT, JAVA_INT, JAVA_INT, JAVA_INT,
            JAVA_INT, ADDRESS, ADDRESS, ADDRESS);
    /** cuLaunchKernelEx(const CUlaunchConfig *, CUfunction, void **params, void **extra): null in drivers before CUDA 11.8. */
    static final MethodHandle cuLaunchKernelEx = fn("cuLaunchKernelEx", JAVA_INT, ADDRESS, ADDRESS, ADDRESS, ADDRESS);
    /**
     * CUlaunchConfig (cuda.h): grid and block dimensions and dynamic shared bytes as 7 unsigned ints, then the
     * stream at byte 32, the attribute array at 40 and their count at 48; 56 bytes. CUlaunchAttribute: its id, an
     * int padded to 8 bytes, then a 64-byte value union; 72 bytes.
     */
    static final StructLayout LAUNCH_CONFIG = MemoryLayout.structLayout(MemoryLayout.sequenceLayout(7, JAVA_INT), MemoryLayout.paddingLayout(4),
            ADDRESS.withName("hStream"), ADDRESS.withName("attrs"), JAVA_INT.withName("numAttrs"), MemoryLayout.paddingLayout(4));
    static final StructLayout LAUNCH_ATTRIBUTE = MemoryLayout.structLayout(JAVA_INT.withName("id"), MemoryLayout.paddingLayout(4),
            MemoryLayout.sequenceLayout(16, JAVA_INT).withName("value"));
    static final long CONFIG_STREAM = offset(LAUNCH_CONFIG, "hStream"), CONFIG_ATTRS = offset(LAUNCH_CONFIG, "attrs"),
            CONFIG_NUM_ATTRS = offset(LAUNCH_CONFIG, "numAttrs"), ATTRIBUTE_VALUE = offset(LAUNCH_ATTRIBUTE, "value");
    /** CU_LAUNCH_ATTRIBUTE_PROGRAMMATIC_STREAM_SERIALIZATION: the launch may overlap the kernel before it in its stream. */
    static final int LAUNCH_ATTRIBUTE_PROGRAMMATIC_STREAM_SERIALIZATION = 6;
    /** CU_LAUNCH_ATTRIBUTE_CLUSTER_DIMENSION: the grid runs as clusters of x × y × z blocks (three unsigned ints), co-scheduled on one GPC. */
    static final int LAUNCH_ATTRIBUTE_CLUSTER_DIMENSION = 4;
    /** CU_KERNEL_NODE_ATTRIBUTE_PRIORITY: a graph kernel node's blocks are scheduled before those of nodes of lower priority. */
    static final int KERNEL_NODE_ATTRIBUTE_PRIORITY = 8;
    /** CUDA_GRAPH_INSTANTIATE_FLAG_USE_NODE_PRIORITY: the graph runs at its nodes' priorities, not its stream's. */
    static final long GRAPH_INSTANTIATE_FLAG_USE_NODE_PRIORITY = 8;
    static final int GRAPH_NODE_TYPE_KERNEL = 0;
    static final MethodHandle cuStreamBeginCapture = fn("cuStreamBeginCapture_v2", JAVA_INT, ADDRESS, JAVA_INT);
    static final MethodHandle cuStreamEndCapture = fn("cuStreamEndCapture", JAVA_INT, ADDRESS, ADDRESS);
    static final MethodHandle cuGraphInstantiate = fn("cuGraphInstantiateWithFlags", JAVA_INT, ADDRESS, ADDRESS, JAVA_LONG);
    static final MethodHandle cuGraphGetNodes = fn("cuGraphGetNodes", JAVA_INT, ADDRESS, ADDRESS, ADDRESS);
    static final MethodHandle cuGraphNodeGetType = fn("cuGraphNodeGetType", JAVA_INT, ADDRESS, ADDRESS);
    /** Fills a CUDA_KERNEL_NODE_PARAMS (cuda.h, 72 bytes), whose first field is the node's CUfunction. */
    static final MethodHandle cuGraphKernelNodeGetParams = fn("cuGraphKernelNodeGetParams_v2", JAVA_INT, ADDRESS, ADDRESS);
    static final MethodHandle cuGraphKernelNodeSetAttribute = fn("cuGraphKernelNodeSetAttribute", JAVA_INT, ADDRESS, JAVA_INT, ADDRESS);
    static final MethodHandle cuGraphLaunch = fn("cuGraphLaunch", JAVA_INT, ADDRESS, ADDRESS);
    static final MethodHandle cuGraphExecDestroy = fn("cuGraphExecDestroy", JAVA_INT, ADDRESS);
    static final MethodHandle cuGraphDestroy = fn("cuGraphDestroy", JAVA_INT, ADDRESS);
    static final MethodHandle cuEventCreate = fn("cuEventCreate", JAVA_INT, ADDRESS, JAVA_INT);
    static final MethodHandle cuEventRecord = fn("cuEventRecord", JAVA_INT, ADDRESS, ADDRESS);
    static final MethodHandle cuEventSynchronize = fn("cuEventSynchronize", JAVA_INT, ADDRESS);
    static final MethodHandle cuEventElapsedTime = fn("cuEventElapsedTime", JAVA_INT, ADDRESS, ADDRESS, ADDRESS);
    static final MethodHandle cuEventDestroy = fn("cuEventDestroy_v2", JAVA_INT, ADDRESS);
    static final MethodHandle cuGetErrorName = fn("cuGetErrorName", JAVA_INT, JAVA_INT, ADDRESS);

    private Cu() {}

    /** Why CUDA cannot be used here, or null if the driver library is present. */
    static String unavailable() {
        return LIB.present() ? null : LIB.whyMissing();
    }

    private static long offset(StructLayout struct, String field) {
        return struct.byteOffset(MemoryLayout.PathElement.groupElement(field));
    }

    private static MethodHandle fn(String name, MemoryLayout ret, MemoryLayout... args) {
        return LIB.function(name, ret, args);
    }

    /** A driver call failed: names the call and the error. */
    static final class CudaException extends RuntimeException {
        /** The call that failed, as the message names it: "cuLaunchKernelEx(k_ew_c_skip, programmatic)". */
        final String call;

        CudaException(String call, int status, String detail) {
            super(call + " failed: " + name(status) + " (" + status + ")" + (detail == null || detail.isBlank() ? "" : "\n" + detail));
            this.call = call;
        }

        /** The message's first line, without the driver's log after it: for a notice that names the refusal. */
        String headline() { return getMessage().lines().findFirst().orElse(""); }
    }

    static void check(int status, String call) {
        if (status != SUCCESS) throw new CudaException(call, status, null);
    }

    static Object call(MethodHandle h, Object... args) {
        return LIB.call(h, args);
    }

    static void status(MethodHandle h, String name, Object... args) {
        check((int) call(h, args), name);
    }

    static String name(int status) {
        if (cuGetErrorName == null) return "CUDA error";
        try (Arena a = Arena.ofConfined()) {
            MemorySegment out = a.allocate(ADDRESS);
            if ((int) call(cuGetErrorName, status, out) != SUCCESS) return "CUDA error";
            return out.get(ADDRESS, 0).reinterpret(256).getString(0);
        }
    }
}
