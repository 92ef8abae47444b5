/*
 * A stand-in for libcuda.so.1 that runs no kernels but holds every call cmc's cuda runtime makes to the
 * driver API's rules, so that the host side (module loading, launches, stream capture into graphs, memory)
 * is checked on machines without a GPU. FakeDriverTest builds it with the C compiler and points the runtime
 * at it (CMC_CUDA_LIBRARY). It reports one GPU, an H100 by default (CMC_FAKE_CUDA_CC=80 makes it an A100, 100 a
 * Blackwell B200: compute capability 10.0, an H100's shared memory),
 * and writes what it sees, one line a call of interest, to the file named by CMC_FAKE_CUDA_LOG:
 *
 *   launch NAME grid X Y Z block B shared S stream N node K deps A,B rows R [programmatic]   (node -1 outside a capture)
 *   node K priority P NAME     (a captured graph's node K set to priority P)
 *   capture begin|end ...      graph launch EXEC nodes N (its first launch)      note TEXT (from fakecuda_note)
 *   error CALL: WHY            (the call also fails, as the real driver would, or worse, would not)
 *   exit live allocations N host N modules N streams N events N graphs N
 *
 * Kernel rules, from each .entry of the PTX it was given: the launch's threads within .maxntid, its
 * static shared memory within 48 KB, dynamic shared memory above 48 KB only up to what cuFuncSetAttribute
 * allowed, and 227 KB in all; every .u64 parameter a live device allocation (or inside one).
 * Capture rules: inside a capture, a kernel goes only to a stream in it (the origin, or one that waited on an
 * event recorded in it), and at its end every such stream has joined back into the origin.
 *
 * Event times are made up (see cuEventElapsedTime): a kernel is fastest at 2 K slices, and twice as fast in clusters,
 * for the runtime's tuning to find.
 *
 * CMC_FAKE_CUDA_FAULT makes it fail on purpose, for the runtime's error paths: "jit" refuses every module with
 * a JIT error log, "fork" refuses any second stream's joining a capture, "pdl" refuses programmatic launches in a
 * capture, "pdl-launch" refuses to launch a graph that holds them, "priority" refuses to set a graph node's priority,
 * "tune-tiles-refused" refuses every cluster launch.
 */
#define _GNU_SOURCE
#include <stdarg.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>

typedef int CUresult;
typedef unsigned long long CUdeviceptr;

enum { OK = 0, INVALID_VALUE = 1, NOT_INITIALIZED = 3, INVALID_CONTEXT = 201, INVALID_IMAGE = 200, NOT_FOUND = 500,
       INVALID_HANDLE = 400, CAPTURE_UNJOINED = 904, CAPTURE_ISOLATION = 906, LAUNCH_OUT_OF_RESOURCES = 701, INVALID_CLUSTER_SIZE = 912,
       NOT_SUPPORTED = 801 };

#define MAX_LIVE 4096
#define MAX_NODES 4096
#define MAX_DEPS 64
#define STATIC_SHARED_LIMIT (48 * 1024)
#define SHARED_LIMIT (227 * 1024)

static FILE *logFile;
static int initialised, major = 9, minor = 0;
static const char *fault = "";
/* The current context is the calling thread's, as the real driver keeps it. */
static _Thread_local void *current;
static int primaryContext;

static void say(const char *fmt, ...) {
    if (!logFile) {
        const char *path = getenv("CMC_FAKE_CUDA_LOG");
        logFile = path ? fopen(path, "a") : stderr;
        if (!logFile) logFile = stderr;
    }
    va_list ap;
    va_start(ap, fmt);
    vfprintf(logFile, fmt, ap);
    va_end(ap);
    fputc('\n', logFile);
    fflush(logFile);
}

static CUresult fail(CUresult status, const char *call, const char *fmt, ...) {
    char why[512];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(why, sizeof why, fmt, ap);
    va_end(ap);
    say("error %s: %s", call, why);
    return status;
}

/* ---- handles: each a small struct, kept in a list of the live ones so that a stale handle is caught ---- */

typedef struct { void *items[MAX_LIVE]; int count; } Live;

static void keep(Live *l, void *p) { if (l->count < MAX_LIVE) l->items[l->count++] = p; }
static int alive(Live *l, void *p) { for (int i = 0; i < l->count; i++) if (l->items[i] == p) return 1; return 0; }
static int drop(Live *l, void *p) {
    for (int i = 0; i < l->count; i++) if (l->items[i] == p) { l->items[i] = l->items[--l->count]; return 1; }
    return 0;
}

typedef struct { char name[128]; int params, pointerParams[64], maxThreads, staticShared, maxDynamicShared, awaitsGrids, sumsInCluster; } Function;
typedef struct { Function *functions; int count; } Module;
typedef struct { int deps[MAX_DEPS]; int count; } Frontier;
typedef struct { int id, capturing; Frontier last; } Stream;
typedef struct { int captured; Frontier at; } Event;
typedef struct { Function *fn; unsigned long long args[64]; int programmatic; unsigned gridZ; int priority; unsigned clusterSize; } Node;
typedef struct { int id, nodes, launches; Node *node; } Graph;

static Live modules, streams, events, graphs, execs, hostBlocks;
static struct { CUdeviceptr at; size_t bytes; } allocations[MAX_LIVE];
static int allocationCount, streamIds, graphIds;

/* The capture under way: its origin stream and the nodes recorded so far. */
static Stream *origin;
static Node nodes[MAX_NODES];
static int nodeCount;

static int isAllocation(CUdeviceptr p) {
    for (int i = 0; i < allocationCount; i++) if (p >= allocations[i].at && p < allocations[i].at + allocations[i].bytes) return 1;
    return 0;
}

/* ---- device, context ---- */

