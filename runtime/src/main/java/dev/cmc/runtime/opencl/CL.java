package dev.cmc.runtime.opencl;

import java.lang.foreign.*;
import java.lang.invoke.MethodHandle;

import static java.lang.foreign.ValueLayout.*;

/**
 * Thin FFM bindings to the OpenCL 1.2 C API in libOpenCL.so.1: one method handle per call, and one
 * {@link #check} that turns a status code into an exception naming the call. Handles are MemorySegments.
 * cl_bitfield arguments (device type, memory flags, queue properties) are 64-bit; size_t is the linker's.
 */
final class CL {
    static final int SUCCESS = 0;
    static final long DEVICE_TYPE_CPU = 1 << 1, DEVICE_TYPE_GPU = 1 << 2, DEVICE_TYPE_ALL = 0xFFFFFFFFL;
    static final int PLATFORM_NAME = 0x0902;
    static final int DEVICE_TYPE = 0x1000, DEVICE_MAX_COMPUTE_UNITS = 0x1002, DEVICE_GLOBAL_MEM_SIZE = 0x101F, DEVICE_NAME = 0x102B,
            DEVICE_VERSION = 0x102F, DEVICE_OPENCL_C_VERSION = 0x103D, DEVICE_MAX_WORK_GROUP_SIZE = 0x1004;
    static final long MEM_READ_WRITE = 1;
    static final long QUEUE_PROFILING_ENABLE = 1 << 1;
    static final int PROFILING_COMMAND_START = 0x1282, PROFILING_COMMAND_END = 0x1283;
    static final int PROGRAM_BUILD_LOG = 0x1183, PROGRAM_BINARY_SIZES = 0x1165, PROGRAM_BINARIES = 0x1166;

    static final ValueLayout SIZE_T = (ValueLayout) Linker.nativeLinker().canonicalLayouts().get("size_t");

    private static final dev.cmc.runtime.NativeLibrary LIB = dev.cmc.runtime.NativeLibrary.open("libOpenCL.so.1",
            "no OpenCL loader (libOpenCL.so.1) on this machine; on Debian: apt-get install ocl-icd-libopencl1 pocl-opencl-icd");

    static final MethodHandle clGetPlatformIDs = fn("clGetPlatformIDs", JAVA_INT, JAVA_INT, ADDRESS, ADDRESS);
    static final MethodHandle clGetPlatformInfo = fn("clGetPlatformInfo", JAVA_INT, ADDRESS, JAVA_INT, SIZE_T, ADDRESS, ADDRESS);
    static final MethodHandle clGetDeviceIDs = fn("clGetDeviceIDs", JAVA_INT, ADDRESS, JAVA_LONG, JAVA_INT, ADDRESS, ADDRESS);
    static final MethodHandle clGetDeviceInfo = fn("clGetDeviceInfo", JAVA_INT, ADDRESS, JAVA_INT, SIZE_T, ADDRESS, ADDRESS);
    static final MethodHandle clCreateContext = fn("clCreateContext", ADDRESS, ADDRESS, JAVA_INT, ADDRESS, ADDRESS, ADDRESS, ADDRESS);
    static final MethodHandle clCreateCommandQueue = fn("clCreateCommandQueue", ADDRESS, ADDRESS, ADDRESS, JAVA_LONG, ADDRESS);
    static final MethodHandle clCreateBuffer = fn("clCreateBuffer", ADDRESS, ADDRESS, JAVA_LONG, SIZE_T, ADDRESS, ADDRESS);
    static final MethodHandle clEnqueueWriteBuffer = fn("clEnqueueWriteBuffer", JAVA_INT, ADDRESS, ADDRESS, JAVA_INT, SIZE_T, SIZE_T, ADDRESS, JAVA_INT, ADDRESS, ADDRESS);
    static final MethodHandle clEnqueueReadBuffer = fn("clEnqueueReadBuffer", JAVA_INT, ADDRESS, ADDRESS, JAVA_INT, SIZE_T, SIZE_T, ADDRESS, JAVA_INT, ADDRESS, ADDRESS);
    static final MethodHandle clCreateProgramWithSource = fn("clCreateProgramWithSource", ADDRESS, ADDRESS, JAVA_INT, ADDRESS, ADDRESS, ADDRESS);
    static final MethodHandle clCreateProgramWithBinary = fn("clCreateProgramWithBinary", ADDRESS, ADDRESS, JAVA_INT, ADDRESS, ADDRESS, ADDRESS, ADDRESS, ADDRESS);
    static final MethodHandle clBuildProgram = fn("clBuildProgram", JAVA_INT, ADDRESS, JAVA_INT, ADDRESS, ADDRESS, ADDRESS, ADDRESS);
    static final MethodHandle clGetProgramBuildInfo = fn("clGetProgramBuildInfo", JAVA_INT, ADDRESS, ADDRESS, JAVA_INT, SIZE_T, ADDRESS, ADDRESS);
    static final MethodHandle clGetProgramInfo = fn("clGetProgramInfo", JAVA_INT, ADDRESS, JAVA_INT, SIZE_T, ADDRESS, ADDRESS);
    static final MethodHandle clCreateKernel = fn("clCreateKernel", ADDRESS, ADDRESS, ADDRESS, ADDRESS);
    static final MethodHandle clSetKernelArg = fn("clSetKernelArg", JAVA_INT, ADDRESS, JAVA_INT, SIZE_T, ADDRESS);
    static final MethodHandle clEnqueueNDRangeKernel = fn("clEnqueueNDRangeKernel", JAVA_INT, ADDRESS, ADDRESS, JAVA_INT, ADDRESS, ADDRESS, ADDRESS, JAVA_INT, ADDRESS, ADDRESS);
    static final MethodHandle clEnqueueCopyBuffer = fn("clEnqueueCopyBuffer", JAVA_INT, ADDRESS, ADDRESS, ADDRESS, SIZE_T, SIZE_T, SIZE_T, JAVA_INT, ADDRESS, ADDRESS);
    static final MethodHandle clEnqueueFillBuffer = fn("clEnqueueFillBuffer", JAVA_INT, ADDRESS, ADDRESS, ADDRESS, SIZE_T, SIZE_T, SIZE_T, JAVA_INT, ADDRESS, ADDRESS);
    static final MethodHandle clGetEventProfilingInfo = fn("clGetEventProfilingInfo", JAVA_INT, ADDRESS, JAVA_INT, SIZE_T, ADDRESS, ADDRESS);
    static final MethodHandle clReleaseEvent = fn("clReleaseEvent", JAVA_INT, ADDRESS);
    static final MethodHandle clFinish = fn("clFinish", JAVA_INT, ADDRESS);
    static final MethodHandle clReleaseMemObject = fn("clReleaseMemObject", JAVA_INT, ADDRESS);
    static final MethodHandle clReleaseKernel = fn("clReleaseKernel", JAVA_INT, ADDRESS);
    static final MethodHandle clReleaseProgram = fn("clReleaseProgram", JAVA_INT, ADDRESS);
    static final MethodHandle clReleaseCommandQueue = fn("clReleaseCommandQueue", JAVA_INT, ADDRESS);
    static final MethodHandle clReleaseContext = fn("clReleaseContext", JAVA_INT, ADDRESS);