CUresult cuInit(unsigned flags) {
    const char *cc = getenv("CMC_FAKE_CUDA_CC");
    if (cc && atoi(cc) >= 10) { major = atoi(cc) / 10; minor = atoi(cc) % 10; }
    if (getenv("CMC_FAKE_CUDA_FAULT")) fault = getenv("CMC_FAKE_CUDA_FAULT");
    initialised = 1;
    return flags == 0 ? OK : fail(INVALID_VALUE, "cuInit", "flags must be 0");
}

#define NEEDS_INIT(call) if (!initialised) return fail(NOT_INITIALIZED, call, "cuInit was not called")
#define NEEDS_CONTEXT(call) do { NEEDS_INIT(call); if (!current) return fail(INVALID_CONTEXT, call, "no current context"); } while (0)

CUresult cuDriverGetVersion(int *v) { *v = 13000; return OK; }
CUresult cuDeviceGetCount(int *n) { NEEDS_INIT("cuDeviceGetCount"); *n = 1; return OK; }
CUresult cuDeviceGet(int *d, int ordinal) {
    NEEDS_INIT("cuDeviceGet");
    if (ordinal != 0) return fail(INVALID_VALUE, "cuDeviceGet", "no device %d", ordinal);
    *d = 0;
    return OK;
}
CUresult cuDeviceGetName(char *name, int len, int d) {
    snprintf(name, len, "cmc fake CUDA driver (%s)", major >= 10 ? "B200-like" : major == 9 ? "H100-like" : "A100-like");
    return d == 0 ? OK : INVALID_VALUE;
}
CUresult cuDeviceTotalMem_v2(size_t *bytes, int d) { *bytes = 80ull << 30; return d == 0 ? OK : INVALID_VALUE; }
CUresult cuDeviceGetAttribute(int *v, int attribute, int d) {
    switch (attribute) {
        case 16: *v = major >= 9 ? 132 : 108; break;   /* multiprocessors */
        case 75: *v = major; break;
        case 76: *v = minor; break;
        case 97: *v = major >= 9 ? 232448 : 166912; break;   /* shared memory a block may opt in to */
        default: return fail(INVALID_VALUE, "cuDeviceGetAttribute", "attribute %d is not one the fake knows", attribute);
    }
    return d == 0 ? OK : INVALID_VALUE;
}
CUresult cuDevicePrimaryCtxRetain(void **ctx, int d) {
    NEEDS_INIT("cuDevicePrimaryCtxRetain");
    *ctx = &primaryContext;
    return d == 0 ? OK : INVALID_VALUE;
}
CUresult cuCtxSetCurrent(void *ctx) {
    if (ctx != &primaryContext) return fail(INVALID_CONTEXT, "cuCtxSetCurrent", "not a context this driver made");
    current = ctx;
    return OK;
}
CUresult cuCtxSynchronize(void) { NEEDS_CONTEXT("cuCtxSynchronize"); return OK; }
/* Priorities from 0 (least urgent, the default) to -5, as on an H100. */
#define LEAST_PRIORITY 0
#define GREATEST_PRIORITY (-5)
CUresult cuCtxGetStreamPriorityRange(int *least, int *greatest) {
    NEEDS_CONTEXT("cuCtxGetStreamPriorityRange");
    *least = LEAST_PRIORITY;
    *greatest = GREATEST_PRIORITY;
    return OK;
}
CUresult cuMemGetInfo_v2(size_t *freeBytes, size_t *total) {
    NEEDS_CONTEXT("cuMemGetInfo");
    size_t used = 0;
    for (int i = 0; i < allocationCount; i++) used += allocations[i].bytes;
    *total = 80ull << 30;
    *freeBytes = *total - used;
    return OK;
}
CUresult cuGetErrorName(CUresult status, const char **name) {
    switch (status) {
        case OK: *name = "CUDA_SUCCESS"; break;
        case INVALID_VALUE: *name = "CUDA_ERROR_INVALID_VALUE"; break;
        case INVALID_HANDLE: *name = "CUDA_ERROR_INVALID_HANDLE"; break;
        case INVALID_IMAGE: *name = "CUDA_ERROR_INVALID_IMAGE"; break;
        case CAPTURE_UNJOINED: *name = "CUDA_ERROR_STREAM_CAPTURE_UNJOINED"; break;
        case CAPTURE_ISOLATION: *name = "CUDA_ERROR_STREAM_CAPTURE_ISOLATION"; break;
        case LAUNCH_OUT_OF_RESOURCES: *name = "CUDA_ERROR_LAUNCH_OUT_OF_RESOURCES"; break;
        case INVALID_CLUSTER_SIZE: *name = "CUDA_ERROR_INVALID_CLUSTER_SIZE"; break;
        case NOT_SUPPORTED: *name = "CUDA_ERROR_NOT_SUPPORTED"; break;
        default: *name = "CUDA_ERROR_UNKNOWN"; break;
    }
    return OK;
}

/* ---- modules: each .entry's parameters, .maxntid and static shared memory, read from the PTX text ---- */

static int parseEntry(const char *at, const char *end, Function *f) {
    const char *name = at + strlen(".visible .entry ");
    const char *paren = strchr(name, '(');
    if (!paren || paren - name >= (long) sizeof f->name) return 0;
    memcpy(f->name, name, paren - name);
    f->name[paren - name] = 0;
    const char *close = strchr(paren, ')');
    for (const char *p = strstr(paren, ".param"); p && p < close; p = strstr(p + 6, ".param")) {
        if (f->params < 64) f->pointerParams[f->params] = strncmp(p, ".param .u64", 11) == 0;
        f->params++;
    }
    const char *wait = strstr(close, "griddepcontrol.wait;");
    f->awaitsGrids = wait && wait < end;
    const char *cluster = strstr(close, "barrier.cluster.wait");
    f->sumsInCluster = cluster && cluster < end;
    const char *ntid = strstr(close, ".maxntid");
    f->maxThreads = ntid && ntid < end ? atoi(ntid + 9) : 1024;
    for (const char *p = strstr(close, "    .shared "); p && p < end; p = strstr(p + 1, "    .shared ")) {
        const char *bracket = strchr(p, '['), *eol = strchr(p, '\n');
        if (!bracket || (eol && bracket > eol)) continue;
        int element = strstr(p, ".b8 ") && strstr(p, ".b8 ") < bracket ? 1 : 4;
        f->staticShared += element * atoi(bracket + 1);
    }
    return 1;
}

static CUresult loadModule(void **module, const void *image, unsigned options, int *keys, void **values);

/* The runtime JIT-compiles a program's modules on several threads at once, as the real driver allows: one at a
   time here, so that the bookkeeping below stays consistent. */
static atomic_flag loading = ATOMIC_FLAG_INIT;

CUresult cuModuleLoadDataEx(void **module, const void *image, unsigned options, int *keys, void **values) {
    while (atomic_flag_test_and_set(&loading)) { }
    CUresult status = loadModule(module, image, options, keys, values);
    atomic_flag_clear(&loading);
    return status;
}

static CUresult loadModule(void **module, const void *image, unsigned options, int *keys, void **values) {
    NEEDS_CONTEXT("cuModuleLoadDataEx");
    const char *ptx = image;
    char *errorLog = NULL;
    size_t errorLogBytes = 0;
    for (unsigned i = 0; i < options; i++) {
        if (keys[i] == 5) errorLog = values[i];
        if (keys[i] == 6) errorLogBytes = (size_t) (uintptr_t) values[i];
    }
    if (memcmp(ptx, "\x7f" "ELF", 4) == 0) {   /* a cubin (CMC_CUDA_CUBINS): nothing here to read its entries from */
        return fail(INVALID_IMAGE, "cuModuleLoadDataEx", "a cubin: the fake driver loads PTX only");
    }
    if (!strstr(ptx, ".version") || !strstr(ptx, ".target")) {
        if (errorLog && errorLogBytes) snprintf(errorLog, errorLogBytes, "ptxas fatal : fake driver: no .version or .target directive");
        return fail(INVALID_IMAGE, "cuModuleLoadDataEx", "not PTX");
    }
    if (strcmp(fault, "jit") == 0) {
        if (errorLog && errorLogBytes) snprintf(errorLog, errorLogBytes, "ptxas application ptx input, line 12; error   : fake fault for the test");
        return fail(INVALID_IMAGE, "cuModuleLoadDataEx", "refused on purpose (CMC_FAKE_CUDA_FAULT=jit)");
    }
    const char *target = strstr(ptx, ".target ") + 8;
    if (strncmp(target, "sm_90a", 6) == 0 && major != 9) {
        if (errorLog && errorLogBytes) snprintf(errorLog, errorLogBytes, "ptxas fatal : sm_90a code runs on compute capability 9.0 only");
        return fail(INVALID_IMAGE, "cuModuleLoadDataEx", "sm_90a PTX on a compute capability %d.%d device", major, minor);
    }
    if (strncmp(target, "sm_90", 5) == 0 && major < 9) {
        if (errorLog && errorLogBytes) snprintf(errorLog, errorLogBytes, "ptxas fatal : SM version specified by .target is higher than default SM version assumed");
        return fail(INVALID_IMAGE, "cuModuleLoadDataEx", "sm_90 PTX on a compute capability %d.%d device", major, minor);
    }
    Module *m = calloc(1, sizeof *m);
    for (const char *p = strstr(ptx, ".visible .entry "); p; p = strstr(p + 1, ".visible .entry ")) m->count++;
    m->functions = calloc(m->count ? m->count : 1, sizeof *m->functions);
    int k = 0;
    for (const char *p = strstr(ptx, ".visible .entry "); p; k++) {
        const char *next = strstr(p + 1, ".visible .entry ");
        if (!parseEntry(p, next ? next : p + strlen(p), &m->functions[k])) return fail(INVALID_IMAGE, "cuModuleLoadDataEx", "entry %d unreadable", k);
        p = next;
    }
    keep(&modules, m);
    say("module %d entries", m->count);
    *module = m;
    return OK;
}

CUresult cuModuleGetFunction(void **function, void *module, const char *name) {
    NEEDS_CONTEXT("cuModuleGetFunction");
    if (!alive(&modules, module)) return fail(INVALID_HANDLE, "cuModuleGetFunction", "no such module");
    Module *m = module;
    for (int i = 0; i < m->count; i++) {
        if (strcmp(m->functions[i].name, name) == 0) { *function = &m->functions[i]; return OK; }
    }
    return fail(NOT_FOUND, "cuModuleGetFunction", "no entry %s in the module", name);
}

static Function *function(void *f) {
    for (int i = 0; i < modules.count; i++) {
        Module *m = modules.items[i];
        if ((Function *) f >= m->functions && (Function *) f < m->functions + m->count) return f;
    }
    return NULL;
}

CUresult cuFuncSetAttribute(void *f, int attribute, int value) {
    NEEDS_CONTEXT("cuFuncSetAttribute");
    Function *fn = function(f);
    if (!fn) return fail(INVALID_HANDLE, "cuFuncSetAttribute", "no such function");
    if (attribute == 9) {   // CU_FUNC_ATTRIBUTE_PREFERRED_SHARED_MEMORY_CARVEOUT: a percentage, or -1 for no preference
        if (value < -1 || value > 100) return fail(INVALID_VALUE, "cuFuncSetAttribute", "%s: shared memory carveout %d%%", fn->name, value);
        return OK;
    }
    if (attribute != 8) return fail(INVALID_VALUE, "cuFuncSetAttribute", "attribute %d is not one the fake knows", attribute);
    if (value + fn->staticShared > SHARED_LIMIT) {
        return fail(INVALID_VALUE, "cuFuncSetAttribute", "%s: %d bytes of dynamic shared memory and %d static exceed %d", fn->name, value,
                    fn->staticShared, SHARED_LIMIT);
    }
    fn->maxDynamicShared = value;
    return OK;
}