    private CL() {}

    /** Why OpenCL cannot be used here, or null if the loader is present. */
    static String unavailable() {
        return LIB.present() ? null : LIB.whyMissing();
    }

    private static MethodHandle fn(String name, MemoryLayout ret, MemoryLayout... args) {
        return LIB.function(name, ret, args);
    }

    /** An OpenCL call failed: names the call and the error. */
    static final class ClException extends RuntimeException {
        final int status;

        ClException(String call, int status, String detail) {
            super(call + " failed: " + name(status) + " (" + status + ")" + (detail == null ? "" : "\n" + detail));
            this.status = status;
        }
    }

    static void check(int status, String call) {
        if (status != SUCCESS) throw new ClException(call, status, null);
    }

    /** Calls a handle and unwraps what it throws; every call in the runtime goes through here. */
    static Object call(MethodHandle h, Object... args) {
        return LIB.call(h, args);
    }

    static int status(MethodHandle h, String name, Object... args) {
        int s = (int) call(h, args);
        check(s, name);
        return s;
    }

    static String name(int status) {
        return switch (status) {
            case -1 -> "CL_DEVICE_NOT_FOUND";
            case -2 -> "CL_DEVICE_NOT_AVAILABLE";
            case -3 -> "CL_COMPILER_NOT_AVAILABLE";
            case -4 -> "CL_MEM_OBJECT_ALLOCATION_FAILURE";
            case -5 -> "CL_OUT_OF_RESOURCES";
            case -6 -> "CL_OUT_OF_HOST_MEMORY";
            case -11 -> "CL_BUILD_PROGRAM_FAILURE";
            case -30 -> "CL_INVALID_VALUE";
            case -32 -> "CL_INVALID_PLATFORM";
            case -33 -> "CL_INVALID_DEVICE";
            case -34 -> "CL_INVALID_CONTEXT";
            case -36 -> "CL_INVALID_COMMAND_QUEUE";
            case -38 -> "CL_INVALID_MEM_OBJECT";
            case -42 -> "CL_INVALID_BINARY";
            case -44 -> "CL_INVALID_PROGRAM";
            case -45 -> "CL_INVALID_PROGRAM_EXECUTABLE";
            case -46 -> "CL_INVALID_KERNEL_NAME";
            case -48 -> "CL_INVALID_KERNEL";
            case -49 -> "CL_INVALID_ARG_INDEX";
            case -50 -> "CL_INVALID_ARG_VALUE";
            case -51 -> "CL_INVALID_ARG_SIZE";
            case -52 -> "CL_INVALID_KERNEL_ARGS";
            case -54 -> "CL_INVALID_WORK_GROUP_SIZE";
            case -1001 -> "CL_PLATFORM_NOT_FOUND_KHR (no OpenCL platform installed)";
            default -> "OpenCL error";
        };
    }
}