CUresult cuModuleUnload(void *module) {
    NEEDS_CONTEXT("cuModuleUnload");
    if (!drop(&modules, module)) return fail(INVALID_HANDLE, "cuModuleUnload", "no such module");
    free(((Module *) module)->functions);
    free(module);
    return OK;
}

/* ---- memory: device allocations are host mappings, so that copies in and out keep their contents ---- */

CUresult cuMemAlloc_v2(CUdeviceptr *p, size_t bytes) {
    NEEDS_CONTEXT("cuMemAlloc");
    if (bytes == 0) return fail(INVALID_VALUE, "cuMemAlloc", "0 bytes");
    if (allocationCount == MAX_LIVE) return fail(INVALID_VALUE, "cuMemAlloc", "too many allocations");
    void *at = mmap(NULL, bytes, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
    if (at == MAP_FAILED) return fail(INVALID_VALUE, "cuMemAlloc", "out of memory for %zu bytes", bytes);
    allocations[allocationCount].at = (CUdeviceptr) at;
    allocations[allocationCount++].bytes = bytes;
    *p = (CUdeviceptr) at;
    return OK;
}

CUresult cuMemFree_v2(CUdeviceptr p) {
    NEEDS_CONTEXT("cuMemFree");
    for (int i = 0; i < allocationCount; i++) {
        if (allocations[i].at == p) {
            munmap((void *) p, allocations[i].bytes);
            allocations[i] = allocations[--allocationCount];
            return OK;
        }
    }
    return fail(INVALID_VALUE, "cuMemFree", "0x%llx is not an allocation", p);
}

static int inside(CUdeviceptr p, size_t bytes) {
    for (int i = 0; i < allocationCount; i++) {
        if (p >= allocations[i].at && p + bytes <= allocations[i].at + allocations[i].bytes) return 1;
    }
    return 0;
}

static int usable(void *stream) { return alive(&streams, stream); }

CUresult cuMemsetD32Async(CUdeviceptr p, unsigned value, size_t n, void *stream) {
    NEEDS_CONTEXT("cuMemsetD32Async");
    if (!usable(stream)) return fail(INVALID_HANDLE, "cuMemsetD32Async", "no such stream");
    if (!inside(p, 4 * n)) return fail(INVALID_VALUE, "cuMemsetD32Async", "%zu words at 0x%llx overrun its allocation", n, p);
    unsigned *w = (unsigned *) p;
    if (value == 0) {   /* whole pages dropped (they read back as zeros) rather than touched */
        size_t page = 4096;
        CUdeviceptr from = (p + page - 1) / page * page, to = (p + 4 * n) / page * page;
        if (to > from) {
            memset(w, 0, from - p);
            madvise((void *) from, to - from, MADV_DONTNEED);
            memset((void *) to, 0, p + 4 * n - to);
            return OK;
        }
    }
    for (size_t i = 0; i < n; i++) w[i] = value;
    return OK;
}

CUresult cuMemcpyHtoDAsync_v2(CUdeviceptr dst, const void *src, size_t bytes, void *stream) {
    NEEDS_CONTEXT("cuMemcpyHtoDAsync");
    if (!usable(stream)) return fail(INVALID_HANDLE, "cuMemcpyHtoDAsync", "no such stream");
    if (!inside(dst, bytes)) return fail(INVALID_VALUE, "cuMemcpyHtoDAsync", "%zu bytes to 0x%llx overrun its allocation", bytes, dst);
    memcpy((void *) dst, src, bytes);
    return OK;
}

CUresult cuMemcpyDtoHAsync_v2(void *dst, CUdeviceptr src, size_t bytes, void *stream) {
    NEEDS_CONTEXT("cuMemcpyDtoHAsync");
    if (!usable(stream)) return fail(INVALID_HANDLE, "cuMemcpyDtoHAsync", "no such stream");
    if (!inside(src, bytes)) return fail(INVALID_VALUE, "cuMemcpyDtoHAsync", "%zu bytes from 0x%llx overrun its allocation", bytes, src);
    memcpy(dst, (void *) src, bytes);
    return OK;
}

CUresult cuMemcpyDtoDAsync_v2(CUdeviceptr dst, CUdeviceptr src, size_t bytes, void *stream) {
    NEEDS_CONTEXT("cuMemcpyDtoDAsync");
    if (!usable(stream)) return fail(INVALID_HANDLE, "cuMemcpyDtoDAsync", "no such stream");
    if (!inside(src, bytes)) return fail(INVALID_VALUE, "cuMemcpyDtoDAsync", "%zu bytes from 0x%llx overrun its allocation", bytes, src);
    if (!inside(dst, bytes)) return fail(INVALID_VALUE, "cuMemcpyDtoDAsync", "%zu bytes to 0x%llx overrun its allocation", bytes, dst);
    memmove((void *) dst, (void *) src, bytes);
    return OK;
}

CUresult cuMemAllocHost_v2(void **p, size_t bytes) {
    NEEDS_CONTEXT("cuMemAllocHost");
    *p = calloc(1, bytes);
    keep(&hostBlocks, *p);
    return OK;
}

CUresult cuMemFreeHost(void *p) {
    NEEDS_CONTEXT("cuMemFreeHost");
    if (!drop(&hostBlocks, p)) return fail(INVALID_VALUE, "cuMemFreeHost", "not page-locked memory from cuMemAllocHost");
    free(p);
    return OK;
}

/* ---- streams, events and capture ---- */

CUresult cuStreamCreate(void **stream, unsigned flags) {
    NEEDS_CONTEXT("cuStreamCreate");
    Stream *s = calloc(1, sizeof *s);
    s->id = ++streamIds;
    keep(&streams, s);
    *stream = s;
    return flags <= 1 ? OK : fail(INVALID_VALUE, "cuStreamCreate", "flags %u", flags);
}

CUresult cuStreamDestroy_v2(void *stream) {
    NEEDS_CONTEXT("cuStreamDestroy");
    if (stream == origin) return fail(INVALID_VALUE, "cuStreamDestroy", "stream %d is capturing", ((Stream *) stream)->id);
    if (!drop(&streams, stream)) return fail(INVALID_HANDLE, "cuStreamDestroy", "no such stream");
    free(stream);
    return OK;
}

CUresult cuStreamSynchronize(void *stream) {
    NEEDS_CONTEXT("cuStreamSynchronize");
    if (!usable(stream)) return fail(INVALID_HANDLE, "cuStreamSynchronize", "no such stream");
    if (((Stream *) stream)->capturing) return fail(CAPTURE_ISOLATION, "cuStreamSynchronize", "stream %d is capturing", ((Stream *) stream)->id);
    return OK;
}

CUresult cuEventCreate(void **event, unsigned flags) {
    NEEDS_CONTEXT("cuEventCreate");
    Event *e = calloc(1, sizeof *e);
    keep(&events, e);
    *event = e;
    return flags <= 0xF ? OK : fail(INVALID_VALUE, "cuEventCreate", "flags %u", flags);
}

CUresult cuEventDestroy_v2(void *event) {
    NEEDS_CONTEXT("cuEventDestroy");
    if (!drop(&events, event)) return fail(INVALID_HANDLE, "cuEventDestroy", "no such event");
    free(event);
    return OK;
}

CUresult cuEventRecord(void *event, void *stream) {
    NEEDS_CONTEXT("cuEventRecord");
    if (!alive(&events, event) || !usable(stream)) return fail(INVALID_HANDLE, "cuEventRecord", "no such event or stream");
    Event *e = event;
    Stream *s = stream;
    if (origin && !s->capturing) return fail(CAPTURE_ISOLATION, "cuEventRecord", "stream %d is not in the capture under way", s->id);
    e->captured = s->capturing;
    e->at = s->last;
    return OK;
}

CUresult cuEventSynchronize(void *event) {
    NEEDS_CONTEXT("cuEventSynchronize");
    return alive(&events, event) ? OK : fail(INVALID_HANDLE, "cuEventSynchronize", "no such event");
}

/* The grid depth and cluster size of the first kernel of the graph launched last: what cuEventElapsedTime's made-up times follow. */
static unsigned lastGridZ = 1, lastClusterSize = 1;

/* Made-up times, so that tuning has a fastest launch to find: 1 µs, and 1 µs more for each slice the last graph's
   first kernel is away from 2 (a graph of one kernel repeated, as the runtime times them), half that for a
   launch in clusters (of a tile's slices, which a tiling's variant sums across them). */
CUresult cuEventElapsedTime(float *ms, void *start, void *end) {
    NEEDS_CONTEXT("cuEventElapsedTime");
    if (!alive(&events, start) || !alive(&events, end)) return fail(INVALID_HANDLE, "cuEventElapsedTime", "no such event");
    *ms = 0.001f * (1 + abs((int) lastGridZ - 2)) * (lastClusterSize > 1 ? 0.5f : 1.0f);
    return OK;
}

static void merge(Frontier *into, const Frontier *from) {
    for (int i = 0; i < from->count; i++) {
        int seen = 0;
        for (int j = 0; j < into->count; j++) seen |= into->deps[j] == from->deps[i];
        if (!seen && into->count < MAX_DEPS) into->deps[into->count++] = from->deps[i];
    }
}

CUresult cuStreamWaitEvent(void *stream, void *event, unsigned flags) {
    NEEDS_CONTEXT("cuStreamWaitEvent");
    if (!usable(stream) || !alive(&events, event)) return fail(INVALID_HANDLE, "cuStreamWaitEvent", "no such stream or event");
    if (flags != 0) return fail(INVALID_VALUE, "cuStreamWaitEvent", "flags %u", flags);
    Stream *s = stream;
    Event *e = event;
    if (e->captured && !s->capturing && strcmp(fault, "fork") == 0) {
        return fail(CAPTURE_ISOLATION, "cuStreamWaitEvent", "stream %d refused on purpose (CMC_FAKE_CUDA_FAULT=fork)", s->id);
    }
    if (e->captured && !s->capturing) {   /* the stream joins the capture */
        s->capturing = 1;
        s->last.count = 0;
    }
    if (s->capturing) {
        if (!e->captured) return fail(CAPTURE_ISOLATION, "cuStreamWaitEvent", "stream %d waits inside a capture on an event recorded outside it", s->id);
        merge(&s->last, &e->at);
    }
    return OK;
}

CUresult cuStreamBeginCapture_v2(void *stream, int mode) {
    NEEDS_CONTEXT("cuStreamBeginCapture");
    if (!usable(stream)) return fail(INVALID_HANDLE, "cuStreamBeginCapture", "no such stream");
    if (origin) return fail(INVALID_VALUE, "cuStreamBeginCapture", "a capture is already under way");
    if (mode < 0 || mode > 2) return fail(INVALID_VALUE, "cuStreamBeginCapture", "mode %d", mode);
    origin = stream;
    origin->capturing = 1;
    origin->last.count = 0;
    nodeCount = 0;
    say("capture begin stream %d", origin->id);
    return OK;
}

static Frontier nodeDeps[MAX_NODES];

/* Whether node n is `to` or leads to it through the recorded dependencies (a search back from `to`). */
static int reaches(int n, int to) {
    static char seen[MAX_NODES];
    static int queue[MAX_NODES];
    memset(seen, 0, sizeof seen);
    int head = 0, tail = 0;
    queue[tail++] = to;
    seen[to] = 1;
    while (head < tail) {
        int at = queue[head++];
        if (at == n) return 1;
        for (int i = 0; i < nodeDeps[at].count; i++) {
            int d = nodeDeps[at].deps[i];
            if (!seen[d]) { seen[d] = 1; queue[tail++] = d; }
        }
    }
    return 0;
}

CUresult cuStreamEndCapture(void *stream, void **graph) {
    NEEDS_CONTEXT("cuStreamEndCapture");
    if (stream != origin) return fail(INVALID_VALUE, "cuStreamEndCapture", "stream is not the capture's origin");
    CUresult status = OK;
    for (int i = 0; i < streams.count; i++) {
        Stream *s = streams.items[i];
        if (s == origin || !s->capturing) continue;
        for (int j = 0; j < s->last.count; j++) {
            int joined = 0;
            for (int k = 0; k < origin->last.count; k++) joined |= reaches(s->last.deps[j], origin->last.deps[k]);
            if (!joined) status = fail(CAPTURE_UNJOINED, "cuStreamEndCapture", "stream %d's work after node %d never joins the origin", s->id, s->last.deps[j]);
        }
        s->capturing = 0;
    }
    origin->capturing = 0;
    origin = NULL;
    if (status != OK) { *graph = NULL; return status; }
    Graph *g = calloc(1, sizeof *g);
    g->id = ++graphIds;
    g->nodes = nodeCount;
    g->node = malloc(sizeof(Node) * (nodeCount ? nodeCount : 1));
    memcpy(g->node, nodes, sizeof(Node) * nodeCount);
    keep(&graphs, g);
    say("capture end graph %d nodes %d", g->id, nodeCount);
    *graph = g;
    return OK;
}

CUresult cuGraphInstantiateWithFlags(void **exec, void *graph, unsigned long long flags) {
    NEEDS_CONTEXT("cuGraphInstantiate");
    if (!alive(&graphs, graph)) return fail(INVALID_HANDLE, "cuGraphInstantiate", "no such graph");
    if (flags != 0 && flags != 8) return fail(INVALID_VALUE, "cuGraphInstantiate", "flags %llu", flags);
    Graph *g = graph;
    for (int i = 0; i < g->nodes && flags != 8; i++) {
        if (g->node[i].priority != LEAST_PRIORITY) {
            return fail(INVALID_VALUE, "cuGraphInstantiate", "node %d has a priority, which a graph instantiated without CUDA_GRAPH_INSTANTIATE_FLAG_USE_NODE_PRIORITY ignores", i);
        }
    }
    Graph *x = calloc(1, sizeof *x);
    *x = *g;
    x->node = malloc(sizeof(Node) * (g->nodes ? g->nodes : 1));
    memcpy(x->node, g->node, sizeof(Node) * g->nodes);
    keep(&execs, x);
    *exec = x;
    return OK;
}

/* The graph (not instantiated) a node handle points into, or NULL. */
static Graph *graphOf(void *node) {
    for (int i = 0; i < graphs.count; i++) {
        Graph *g = graphs.items[i];
        if ((Node *) node >= g->node && (Node *) node < g->node + g->nodes) return g;
    }
    return NULL;
}

CUresult cuGraphGetNodes(void *graph, void **nodes, size_t *count) {
    NEEDS_CONTEXT("cuGraphGetNodes");
    if (!alive(&graphs, graph) || !count) return fail(INVALID_VALUE, "cuGraphGetNodes", "no such graph, or no count");
    Graph *g = graph;
    if (nodes) for (size_t i = 0; i < *count && i < (size_t) g->nodes; i++) nodes[i] = &g->node[i];
    *count = g->nodes;
    return OK;
}

CUresult cuGraphNodeGetType(void *node, int *type) {
    NEEDS_CONTEXT("cuGraphNodeGetType");
    if (!graphOf(node)) return fail(INVALID_VALUE, "cuGraphNodeGetType", "no such node");
    *type = 0;   /* CU_GRAPH_NODE_TYPE_KERNEL: the fake's graphs hold kernels alone */
    return OK;
}

/* CUDA_KERNEL_NODE_PARAMS (72 bytes): the fake fills in its first field, the CUfunction, and zeroes the rest. */
CUresult cuGraphKernelNodeGetParams_v2(void *node, void *params) {
    NEEDS_CONTEXT("cuGraphKernelNodeGetParams");
    if (!graphOf(node) || !params) return fail(INVALID_VALUE, "cuGraphKernelNodeGetParams", "no such node");
    memset(params, 0, 72);
    *(Function **) params = ((Node *) node)->fn;
    return OK;
}

CUresult cuGraphKernelNodeSetAttribute(void *node, int attribute, const void *value) {
    NEEDS_CONTEXT("cuGraphKernelNodeSetAttribute");
    Graph *g = graphOf(node);
    if (!g || !value) return fail(INVALID_VALUE, "cuGraphKernelNodeSetAttribute", "no such node");
    if (attribute != 8) return fail(INVALID_VALUE, "cuGraphKernelNodeSetAttribute", "attribute %d is not one the fake knows", attribute);
    int priority = *(const int *) value;
    if (priority > LEAST_PRIORITY || priority < GREATEST_PRIORITY) return fail(INVALID_VALUE, "cuGraphKernelNodeSetAttribute", "priority %d out of range", priority);
    if (strcmp(fault, "priority") == 0) return fail(INVALID_VALUE, "cuGraphKernelNodeSetAttribute", "refused on purpose (CMC_FAKE_CUDA_FAULT=priority)");
    Node *n = node;
    n->priority = priority;
    say("node %d priority %d %s", (int) (n - g->node), priority, n->fn->name);
    return OK;
}

CUresult cuGraphDestroy(void *graph) {
    NEEDS_CONTEXT("cuGraphDestroy");
    if (!drop(&graphs, graph)) return fail(INVALID_HANDLE, "cuGraphDestroy", "no such graph");
    free(((Graph *) graph)->node);
    free(graph);
    return OK;
}

CUresult cuGraphExecDestroy(void *exec) {
    NEEDS_CONTEXT("cuGraphExecDestroy");
    if (!drop(&execs, exec)) return fail(INVALID_HANDLE, "cuGraphExecDestroy", "no such executable graph");
    free(((Graph *) exec)->node);
    free(exec);
    return OK;
}

/* A kernel's pointer arguments still inside live allocations: what a graph launch needs, long after capture. */
static CUresult checkPointers(const char *call, Function *fn, unsigned long long *args) {
    for (int i = 0; i < fn->params && i < 64; i++) {
        if (fn->pointerParams[i] && !isAllocation(args[i])) {
            return fail(INVALID_VALUE, call, "%s: parameter %d is 0x%llx, not in any live allocation", fn->name, i, args[i]);
        }
    }
    return OK;
}

CUresult cuGraphLaunch(void *exec, void *stream) {
    NEEDS_CONTEXT("cuGraphLaunch");
    if (!alive(&execs, exec) || !usable(stream)) return fail(INVALID_HANDLE, "cuGraphLaunch", "no such executable graph or stream");
    Graph *x = exec;
    for (int i = 0; i < x->nodes; i++) {
        CUresult status = checkPointers("cuGraphLaunch", x->node[i].fn, x->node[i].args);
        if (status != OK) return status;
        if (x->node[i].programmatic && strcmp(fault, "pdl-launch") == 0) {
            return fail(INVALID_VALUE, "cuGraphLaunch", "graph %d: programmatic launches refused on purpose (CMC_FAKE_CUDA_FAULT=pdl-launch)", x->id);
        }
    }
    if (x->nodes > 0) lastGridZ = x->node[0].gridZ, lastClusterSize = x->node[0].clusterSize;
    if (x->launches++ == 0) say("graph launch %d nodes %d", x->id, x->nodes);   /* the first of each: a benchmark makes millions */
    return OK;
}

static CUresult launch(void *f, unsigned gx, unsigned gy, unsigned gz, unsigned bx, unsigned by, unsigned bz, unsigned shared,
                       void *stream, void **params, void **extra, int programmatic, unsigned clusterSize);

CUresult cuLaunchKernel(void *f, unsigned gx, unsigned gy, unsigned gz, unsigned bx, unsigned by, unsigned bz, unsigned shared,
                        void *stream, void **params, void **extra) {
    return launch(f, gx, gy, gz, bx, by, bz, shared, stream, params, extra, 0, 1);
}

/* cuda.h's CUlaunchConfig and CUlaunchAttribute, laid out as there (56 and 72 bytes). */
typedef struct { int id; char pad[4]; union { char pad[64]; int programmaticStreamSerializationAllowed; struct { unsigned x, y, z; } clusterDim; } value; } LaunchAttribute;
typedef struct {
    unsigned gridDimX, gridDimY, gridDimZ, blockDimX, blockDimY, blockDimZ, sharedMemBytes;
    void *hStream;
    LaunchAttribute *attrs;
    unsigned numAttrs;
} LaunchConfig;
_Static_assert(sizeof(LaunchConfig) == 56 && sizeof(LaunchAttribute) == 72, "cuda.h's launch structs");

/* Programmatic dependent launch: only on compute capability 9.0+, and only of a kernel whose PTX waits for the
   grid before it (griddepcontrol.wait), or it could read its inputs before they are written. Fault "pdl" refuses
   it inside a capture, as a driver that cannot capture it would. */
#ifndef FAKE_CUDA_WITHOUT_LAUNCH_EX   /* defined: a driver from before CUDA 11.8, which has no cuLaunchKernelEx */
CUresult cuLaunchKernelEx(const LaunchConfig *c, void *f, void **params, void **extra) {
    NEEDS_CONTEXT("cuLaunchKernelEx");
    if (!c || (c->numAttrs && !c->attrs) || c->numAttrs > 8) return fail(INVALID_VALUE, "cuLaunchKernelEx", "config or its attributes");
    int programmatic = 0;
    unsigned cx = 1, cy = 1, cz = 1;
    for (unsigned i = 0; i < c->numAttrs; i++) {
        if (c->attrs[i].id == 6) {
            programmatic = c->attrs[i].value.programmaticStreamSerializationAllowed != 0;
        } else if (c->attrs[i].id == 4) {   /* CU_LAUNCH_ATTRIBUTE_CLUSTER_DIMENSION */
            cx = c->attrs[i].value.clusterDim.x, cy = c->attrs[i].value.clusterDim.y, cz = c->attrs[i].value.clusterDim.z;
        } else {
            return fail(INVALID_VALUE, "cuLaunchKernelEx", "attribute %d is not one the fake knows", c->attrs[i].id);
        }
    }
    Function *fn = function(f);
    if (programmatic && fn) {
        if (major < 9) return fail(INVALID_VALUE, "cuLaunchKernelEx", "%s: programmatic launch on compute capability %d.%d", fn->name, major, minor);
        if (!fn->awaitsGrids) return fail(INVALID_VALUE, "cuLaunchKernelEx", "%s: programmatic launch of a kernel that never waits (griddepcontrol.wait)", fn->name);
        if (origin && strcmp(fault, "pdl") == 0) return fail(INVALID_VALUE, "cuLaunchKernelEx", "%s: refused in a capture on purpose (CMC_FAKE_CUDA_FAULT=pdl)", fn->name);
    }
    unsigned clusterSize = cx * cy * cz;
    if (clusterSize != 1 && fn) {
        /* Clusters: compute capability 9.0 and newer, whole clusters in the grid, at most 8 blocks without opting in to more. */
        if (major < 9) return fail(INVALID_VALUE, "cuLaunchKernelEx", "%s: a cluster launch on compute capability %d.%d", fn->name, major, minor);
        if (cx == 0 || cy == 0 || cz == 0 || c->gridDimX % cx || c->gridDimY % cy || c->gridDimZ % cz) {
            return fail(INVALID_VALUE, "cuLaunchKernelEx", "%s: grid %u x %u x %u in clusters of %u x %u x %u", fn->name, c->gridDimX, c->gridDimY,
                        c->gridDimZ, cx, cy, cz);
        }
        if (clusterSize > 8) return fail(INVALID_CLUSTER_SIZE, "cuLaunchKernelEx", "%s: a cluster of %u blocks, more than 8", fn->name, clusterSize);
        /* Fault "tune-tiles-refused": a GPU or driver that will not launch these clusters. */
        if (strcmp(fault, "tune-tiles-refused") == 0) {
            return fail(NOT_SUPPORTED, "cuLaunchKernelEx", "%s: cluster launches refused on purpose (CMC_FAKE_CUDA_FAULT=tune-tiles-refused)", fn->name);
        }
    }
    /* A kernel that sums its K slices across a cluster must get its whole grid depth as one: it traps otherwise. */
    if (fn && fn->sumsInCluster && c->gridDimZ > 1 && (cx != 1 || cy != 1 || cz != c->gridDimZ)) {
        return fail(INVALID_VALUE, "cuLaunchKernelEx", "%s: %u slices launched in clusters of %u x %u x %u, not 1 x 1 x %u", fn->name, c->gridDimZ,
                    cx, cy, cz, c->gridDimZ);
    }
    return launch(f, c->gridDimX, c->gridDimY, c->gridDimZ, c->blockDimX, c->blockDimY, c->blockDimZ, c->sharedMemBytes, c->hStream, params, extra,
                  programmatic, clusterSize);
}
#endif

static CUresult launch(void *f, unsigned gx, unsigned gy, unsigned gz, unsigned bx, unsigned by, unsigned bz, unsigned shared,
                       void *stream, void **params, void **extra, int programmatic, unsigned clusterSize) {
    NEEDS_CONTEXT("cuLaunchKernel");
    Function *fn = function(f);
    if (!fn) return fail(INVALID_HANDLE, "cuLaunchKernel", "no such function");
    if (fn->sumsInCluster && gz > 1 && clusterSize == 1) {
        return fail(INVALID_VALUE, "cuLaunchKernel", "%s: %u slices of a kernel that sums them across a cluster, launched without one", fn->name, gz);
    }
    if (!usable(stream)) return fail(INVALID_HANDLE, "cuLaunchKernel", "%s: no such stream", fn->name);
    if (extra) return fail(INVALID_VALUE, "cuLaunchKernel", "%s: extra is not used by cmc", fn->name);
    if (gx == 0 || gy == 0 || gz == 0 || gy > 65535 || gz > 65535 || gx > 0x7fffffffu) {
        return fail(INVALID_VALUE, "cuLaunchKernel", "%s: grid %u x %u x %u", fn->name, gx, gy, gz);
    }
    unsigned threads = bx * by * bz;
    if (threads == 0 || threads > (unsigned) fn->maxThreads) {
        return fail(INVALID_VALUE, "cuLaunchKernel", "%s: %u threads a block, .maxntid %d", fn->name, threads, fn->maxThreads);
    }
    if (fn->staticShared > STATIC_SHARED_LIMIT) {
        return fail(INVALID_VALUE, "cuLaunchKernel", "%s: %d bytes of static shared memory, more than 48 KB", fn->name, fn->staticShared);
    }
    if (shared > 48 * 1024 && (int) shared > fn->maxDynamicShared) {
        return fail(INVALID_VALUE, "cuLaunchKernel", "%s: %u bytes of dynamic shared memory, %d allowed by cuFuncSetAttribute", fn->name, shared,
                    fn->maxDynamicShared);
    }
    if (shared + fn->staticShared > SHARED_LIMIT) {
        return fail(LAUNCH_OUT_OF_RESOURCES, "cuLaunchKernel", "%s: %u + %d bytes of shared memory", fn->name, shared, fn->staticShared);
    }
    Node n = {fn, {0}, programmatic, gz, LEAST_PRIORITY, clusterSize};
    for (int i = 0; i < fn->params && i < 64; i++) {
        n.args[i] = fn->pointerParams[i] ? *(unsigned long long *) params[i] : *(unsigned *) params[i];
    }
    CUresult status = checkPointers("cuLaunchKernel", fn, n.args);
    if (status != OK) return status;
    Stream *s = stream;
    if (origin && !s->capturing) return fail(CAPTURE_ISOLATION, "cuLaunchKernel", "%s: stream %d is not in the capture under way", fn->name, s->id);
    int node = -1;
    char deps[512] = "-";
    if (s->capturing) {
        if (nodeCount == MAX_NODES) return fail(INVALID_VALUE, "cuLaunchKernel", "too many nodes");
        node = nodeCount;
        nodes[node] = n;
        nodeDeps[node] = s->last;
        int at = 0;
        for (int i = 0; i < s->last.count && at < (int) sizeof deps - 12; i++) at += snprintf(deps + at, sizeof deps - at, i ? ",%d" : "%d", s->last.deps[i]);
        nodeCount++;
        s->last.count = 1;
        s->last.deps[0] = node;
    }
    say("launch %s grid %u %u %u block %u shared %u stream %d node %d deps %s rows %llu%s", fn->name, gx, gy, gz, threads, shared, s->id, node, deps,
        fn->params > 0 ? n.args[fn->params - 1] : 0ull, programmatic ? " programmatic" : "");
    if (clusterSize > 1) say("cluster %s %u", fn->name, clusterSize);
    return OK;
}

/* ---- for the test: a marker in the log, and what is still alive when the process ends ---- */

void fakecuda_note(const char *text) { say("note %s", text); }

__attribute__((destructor)) static void report(void) {
    if (!initialised) return;
    say("exit live allocations %d host %d modules %d streams %d events %d graphs %d", allocationCount, hostBlocks.count, modules.count,
        streams.count, events.count, graphs.count + execs.count);
}
