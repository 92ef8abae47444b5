package dev.cmc.runtime.cuda;

import dev.cmc.kernel.Kernel;
import dev.cmc.kernel.MemoryPlan;
import dev.cmc.kernel.Program;
import dev.cmc.kernel.TaskDag;
import dev.cmc.render.Indexing;
import dev.cmc.render.PtxRenderer;
import dev.cmc.runtime.Executable;
import dev.cmc.runtime.OnOffSetting;
import dev.cmc.runtime.Notice;
import dev.cmc.runtime.Timeline;

import java.lang.foreign.Arena;
import java.lang.foreign.MemorySegment;
import java.nio.charset.StandardCharsets;
import java.util.HashMap;
import java.util.List;
import java.util.Map;

import static java.lang.foreign.ValueLayout.*;

/**
 * A program on one NVIDIA GPU: the device's primary context, the generated PTX JIT-compiled by the driver
 * (its error log shown on failure), one device buffer per array kept across runs. Each batch size is captured
 * into a CUDA graph at its first run (its second, where the first times each GEMM's launch, see
 * {@link GemmTuning}); every later run at that size is one cuGraphLaunch, so a whole training step costs one
 * launch from Java instead of a hundred. The capture spreads the kernels over a few streams by the program's
 * dependencies ({@link StreamPlan}), so that the graph's edges are those dependencies and the GPU may run
 * independent kernels (the EMA target's forward pass beside the online network's, the weight gradients beside
 * each other) at the same time; small batches leave most of the GPU idle otherwise. Kernels on or near the
 * longest chain of dependencies go first ({@link #urgentPriority}).
 */
public final class CudaExecutable implements Executable {
    private static final int LOG_BYTES = 1 << 16;
    private static final int MAX_GRAPHS = 8;
    /** Launches of a short kernel that a profile's graph repeats, and the time under which a kernel counts as short. */
    private static final int REPEATS = 20;
    private static final double PROFILE_ALONE_MS = 0.5;
    // The settings are read as each program loads, so that a value cmc cannot use is a SettingException there,
    // which the CLI reports in one line, not an error in this class's initialisation.
    /** CMC_CUDA_GRAPHS=0 launches kernel by kernel, as CUDA_LAUNCH_BLOCKING-style debugging wants. */
    private final boolean useGraphs = new OnOffSetting("CMC_CUDA_GRAPHS", true, "launch each step as one CUDA graph",
            "launch kernel by kernel").value();
    /** Streams a captured graph spreads kernels over; CMC_CUDA_STREAMS=1 captures launch order on one. */
    private final int streamCount = StreamPlan.configuredStreams();
    /**
     * CMC_CUDA_PDL=1 captures kernels with programmatic dependencies (see {@link #programmatic}); off by default,
     * because on an H200 (third run) the CT step took longer with them: 1.98 against 1.85 ms at 4,096 rows, 0.64
     * against 0.63 at 256.
     */
    static final OnOffSetting PDL = new OnOffSetting("CMC_CUDA_PDL", false, "launch each captured kernel while the one before it in its stream runs",
            "launch it once that one has ended");
    /** CMC_CUDA_PRIORITY=0 captures every kernel at the same priority. */
    static final OnOffSetting PRIORITY = new OnOffSetting("CMC_CUDA_PRIORITY", true, "run urgent kernels first", "run every kernel at one priority");
    /** How many launches shorter than the longest a chain through a kernel may be for it to count as urgent ({@link TaskDag#urgent}). */
    static final int URGENT_SLACK = 2;

    private final Program program;
    private final int maxBatch;
    private final Arena arena = Arena.ofShared();
    private final MemorySegment context, stream;
    /** The loaded PTX: one module a kernel ({@link PtxRenderer#modules}). */
    private final MemorySegment[] modules;
    private final MemorySegment[] params;
    private final long[] buffers, sizes;
    private final MemoryPlan memory;
    /** Partial products of split-K GEMMs: a part of one buffer for each, since they may run at once. */
    private final long workspace;
    /** Where the kernels record when they run (see {@link PtxRenderer#TIMELINE}): 2 longs a kernel, then its block records; 0 where they do not. */
    private final long timeline;
    /** Streams (the first is {@link #stream}) and events for a multi-stream capture, made on first use. */
    private StreamPlan plan;
    private MemorySegment[] streams, events;
    private final MemorySegment rows = arena.allocate(JAVA_INT);
    private final Map<Integer, MemorySegment> graphs = new HashMap<>();
    private MemorySegment hostStaging;
    /**
     * Whether captures launch kernels with programmatic dependent launch (compute capability 9.0 and newer,
     * whose sm_90 kernels start with griddepcontrol, see {@link PtxRenderer#awaitsGrids}): in the graph, a kernel
     * that follows another in its stream launches while that one still runs, and waits in its first instruction.
     * Meant for a graph of 35 dependent kernels of tens of µs each (the CT step at 256 rows), whose launch gaps
     * are a share of the step; on an H200 it gained nothing there and cost 7% at 4,096 rows, so only CMC_CUDA_PDL=1
     * asks for it. Turned off for good if a capture with it fails.
     */
    private boolean programmatic;
    /**
     * The priority that urgent kernels' graph nodes get, the GPU's greatest, or none (null): where the GPU has no
     * range of priorities, CMC_CUDA_PRIORITY=0 says so, or the driver refused them. The urgent kernels are those on
     * or near the longest chain of dependencies ({@link TaskDag#urgent}): the forward passes, the input gradients,
     * the last weight gradients. The rest (most weight gradients, bias sums, transposes) have launches to spare,
     * and their blocks would otherwise take SMs that the next kernel on the chain waits for. Set on the captured
     * graph's nodes, which then run at their own priorities (CUDA_GRAPH_INSTANTIATE_FLAG_USE_NODE_PRIORITY), since
     * a capture gives its nodes the priority of the stream they were launched into.
     */
    private Integer urgentPriority;
    private boolean[] urgent;
    /** Kernel index by CUfunction address, to find a captured node's kernel. */
    private final Map<Long, Integer> kernelOf = new HashMap<>();
    /** The one CUlaunchConfig, and room for its two attributes, that launches by cuLaunchKernelEx fill in turn (captures run on one thread). */
    private final MemorySegment launchConfig = arena.allocate(Cu.LAUNCH_CONFIG), launchAttributes = arena.allocate(Cu.LAUNCH_ATTRIBUTE, 2);

    /** How the module's GEMMs multiply and are tiled: what their launches' grids and blocks follow. */
    private final PtxRenderer.Matmul matmul;
    /** The GPU's SMs, which split-K GEMMs fill one wave of (see {@link PtxRenderer#splits}). */
    private final int sms;
    /** A GEMM's launch as timed: its slice count, in the tiling'th of its {@link #tilings} (0, the program's own). */
    private record Choice(int tiling, int slices) {}

    /** A kernel's launch: the tiling it runs in (an index into its {@link #tilings}) and its grid. */
    private record Run(int tiling, PtxRenderer.Launch grid) {}

    /**
     * Each GEMM's launch by batch size, timed on this GPU ({@link GemmTuning}): per kernel, its choice, or null for
     * the formula's count in the program's tiling. A batch size absent here launches the formula's throughout.
     */
    private final Map<Integer, Choice[]> chosenAt = new HashMap<>();
    /** Per kernel, whether it may be timed in place ({@link #rerunnable(Program, MemoryPlan)}), as tuning does. */
    private final boolean[] rerunnable;
    /**
     * Per kernel, the tilings it may be launched in: the program's own first, then, for a GEMM timed in place under
     * CMC_CUDA_TUNE_TILES=1, each of the tiling's variants ({@link PtxRenderer.Tiling#variants}) that gives it a tile
     * of its own.
     */
    private final PtxRenderer.Tiling[][] tilings;
    /** Per kernel and tiling, its function: the program's own loaded with the program, a variant's when first timed or launched. */
    private final MemorySegment[][] functionIn;
    /** A variant tiling's modules, rendered when the first of its kernels is needed, and the variants' modules loaded so far. */
    private final Map<PtxRenderer.Tiling, List<String>> variantPtx = new HashMap<>();
    private final List<MemorySegment> variantModules = new java.util.ArrayList<>();
    private final CudaDevices.Device device;
    private final boolean recordsTimeline;
    /** What the timed choices are kept by: the device, the program's name and PTX, and whether tiles were timed too. */
    private final String tuningKey;
    private final boolean tuning = GemmTuning.SETTING.value();

    CudaExecutable(CudaDevices.Device device, Program program, String ptx, int maxBatch) {
        this(device, program, List.of(ptx), maxBatch, PtxRenderer.Matmul.FMA, PtxRenderer.Tiling.NARROW);
    }

    /** ptx: one module per kernel, in the program's order. */
    CudaExecutable(CudaDevices.Device device, Program program, List<String> ptx, int maxBatch, PtxRenderer.Matmul matmul, PtxRenderer.Tiling tiling) {
        this(device, program, ptx, maxBatch, matmul, tiling, false);
    }

    /** With timeline, ptx's kernels record when they run (PtxRenderer's modules with a timeline), and {@link #timeline} reads it. */
    CudaExecutable(CudaDevices.Device device, Program program, List<String> ptx, int maxBatch, PtxRenderer.Matmul matmul, PtxRenderer.Tiling tiling,
                   boolean timeline) {
        this(device, program, ptx, maxBatch, matmul, tiling, timeline, false);
    }

    /** With tuneTiles, the GEMMs timed in place are timed in each of the tiling's variants too, and launched in the fastest. */
    CudaExecutable(CudaDevices.Device device, Program program, List<String> ptx, int maxBatch, PtxRenderer.Matmul matmul, PtxRenderer.Tiling tiling,
                   boolean timeline, boolean tuneTiles) {
        this.device = device;
        this.recordsTimeline = timeline;
        this.matmul = matmul;
        this.program = program;
        this.maxBatch = maxBatch;
        if (ptx.size() != program.kernels().size()) {
            throw new IllegalArgumentException(program.name() + ": " + ptx.size() + " PTX modules for " + program.kernels().size() + " kernels");
        }
        MemorySegment out = arena.allocate(ADDRESS);
        Cu.status(Cu.cuDevicePrimaryCtxRetain, "cuDevicePrimaryCtxRetain", out, device.handle());
        context = out.get(ADDRESS, 0);
        makeCurrent();
        modules = loadAll(device, ptx, java.util.stream.IntStream.range(0, ptx.size()).toArray());
        sms = device.multiprocessors();
        tuningKey = device.name() + " (" + sms + " SMs) | " + program.name() + " " + Cubins.key(String.join("", ptx)).substring(0, 16)
                + (tuneTiles ? " | tiles" : "");
        programmatic = PDL.value() && PtxRenderer.awaitsGrids(device.arch()) && Cu.cuLaunchKernelEx != null;
        urgentPriority = PRIORITY.value() && Cu.cuGraphKernelNodeSetAttribute != null && Cu.cuGraphGetNodes != null ? greatestPriority() : null;
        memory = MemoryPlan.of(program);
        rerunnable = rerunnable(program, memory);
        tilings = tilings(program, tiling, tuneTiles);
        functionIn = new MemorySegment[program.kernels().size()][];
        long workspaceFloats = 0;
        long[] workspaceAt = new long[functionIn.length];
        for (int k = 0; k < functionIn.length; k++) {
            functionIn[k] = new MemorySegment[tilings[k].length];
            functionIn[k][0] = function(PtxRenderer.kernelName(program, k), modules[k], out);
            kernelOf.put(functionIn[k][0].address(), k);
            allowShared(k, functionIn[k][0], tiling);
            workspaceAt[k] = workspaceFloats;
            Kernel kernel = program.kernels().get(k);
            long most = 0;   // a part as large as the kernel needs in any tiling it may run in (a cluster's sum needs none)
            for (PtxRenderer.Tiling t : tilings[k]) most = Math.max(most, PtxRenderer.workspaceFloats(kernel, maxBatch, matmul, t));
            workspaceFloats += most;
        }
        workspaceFloats = Math.max(1, workspaceFloats);
        Cu.status(Cu.cuStreamCreate, "cuStreamCreate", out, Cu.STREAM_NON_BLOCKING);
        stream = out.get(ADDRESS, 0);

        buffers = new long[program.arrays().size()];
        sizes = new long[buffers.length];
        MemorySegment ptr = arena.allocate(JAVA_LONG);
        for (int i = 0; i < buffers.length; i++) {
            Program.Array a = program.arrays().get(i);
            sizes[i] = Math.max(1, a.size(maxBatch));
            if (!memory.owns(i)) {   // an activation in the memory of an earlier one, dead by the time it is written
                buffers[i] = buffers[memory.storage(i)];
                continue;
            }
            Cu.status(Cu.cuMemAlloc, "cuMemAlloc(" + a.name() + ", " + 4 * sizes[i] + " bytes)", ptr, 4 * sizes[i]);
            buffers[i] = ptr.get(JAVA_LONG, 0);
            // Fresh device memory is garbage; optimizer state and EMAs must start at zero, as on every backend.
            Cu.status(Cu.cuMemsetD32Async, "cuMemsetD32Async(" + a.name() + ")", buffers[i], 0, sizes[i], stream);
            if (a.constValues() != null) {
                float[] v = new float[(int) sizes[i]];
                for (int j = 0; j < v.length; j++) v[j] = (float) a.constValues()[j];
                write(a.name(), v, v.length);
            }
        }
        Cu.status(Cu.cuMemAlloc, "cuMemAlloc(split-K workspace, " + 4 * workspaceFloats + " bytes)", ptr, 4 * workspaceFloats);
        workspace = ptr.get(JAVA_LONG, 0);
        // Split GEMMs count their blocks in tile counters at the head of their workspace: they start at zero.
        Cu.status(Cu.cuMemsetD32Async, "cuMemsetD32Async(split-K workspace)", workspace, 0, workspaceFloats, stream);
        if (timeline) {
            long bytes = PtxRenderer.timelineBytes(functionIn.length);
            Cu.status(Cu.cuMemAlloc, "cuMemAlloc(timeline, " + bytes + " bytes)", ptr, bytes);
            this.timeline = ptr.get(JAVA_LONG, 0);
        } else {
            this.timeline = 0;
        }
        // cuLaunchKernel takes an array of pointers to argument values: device pointers (and the workspace for
        // split-K GEMMs, and the timeline where the kernels record one), then the batch size.
        params = new MemorySegment[functionIn.length];
        for (int k = 0; k < functionIn.length; k++) {
            List<Long> pointers = new java.util.ArrayList<>();
            for (String a : Indexing.arguments(program.kernels().get(k))) pointers.add(buffers[program.arrayIndex(a)]);
            if (PtxRenderer.splitsK(program.kernels().get(k))) pointers.add(workspace + 4 * workspaceAt[k]);
            if (timeline) pointers.add(this.timeline);
            params[k] = arena.allocate(ADDRESS, pointers.size() + 1);
            for (int a = 0; a < pointers.size(); a++) params[k].setAtIndex(ADDRESS, a, arena.allocateFrom(JAVA_LONG, pointers.get(a)));
            params[k].setAtIndex(ADDRESS, pointers.size(), rows);
        }
        sync();
    }

    /**
     * Host threads that JIT-compile a program's modules at once (CMC_CUDA_JIT_THREADS, 1 to 99, else one a core,
     * at most 16): the driver compiles PTX on the calling thread. Any other value is an error naming the setting.
     */
    static int jitThreads() {
        return jitThreads(System.getenv("CMC_CUDA_JIT_THREADS"), Runtime.getRuntime().availableProcessors());
    }

    static int jitThreads(String set, int cores) {
        if (set == null || set.isBlank()) return Math.min(16, cores);
        if (!set.strip().matches("[1-9][0-9]?")) {
            throw new dev.cmc.runtime.SettingException("CMC_CUDA_JIT_THREADS=" + set + ": expected a thread count from 1 to 99 (unset: one a core, at most 16)");
        }
        return Integer.parseInt(set.strip());
    }

    /**
     * Every module (module m holds kernel kernels[m]), on up to {@link #jitThreads} threads each made current on this
     * context (this one where one will do); the first failure is thrown, after the modules already loaded are unloaded.
     */
    private MemorySegment[] loadAll(CudaDevices.Device device, List<String> ptx, int[] kernels) {
        var loaded = new MemorySegment[ptx.size()];
        var next = new java.util.concurrent.atomic.AtomicInteger();
        var failure = new java.util.concurrent.atomic.AtomicReference<RuntimeException>();
        Cubins cubins = Cubins.fromEnvironment();
        Runnable worker = () -> {
            try {
                makeCurrent();
                for (int m; failure.get() == null && (m = next.getAndIncrement()) < loaded.length; ) loaded[m] = load(device, ptx.get(m), kernels[m], program.kernels().size(), cubins);
            } catch (RuntimeException e) {
                failure.compareAndSet(null, e);
            }
        };
        var threads = new java.util.ArrayList<Thread>();
        int count = Math.min(jitThreads(), loaded.length);
        if (count == 1) worker.run();
        else for (int t = 0; t < count; t++) threads.add(Thread.ofPlatform().name("cmc-jit-" + t).start(worker));
        for (Thread t : threads) {
            try {
                t.join();
            } catch (InterruptedException e) {
                Thread.currentThread().interrupt();
                failure.compareAndSet(null, new IllegalStateException("interrupted while the driver compiled " + program.name(), e));
            }
        }
        if (failure.get() != null) {
            for (MemorySegment m : loaded) if (m != null) Cu.call(Cu.cuModuleUnload, m);
            throw failure.get();
        }
        return loaded;
    }

    /**
     * cuModuleLoadDataEx with the JIT's error log captured; a failure names the saved PTX and quotes the log. The
     * module's cubin, where {@link Cubins} has one and the driver takes it, is loaded instead of the PTX.
     */
    private MemorySegment load(CudaDevices.Device device, String ptx, int k, int of, Cubins cubins) {
        cubins.save(ptx);
        byte[] cubin = cubins.find(ptx);
        if (cubin != null) {
            try (Arena a = Arena.ofConfined()) {
                MemorySegment out = a.allocate(ADDRESS);
                int status = (int) Cu.call(Cu.cuModuleLoadDataEx, out, a.allocateFrom(JAVA_BYTE, cubin), 0, MemorySegment.NULL, MemorySegment.NULL);
                if (status == Cu.SUCCESS) return out.get(ADDRESS, 0);
                cubins.refused(Cu.name(status) + " for " + program.name() + "." + program.kernels().get(k).name());
            }
        }
        try (Arena a = Arena.ofConfined()) {
            MemorySegment errors = a.allocate(LOG_BYTES);
            MemorySegment options = a.allocate(JAVA_INT, 2), values = a.allocate(ADDRESS, 2);
            options.setAtIndex(JAVA_INT, 0, Cu.JIT_ERROR_LOG_BUFFER);
            options.setAtIndex(JAVA_INT, 1, Cu.JIT_ERROR_LOG_BUFFER_SIZE_BYTES);
            values.setAtIndex(ADDRESS, 0, errors);
            values.setAtIndex(ADDRESS, 1, MemorySegment.ofAddress(LOG_BYTES));
            MemorySegment out = a.allocate(ADDRESS);
            MemorySegment image = a.allocateFrom(ptx, StandardCharsets.US_ASCII);
            int status = (int) Cu.call(Cu.cuModuleLoadDataEx, out, image, 2, options, values);
            if (status != Cu.SUCCESS) {
                String what = of == 1 ? program.name() : program.name() + "." + program.kernels().get(k).name();
                String where = dev.cmc.runtime.GeneratedSource.saveForDiagnosis(what, ".ptx", ptx);
                throw new Cu.CudaException("cuModuleLoadDataEx for " + what + " on " + device.name(), status,
                        "generated PTX: " + where + "\nJIT log:\n" + errors.getString(0).strip());
            }
            return out.get(ADDRESS, 0);
        }
    }

    private MemorySegment function(String name, MemorySegment module, MemorySegment out) {
        Cu.status(Cu.cuModuleGetFunction, "cuModuleGetFunction(" + name + ")", out, module, arena.allocateFrom(name));
        return out.get(ADDRESS, 0);
    }

    /**
     * Per kernel, the tilings it may run in ({@link #tilings}): the program's own, then under tile tuning, for a GEMM
     * that can be timed in place, each variant whose tile for it differs from those before (a GEMM that does not
     * split K has no cluster to sum across) and multiplies on the same kind of instruction (wgmma, or mma.sync: the
     * two round alike only within the parity bounds); a variant summed across clusters only where the driver
     * launches them.
     */
    private PtxRenderer.Tiling[][] tilings(Program program, PtxRenderer.Tiling own, boolean tuneTiles) {
        var variants = tuneTiles ? own.variants().stream().filter(v -> !v.clustered() || Cu.cuLaunchKernelEx != null).toList() : List.<PtxRenderer.Tiling>of();
        var out = new PtxRenderer.Tiling[program.kernels().size()][];
        for (int k = 0; k < out.length; k++) {
            var mine = new java.util.ArrayList<>(List.of(own));
            if (program.kernels().get(k) instanceof Kernel.Gemm g && rerunnable[k]) {
                PtxRenderer.Tile mineNow = PtxRenderer.tile(g, matmul, own);
                var tiles = new java.util.HashSet<>(List.of(mineNow));
                for (PtxRenderer.Tiling v : variants) {
                    PtxRenderer.Tile t = PtxRenderer.tile(g, matmul, v);
                    if (t.warpgroups() == mineNow.warpgroups() && tiles.add(t)) mine.add(v);
                }
            }
            out[k] = mine.toArray(PtxRenderer.Tiling[]::new);
        }
        return out;
    }

    /**
     * Dynamic shared memory past 48 KB (the wgmma GEMMs' pipeline, a fused MLP block) must be allowed per function
     * first. The carveout asks for an SM's whole shared memory: two 128x128 wgmma blocks (2 x 99 KB) fit only the
     * largest configuration (228 KB), which the driver's own choice need not be.
     */
    private void allowShared(int k, MemorySegment function, PtxRenderer.Tiling tiling) {
        Kernel kernel = program.kernels().get(k);
        int shared = PtxRenderer.launch(kernel, maxBatch, matmul, tiling).sharedBytes();
        if (shared <= 48 * 1024) return;
        Cu.status(Cu.cuFuncSetAttribute, "cuFuncSetAttribute(" + kernel.name() + ", max dynamic shared memory " + shared + " bytes)",
                function, Cu.FUNC_ATTRIBUTE_MAX_DYNAMIC_SHARED_SIZE_BYTES, shared);
        Cu.status(Cu.cuFuncSetAttribute, "cuFuncSetAttribute(" + kernel.name() + ", shared memory carveout " + Cu.CARVEOUT_MAX_SHARED + "%)",
                function, Cu.FUNC_ATTRIBUTE_PREFERRED_SHARED_MEMORY_CARVEOUT, Cu.CARVEOUT_MAX_SHARED);
    }

    /** Kernel k's function in its t'th tiling, a variant's loaded the first time (see {@link #loadVariants}). */
    private MemorySegment function(int k, int t) {
        if (functionIn[k][t] == null) loadVariants(List.of(new int[]{k, t}));
        return functionIn[k][t];
    }

    /**
     * The functions of kernels in variant tilings, each a {kernel, tiling} pair: those not loaded yet rendered (a
     * tiling's modules all at once, the first time one is needed) and JIT-compiled together, as the program's own are.
     */
    private void loadVariants(List<int[]> wanted) {
        var missing = wanted.stream().filter(kt -> functionIn[kt[0]][kt[1]] == null).toList();
        if (missing.isEmpty()) return;
        var ptx = missing.stream().map(kt -> variantPtx.computeIfAbsent(tilings[kt[0]][kt[1]],
                v -> PtxRenderer.modules(program, device.arch(), matmul, v, recordsTimeline)).get(kt[0])).toList();
        MemorySegment[] loaded = loadAll(device, ptx, missing.stream().mapToInt(kt -> kt[0]).toArray());
        try (Arena a = Arena.ofConfined()) {
            for (int i = 0; i < loaded.length; i++) {
                int k = missing.get(i)[0], t = missing.get(i)[1];
                variantModules.add(loaded[i]);
                functionIn[k][t] = function(PtxRenderer.kernelName(program, k), loaded[i], a.allocate(ADDRESS));
                allowShared(k, functionIn[k][t], tilings[k][t]);
                kernelOf.put(functionIn[k][t].address(), k);
            }
        }
    }

    /** Per kernel, whether it is urgent ({@link TaskDag#urgent}): worked out at first use, by a capture or a timeline. */
    private boolean[] urgent() {
        if (urgent == null) urgent = TaskDag.urgent(TaskDag.dependencies(program), URGENT_SLACK);
        return urgent;
    }

    /** The GPU's most urgent priority, or null where it has only one (or the driver does not say). */
    private static Integer greatestPriority() {
        if (Cu.cuCtxGetStreamPriorityRange == null) return null;
        try (Arena a = Arena.ofConfined()) {
            MemorySegment least = a.allocate(JAVA_INT), greatest = a.allocate(JAVA_INT);
            if ((int) Cu.call(Cu.cuCtxGetStreamPriorityRange, least, greatest) != Cu.SUCCESS) return null;
            return greatest.get(JAVA_INT, 0) < least.get(JAVA_INT, 0) ? greatest.get(JAVA_INT, 0) : null;
        }
    }

    private void makeCurrent() {
        Cu.status(Cu.cuCtxSetCurrent, "cuCtxSetCurrent", context);
    }

    private void sync() {
        Cu.status(Cu.cuStreamSynchronize, "cuStreamSynchronize", stream);
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
        makeCurrent();
        MemorySegment staging = pinned(count);
        MemorySegment.copy(src, 0, staging, JAVA_FLOAT, 0, count);
        Cu.status(Cu.cuMemcpyHtoDAsync, "cuMemcpyHtoD(" + array + ")", buffers[i], staging, 4L * count, stream);
        sync();
    }

    /** Every array through one staging buffer, their copies queued together and waited for once. */
    @Override
    public void writeAll(Map<String, float[]> arrays) {
        long total = 0;
        for (var e : arrays.entrySet()) {
            fitting(e.getKey(), e.getValue().length);
            total += e.getValue().length;
        }
        makeCurrent();
        MemorySegment staging = pinned(Math.toIntExact(total));
        long at = 0;
        for (var e : arrays.entrySet()) {
            float[] v = e.getValue();
            MemorySegment.copy(v, 0, staging, JAVA_FLOAT, 4 * at, v.length);
            Cu.status(Cu.cuMemcpyHtoDAsync, "cuMemcpyHtoD(" + e.getKey() + ")", buffers[program.arrayIndex(e.getKey())], staging.asSlice(4 * at),
                    4L * v.length, stream);
            at += v.length;
        }
        sync();
    }

    @Override
    public void read(String array, float[] dst, int count) {
        int i = program.arrayIndex(array);
        makeCurrent();
        MemorySegment staging = pinned(count);
        Cu.status(Cu.cuMemcpyDtoHAsync, "cuMemcpyDtoH(" + array + ")", staging, buffers[i], 4L * count, stream);
        sync();
        MemorySegment.copy(staging, JAVA_FLOAT, 0, dst, 0, count);
    }

    @Override
    public void clear(String array, int count) {
        int i = fitting(array, count);
        makeCurrent();
        Cu.status(Cu.cuMemsetD32Async, "cuMemsetD32Async(" + array + ")", buffers[i], 0, count, stream);
    }

    @Override
    public void copy(String from, String to, int count) {
        int src = fitting(from, count), dst = fitting(to, count);
        makeCurrent();
        // On the stream the graphs launch on, so it lands between the runs before and after it.
        Cu.status(Cu.cuMemcpyDtoDAsync, "cuMemcpyDtoD(" + from + ", " + to + ")", buffers[dst], buffers[src], 4L * count, stream);
    }

    /**
     * Page-locked host memory for at least count floats, kept and grown as needed: copies from it run at the
     * bus's speed, where pageable memory makes the driver stage every transfer through its own buffer first.
     */
    private MemorySegment pinned(int count) {
        long bytes = 4L * Math.max(1, count);
        if (hostStaging == null || hostStaging.byteSize() < bytes) {
            if (hostStaging != null) Cu.status(Cu.cuMemFreeHost, "cuMemFreeHost", hostStaging);
            hostStaging = null;
            try (Arena a = Arena.ofConfined()) {
                MemorySegment out = a.allocate(ADDRESS);
                Cu.status(Cu.cuMemHostAlloc, "cuMemAllocHost(" + bytes + " bytes)", out, bytes);
                hostStaging = out.get(ADDRESS, 0).reinterpret(bytes);
            }
        }
        return hostStaging;
    }

    @Override
    public void run(int batch) {
        if (batch > maxBatch || batch < 1) throw new IllegalArgumentException("batch " + batch + " outside 1.." + maxBatch);
        makeCurrent();
        MemorySegment graph = graphs.get(batch);
        if (graph == null && useGraphs && graphs.size() < MAX_GRAPHS) {
            if (needsTuning(batch)) {
                tuneWhileRunning(batch);   // this run, kernel by kernel; the next is captured with what it found
                sync();
                return;
            }
            graph = capture(batch);
        }
        if (graph != null) launchGraph(graph, batch);
        else launchAll(batch);
        sync();
    }

    /**
     * The launches a kernel may take at this batch: each slice count on offer in each of its tilings, the program's
     * own first; none for a kernel that is not a GEMM it may time in place, or that has a single one.
     */
    private List<Choice> choices(int k, int batch) {
        if (!(program.kernels().get(k) instanceof Kernel.Gemm g) || !rerunnable[k]) return List.of();
        var out = new java.util.ArrayList<Choice>();
        for (int t = 0; t < tilings[k].length; t++) {
            for (int s : PtxRenderer.splitChoices(g, batch, maxBatch, matmul, tilings[k][t], sms)) out.add(new Choice(t, s));
        }
        return out.size() > 1 ? out : List.of();
    }

    /** A choice as the cache and the messages write it: the slice count, and a variant tiling's name after an @. */
    private String written(int k, Choice c) {
        return c.slices() + (c.tiling() == 0 ? "" : "@" + tilings[k][c.tiling()].setting);
    }

    /**
     * Whether each kernel can run again on the arrays as they are and compute what it did: it reads nothing that
     * it writes, in any array's memory (a GEMM that added into its output could not be timed in place).
     */
    private static boolean[] rerunnable(Program program, MemoryPlan memory) {
        boolean[] out = new boolean[program.kernels().size()];
        for (int k = 0; k < out.length; k++) {
            var written = new java.util.HashSet<Integer>();
            Kernel kernel = program.kernels().get(k);
            for (String a : dev.cmc.kernel.Kernels.writes(kernel)) written.add(memory.storage(program.arrayIndex(a)));
            out[k] = dev.cmc.kernel.Kernels.reads(kernel).stream().noneMatch(a -> written.contains(memory.storage(program.arrayIndex(a))));
        }
        return out;
    }

    /**
     * Whether launches are still to be timed at this batch: tuning is on, none are known or cached for it, and
     * some GEMM has a choice (a million rows leave none but tiles: no room in the workspace).
     */
    private boolean needsTuning(int batch) {
        if (!tuning || chosenAt.containsKey(batch) || cachedChoices(batch)) return false;
        for (int k = 0; k < functionIn.length; k++) if (!choices(k, batch).isEmpty()) return true;
        chosenAt.put(batch, new Choice[functionIn.length]);
        return false;
    }

    /** Takes the choices kept for this batch, if the cache has choices that fit the program; whether it did. */
    private boolean cachedChoices(int batch) {
        var offered = new java.util.ArrayList<List<Choice>>();
        for (int k = 0; k < functionIn.length; k++) offered.add(choices(k, batch));
        String[] kept = GemmTuning.cached(tuningKeyAt(batch), functionIn.length, k -> offered.get(k).stream().map(c -> written(k, c)).toList());
        if (kept == null) return false;
        var chosen = new Choice[functionIn.length];
        for (int k = 0; k < chosen.length; k++) {
            for (Choice c : offered.get(k)) if (written(k, c).equals(kept[k])) chosen[k] = c;
        }
        chosenAt.put(batch, chosen);
        return true;
    }

    /**
     * One run kernel by kernel in launch order, in which each GEMM with a choice of launches (slice counts, and
     * tiles under CMC_CUDA_TUNE_TILES=1) is first timed at each (on its inputs as this run made them: a GEMM reads
     * nothing it writes), then launched with the fastest, so that this run computes exactly what the graph captured
     * from the choices will (each variant tiling sums alike, see {@link PtxRenderer.Tiling#variants}). The choices
     * are kept for later runs and said once, with what differs from the formula's. A variant the driver will not
     * load or launch (a cluster it cannot schedule, say) is left out, and said once; the program's own must run.
     */
    private void tuneWhileRunning(int batch) {
        long start = System.nanoTime();
        var variants = new java.util.ArrayList<int[]>();
        for (int k = 0; k < functionIn.length; k++) for (Choice c : choices(k, batch)) if (c.tiling() > 0) variants.add(new int[]{k, c.tiling()});
        var refused = new java.util.ArrayList<String>();
        try {
            loadVariants(variants);
        } catch (Cu.CudaException e) {   // the variants' modules: none kept, the program's own tiling alone timed
            for (int k = 0; k < tilings.length; k++) tilings[k] = java.util.Arrays.copyOf(tilings[k], 1);
            refused.add("loading them: " + e.headline());
        }
        var chosen = new Choice[functionIn.length];
        var changed = new java.util.ArrayList<String>();
        int timed = 0;
        withTimingEvents((timing, ms) -> {
            rows.set(JAVA_INT, 0, batch);
            for (int k = 0; k < functionIn.length; k++) {
                List<Choice> choices = choices(k, batch);
                Run own = launchOf(k, batch);
                if (!choices.isEmpty()) {
                    double[] times = new double[choices.size()];
                    for (int c = 0; c < times.length; c++) {
                        try {
                            times[c] = timeKernel(k, run(k, choices.get(c), batch), timing, ms);
                        } catch (Cu.CudaException e) {
                            if (choices.get(c).tiling() == 0) throw e;
                            times[c] = Double.POSITIVE_INFINITY;
                            refused.add(program.kernels().get(k).name() + " " + written(k, choices.get(c)) + ": " + e.headline());
                        }
                    }
                    Choice formula = new Choice(0, own.grid().gridZ());
                    chosen[k] = GemmTuning.pick(choices, times, formula);
                    if (!chosen[k].equals(formula)) changed.add(program.kernels().get(k).name() + " " + written(k, formula) + "→" + written(k, chosen[k]));
                }
                launchKernel(k, chosen[k] != null ? run(k, chosen[k], batch) : own, stream, false);
            }
        });
        for (Choice c : chosen) if (c != null) timed++;
        chosenAt.put(batch, chosen);
        if (!refused.isEmpty()) {
            Notice.say("cmc: cuda: the driver refused " + refused.size() + " launch" + (refused.size() == 1 ? "" : "es") + " of " + program.name()
                    + " in its tiling's variants, timed without them (first: " + refused.getFirst() + ")");
        }
        if (timed == 0) return;
        var kept = new String[chosen.length];
        for (int k = 0; k < kept.length; k++) kept[k] = chosen[k] == null ? null : written(k, chosen[k]);
        GemmTuning.store(tuningKeyAt(batch), kept);
        int shown = System.getenv("CMC_DEBUG") != null ? changed.size() : Math.min(3, changed.size());
        boolean tiles = java.util.Arrays.stream(tilings).anyMatch(t -> t.length > 1);
        Notice.say(String.format("cmc: cuda: timed the %s of %d GEMMs of %s at batch %d in %.1f s (kept in %s): %s",
                tiles ? "split-K slice counts and tiles" : "split-K slice counts", timed, program.name(), batch, (System.nanoTime() - start) / 1e9,
                GemmTuning.where(), changed.isEmpty() ? "the formula's are fastest"
                        : changed.size() + " differ from the formula's: " + String.join(", ", changed.subList(0, shown))
                        + (shown < changed.size() ? ", … (CMC_DEBUG=1 lists all)" : "")));
    }

    private static PtxRenderer.Launch withSlices(PtxRenderer.Launch l, int slices) {
        return new PtxRenderer.Launch(l.gridX(), l.gridY(), slices, l.block(), l.sharedBytes());
    }

    /** Kernel k's launch at this batch: the choice timed for this batch where there is one, else the formula's in the program's tiling. */
    private Run launchOf(int k, int batch) {
        Choice[] chosen = chosenAt.get(batch);
        if (chosen != null && chosen[k] != null) return run(k, chosen[k], batch);
        return new Run(0, PtxRenderer.launch(program.kernels().get(k), batch, matmul, tilings[k][0], sms));
    }

    /** Kernel k's launch at this batch as a choice says: its tiling's grid and block, with the choice's slice count. */
    private Run run(int k, Choice c, int batch) {
        return new Run(c.tiling(), withSlices(PtxRenderer.launch(program.kernels().get(k), batch, matmul, tilings[k][c.tiling()], sms), c.slices()));
    }

    /**
     * One launch of the graph captured at this batch size. If the driver refuses a graph of programmatic launches
     * or node priorities (it took them at capture), cmc says so once, recaptures every batch size without the
     * programmatic launches (or, with none, without the priorities), and launches that; any other refusal is an error.
     */
    private void launchGraph(MemorySegment graph, int batch) {
        int status = (int) Cu.call(Cu.cuGraphLaunch, graph, stream);
        if (status != Cu.SUCCESS && (programmatic || urgentPriority != null)) {
            if (programmatic) withoutProgrammatic("launching the graph of", Cu.name(status));
            else withoutPriorities("launching the graph of", Cu.name(status));
            status = (int) Cu.call(Cu.cuGraphLaunch, capture(batch), stream);
        }
        Cu.check(status, "cuGraphLaunch");
    }

    /**
     * Records every kernel launch at this batch size into a CUDA graph and instantiates it: over several
     * streams as {@link StreamPlan} spreads them, with programmatic dependent launches where the GPU has them.
     * If the driver refuses a programmatic launch in the capture, or the graph they make, the reason is printed
     * once and it is captured with plain ones; if it refuses setting node priorities, without them; if it refuses
     * another call (several streams), in launch order on one stream, as CMC_CUDA_STREAMS=1 asks from the start,
     * and then without programmatic launches. Before any of these, if it refuses to load or capture GEMMs in the
     * variant tilings an earlier run timed and kept (a cluster a newer driver will not schedule, say), they are
     * captured in the program's own ({@link #withoutVariants}).
     */
    private MemorySegment capture(int batch) {
        if (plan == null) plan = StreamPlan.of(program, streamCount);
        Choice[] chosen = chosenAt.get(batch);   // kernels in variant tilings (kept by an earlier run) loaded before the capture, all at once
        var variants = new java.util.ArrayList<int[]>();
        for (int k = 0; chosen != null && k < chosen.length; k++) if (chosen[k] != null && chosen[k].tiling() > 0) variants.add(new int[]{k, chosen[k].tiling()});
        try {
            loadVariants(variants);
        } catch (Cu.CudaException e) {
            withoutVariants(batch, "loading", e.headline());
            variants.clear();
        }
        while (true) {
            try {
                return capture(batch, plan);
            } catch (Cu.CudaException e) {
                String why = e.headline();
                if (!variants.isEmpty()) {
                    withoutVariants(batch, "capturing", why);
                    variants.clear();
                } else if (programmatic && (refusesLaunchAttributes(e) || plan.streams() == 1)) {
                    withoutProgrammatic("capturing", why);
                } else if (urgentPriority != null && refusesPriorities(e)) {
                    withoutPriorities("capturing", why);
                } else if (plan.streams() > 1) {
                    Notice.say("cmc: cuda: capturing " + program.name() + " on " + plan.streams() + " streams failed (" + why
                            + "); capturing it on one stream in launch order");
                    plan = StreamPlan.of(program, 1);
                } else {
                    throw e;
                }
            }
        }
    }

    /**
     * The driver refused, while doing what the words say, the GEMMs kept in variant tilings for this batch (timed
     * by an earlier run, on another driver or GPU): they are launched in the program's own tiles at the formula's
     * slice counts, the other GEMMs as kept, and the batch's entry is dropped from the cache, so that the next
     * load times them again (leaving out what this driver refuses). Said once a batch.
     */
    private void withoutVariants(int batch, String doing, String why) {
        Choice[] chosen = chosenAt.get(batch);
        int dropped = 0;
        for (int k = 0; k < chosen.length; k++) {
            if (chosen[k] != null && chosen[k].tiling() > 0) {
                chosen[k] = null;
                dropped++;
            }
        }
        GemmTuning.forget(tuningKeyAt(batch));
        Notice.say("cmc: cuda: the driver refused " + doing + " the tiles kept for " + dropped + " GEMM" + (dropped == 1 ? "" : "s") + " of "
                + program.name() + " at batch " + batch + " (" + why + "); captured in the program's own tiles, and dropped from "
                + GemmTuning.where() + ", to be timed again at the next load");
    }

    /** The cache entry of this program's GEMM choices at a batch ({@link GemmTuning}): read, stored and dropped by it. */
    private String tuningKeyAt(int batch) {
        return tuningKey + " | batch " + batch;
    }

    /** Whether the driver refused a programmatic launch in a capture, or the graph it made. */
    private static boolean refusesLaunchAttributes(Cu.CudaException e) {
        return e.call.startsWith("cuLaunchKernelEx") || e.call.startsWith("cuGraphInstantiate");
    }

    /** Whether the driver refused what setting node priorities takes: reading the graph's nodes, setting them, or instantiating it so. */
    private static boolean refusesPriorities(Cu.CudaException e) {
        return e.call.startsWith("cuGraph") && !e.call.startsWith("cuGraphLaunch");
    }

    /**
     * Programmatic launches off for good, said once: the driver refused them while doing what the words say. The
     * graphs captured with them are dropped, to be captured again with plain dependencies.
     */
    private void withoutProgrammatic(String doing, String why) {
        Notice.say("cmc: cuda: " + doing + " " + program.name() + " with programmatic dependent launches failed (" + why
                + "); capturing it with plain stream dependencies");
        programmatic = false;
        dropGraphs();
    }

    /** Priorities off for good, said once, as {@link #withoutProgrammatic} does for programmatic launches. */
    private void withoutPriorities(String doing, String why) {
        Notice.say("cmc: cuda: " + doing + " " + program.name() + " with kernel priorities failed (" + why + "); capturing it without them");
        urgentPriority = null;
        dropGraphs();
    }

    private void dropGraphs() {
        for (MemorySegment g : graphs.values()) Cu.call(Cu.cuGraphExecDestroy, g);
        graphs.clear();
    }

    private MemorySegment capture(int batch, StreamPlan plan) {
        try (Arena a = Arena.ofConfined()) {
            MemorySegment out = a.allocate(ADDRESS);
            if (streams == null) {
                streams = new MemorySegment[streamCount];
                streams[0] = stream;
                events = new MemorySegment[functionIn.length + 2 * streamCount];
                for (int i = 0; i < events.length; i++) {
                    Cu.status(Cu.cuEventCreate, "cuEventCreate", out, Cu.EVENT_DISABLE_TIMING);
                    events[i] = out.get(ADDRESS, 0);
                }
            }
            for (int s = 1; s < plan.streams(); s++) {
                if (streams[s] != null) continue;
                Cu.status(Cu.cuStreamCreate, "cuStreamCreate", out, Cu.STREAM_NON_BLOCKING);
                streams[s] = out.get(ADDRESS, 0);
            }
            // Events: one after each kernel another stream waits for, then a fork and a join per stream.
            int fork = functionIn.length, join = functionIn.length + streamCount;
            boolean[] waitedOn = plan.waitedOn();
            MemorySegment graph = captured(urgentPriority != null, () -> {
                for (int s = 1; s < plan.streams(); s++) {   // every stream joins the capture by waiting on its origin
                    Cu.status(Cu.cuEventRecord, "cuEventRecord(fork)", events[fork + s], stream);
                    Cu.status(Cu.cuStreamWaitEvent, "cuStreamWaitEvent(fork)", streams[s], events[fork + s], 0);
                }
                rows.set(JAVA_INT, 0, batch);
                for (int k : plan.order()) {
                    MemorySegment on = streams[plan.streamOf()[k]];
                    for (int i : plan.waits().get(k)) Cu.status(Cu.cuStreamWaitEvent, "cuStreamWaitEvent", on, events[i], 0);
                    launchKernel(k, launchOf(k, batch), on, programmatic);
                    if (waitedOn[k]) Cu.status(Cu.cuEventRecord, "cuEventRecord", events[k], on);
                }
                for (int s = 1; s < plan.streams(); s++) {   // and rejoins it before the capture ends
                    Cu.status(Cu.cuEventRecord, "cuEventRecord(join)", events[join + s], streams[s]);
                    Cu.status(Cu.cuStreamWaitEvent, "cuStreamWaitEvent(join)", stream, events[join + s], 0);
                }
            });
            graphs.put(batch, graph);
            return graph;
        }
    }

    /**
     * What {@code launches} queues on the stream (and on streams that join it), captured into a graph and
     * instantiated, with its urgent kernels' nodes at the {@link #urgentPriority} where prioritized; only the
     * instantiated graph is kept. A capture that fails part way is abandoned, or the stream would stay in capture
     * mode and every later call on it fail.
     */
    private MemorySegment captured(boolean prioritized, Runnable launches) {
        try (Arena a = Arena.ofConfined()) {
            Cu.status(Cu.cuStreamBeginCapture, "cuStreamBeginCapture", stream, Cu.STREAM_CAPTURE_MODE_THREAD_LOCAL);
            try {
                launches.run();
            } catch (Cu.CudaException e) {
                abandonCapture();
                throw e;
            }
            MemorySegment g = a.allocate(ADDRESS), exec = a.allocate(ADDRESS);
            Cu.status(Cu.cuStreamEndCapture, "cuStreamEndCapture", stream, g);
            try {
                if (prioritized) prioritize(g.get(ADDRESS, 0));
                Cu.status(Cu.cuGraphInstantiate, "cuGraphInstantiateWithFlags", exec, g.get(ADDRESS, 0),
                        prioritized ? Cu.GRAPH_INSTANTIATE_FLAG_USE_NODE_PRIORITY : 0L);
            } finally {
                Cu.call(Cu.cuGraphDestroy, g.get(ADDRESS, 0));
            }
            return exec.get(ADDRESS, 0);
        }
    }

    /** Each kernel node of a captured graph whose kernel is urgent set to the {@link #urgentPriority}. */
    private void prioritize(MemorySegment graph) {
        try (Arena a = Arena.ofConfined()) {
            MemorySegment count = a.allocate(JAVA_LONG);
            Cu.status(Cu.cuGraphGetNodes, "cuGraphGetNodes", graph, MemorySegment.NULL, count);
            long n = count.get(JAVA_LONG, 0);
            MemorySegment nodes = a.allocate(ADDRESS, Math.max(1, n)), type = a.allocate(JAVA_INT);
            MemorySegment params = a.allocate(256, 8), value = a.allocate(64, 8);   // CUDA_KERNEL_NODE_PARAMS (72 bytes); the attribute's value union
            value.set(JAVA_INT, 0, urgentPriority);
            Cu.status(Cu.cuGraphGetNodes, "cuGraphGetNodes", graph, nodes, count);
            for (long i = 0; i < count.get(JAVA_LONG, 0); i++) {
                MemorySegment node = nodes.getAtIndex(ADDRESS, i);
                Cu.status(Cu.cuGraphNodeGetType, "cuGraphNodeGetType", node, type);
                if (type.get(JAVA_INT, 0) != Cu.GRAPH_NODE_TYPE_KERNEL) continue;
                Cu.status(Cu.cuGraphKernelNodeGetParams, "cuGraphKernelNodeGetParams", node, params);
                Integer k = kernelOf.get(params.get(ADDRESS, 0).address());
                if (k != null && urgent()[k]) {
                    Cu.status(Cu.cuGraphKernelNodeSetAttribute, "cuGraphKernelNodeSetAttribute(" + program.kernels().get(k).name() + ", priority)",
                            node, Cu.KERNEL_NODE_ATTRIBUTE_PRIORITY, value);
                }
            }
        }
    }

    /** Ends a capture that failed part way, discarding what it recorded, so that the stream works again. */
    private void abandonCapture() {
        try (Arena a = Arena.ofConfined()) {
            MemorySegment g = a.allocate(ADDRESS);
            g.set(ADDRESS, 0, MemorySegment.NULL);
            Cu.call(Cu.cuStreamEndCapture, stream, g);
            if (!g.get(ADDRESS, 0).equals(MemorySegment.NULL)) Cu.call(Cu.cuGraphDestroy, g.get(ADDRESS, 0));
            Cu.call(Cu.cuCtxSynchronize);
        }
    }

    /** Every kernel in launch order on the stream, each after the last has ended: the debugging path, no programmatic launches. */
    private void launchAll(int batch) {
        rows.set(JAVA_INT, 0, batch);
        for (int k = 0; k < functionIn.length; k++) launchKernel(k, launchOf(k, batch), stream, false);
    }

    /**
     * Kernel k on a stream as l says (nothing for an empty grid), by cuLaunchKernelEx where it needs a launch
     * attribute: programmatic stream serialization where programmatic (a launch that may begin before the kernel
     * before it in the stream has ended: its PTX waits), and a cluster of (1, 1, slices) for a GEMM that sums its K
     * slices across one ({@link PtxRenderer#sumsByCluster}); by cuLaunchKernel otherwise.
     */
    private void launchKernel(int k, Run run, MemorySegment on, boolean programmatic) {
        Kernel kernel = program.kernels().get(k);
        PtxRenderer.Launch l = run.grid();
        if (l.gridX() == 0 || l.gridY() == 0) return;
        boolean cluster = l.gridZ() > 1 && PtxRenderer.sumsByCluster(kernel, matmul, tilings[k][run.tiling()]);
        MemorySegment function = function(k, run.tiling());
        if (!programmatic && !cluster) {
            Cu.status(Cu.cuLaunchKernel, "cuLaunchKernel(" + kernel.name() + ")", function, l.gridX(), l.gridY(), l.gridZ(),
                    l.block(), 1, 1, l.sharedBytes(), on, params[k], MemorySegment.NULL);
            return;
        }
        int[] dims = {l.gridX(), l.gridY(), l.gridZ(), l.block(), 1, 1, l.sharedBytes()};
        for (int i = 0; i < dims.length; i++) launchConfig.setAtIndex(JAVA_INT, i, dims[i]);
        launchConfig.set(ADDRESS, Cu.CONFIG_STREAM, on);
        var how = new java.util.ArrayList<String>();   // the attributes, one after another, and what the call's failure says of them
        if (programmatic) {
            MemorySegment a = launchAttribute(how.size(), Cu.LAUNCH_ATTRIBUTE_PROGRAMMATIC_STREAM_SERIALIZATION);
            a.set(JAVA_INT, Cu.ATTRIBUTE_VALUE, 1);   // programmaticStreamSerializationAllowed
            how.add("programmatic");
        }
        if (cluster) {
            MemorySegment a = launchAttribute(how.size(), Cu.LAUNCH_ATTRIBUTE_CLUSTER_DIMENSION);
            int[] clusterDims = {1, 1, l.gridZ()};
            for (int i = 0; i < clusterDims.length; i++) a.set(JAVA_INT, Cu.ATTRIBUTE_VALUE + 4L * i, clusterDims[i]);
            how.add("cluster 1x1x" + l.gridZ());
        }
        launchConfig.set(ADDRESS, Cu.CONFIG_ATTRS, launchAttributes);
        launchConfig.set(JAVA_INT, Cu.CONFIG_NUM_ATTRS, how.size());
        Cu.status(Cu.cuLaunchKernelEx, "cuLaunchKernelEx(" + kernel.name() + ", " + String.join(", ", how) + ")", launchConfig, function, params[k],
                MemorySegment.NULL);
    }

    /** Launch attribute i of {@link #launchAttributes}, its id set. */
    private MemorySegment launchAttribute(int i, int id) {
        MemorySegment a = launchAttributes.asSlice(i * Cu.LAUNCH_ATTRIBUTE.byteSize(), Cu.LAUNCH_ATTRIBUTE.byteSize());
        a.set(JAVA_INT, 0, id);
        return a;
    }

    /**
     * Each kernel's device time in ms, by name: the kernel captured alone into a graph, REPEATS launches of it
     * back to back where one takes under PROFILE_ALONE_MS (a single launch otherwise), timed by events around the
     * graph's launch. Timing host launches between events instead measured the host for short kernels: on an
     * H200 at batch 256 the first kernel showed 0.8 ms, twice the whole 1-step graph. The repeats run on the
     * program's arrays as they are (an optimizer kernel steps again), so this comes after any timing of results.
     */
    public Map<String, Double> profile(int batch) {
        makeCurrent();
        launchAll(batch);   // first-call costs (lazy loading) out of the way
        sync();
        var times = new java.util.LinkedHashMap<String, Double>();
        withTimingEvents((timing, ms) -> {
            rows.set(JAVA_INT, 0, batch);
            for (int k = 0; k < functionIn.length; k++) times.merge(program.kernels().get(k).name(), timeKernel(k, launchOf(k, batch), timing, ms), Double::sum);
        });
        return times;
    }

    /** Runs the body with two timing events and a float for their elapsed ms, destroyed afterwards. */
    private void withTimingEvents(java.util.function.BiConsumer<MemorySegment[], MemorySegment> body) {
        try (Arena a = Arena.ofConfined()) {
            MemorySegment out = a.allocate(ADDRESS), ms = a.allocate(JAVA_FLOAT);
            MemorySegment[] timing = new MemorySegment[2];
            try {
                for (int i = 0; i < timing.length; i++) {
                    Cu.status(Cu.cuEventCreate, "cuEventCreate", out, 0);
                    timing[i] = out.get(ADDRESS, 0);
                }
                body.accept(timing, ms);
            } finally {
                for (MemorySegment e : timing) if (e != null) Cu.call(Cu.cuEventDestroy, e);
            }
        }
    }

    /** Kernel k's device time in ms as l launches it: REPEATS launches back to back where one takes under PROFILE_ALONE_MS. */
    private double timeKernel(int k, Run l, MemorySegment[] timing, MemorySegment ms) {
        double once = timeRepeated(k, l, 1, timing, ms);
        return once < PROFILE_ALONE_MS ? timeRepeated(k, l, REPEATS, timing, ms) / REPEATS : once;
    }

    /**
     * ms of one launch of a graph of {@code count} launches of kernel k (run once untimed first), 0 for an empty
     * grid. Programmatic launches the driver refuses here are turned off as a capture does, and it is timed without;
     * but a refused launch in a variant tiling is the variant's (a cluster, say), which the tuner leaves out.
     */
    private double timeRepeated(int k, Run l, int count, MemorySegment[] timing, MemorySegment ms) {
        if (l.grid().gridX() == 0 || l.grid().gridY() == 0) return 0;
        MemorySegment graph;
        try {
            graph = captured(false, () -> {
                for (int r = 0; r < count; r++) launchKernel(k, l, stream, programmatic);
            });
        } catch (Cu.CudaException e) {
            if (!programmatic || !refusesLaunchAttributes(e) || l.tiling() > 0) throw e;
            withoutProgrammatic("timing a kernel of", e.headline());
            return timeRepeated(k, l, count, timing, ms);
        }
        try {
            int status = (int) Cu.call(Cu.cuGraphLaunch, graph, stream);
            if (status != Cu.SUCCESS && programmatic && l.tiling() == 0) {
                withoutProgrammatic("launching a timing graph of", Cu.name(status));
                return timeRepeated(k, l, count, timing, ms);
            }
            Cu.check(status, "cuGraphLaunch");
            Cu.status(Cu.cuEventRecord, "cuEventRecord", timing[0], stream);
            Cu.status(Cu.cuGraphLaunch, "cuGraphLaunch", graph, stream);
            Cu.status(Cu.cuEventRecord, "cuEventRecord", timing[1], stream);
            sync();
            Cu.status(Cu.cuEventElapsedTime, "cuEventElapsedTime", ms, timing[0], timing[1]);
            return ms.get(JAVA_FLOAT, 0);
        } finally {
            Cu.call(Cu.cuGraphExecDestroy, graph);
        }
    }

    /** Whether this program's kernels record when they run, for {@link #timeline}. */
    public boolean recordsTimeline() { return timeline != 0; }

    /**
     * When each kernel ran in one run at this batch, as it runs in use (its CUDA graph, once captured): one run
     * first, which captures the graph (or times split-K slice counts and captures it at the next), then the
     * timeline set to all ones (the starts) and zeros (the ends and the block records), the run, and all of it
     * read back. Each run is a step of the program, as {@link #profile} runs are.
     */
    public Timeline timeline(int batch) {
        if (timeline == 0) throw new IllegalStateException(program.name() + " was loaded without a timeline");
        run(batch);
        if (useGraphs && !graphs.containsKey(batch)) run(batch);
        int n = functionIn.length;
        makeCurrent();
        Cu.status(Cu.cuMemsetD32Async, "cuMemsetD32Async(timeline starts)", timeline, 0xFFFFFFFF, 2L * n, stream);
        long bytes = PtxRenderer.timelineBytes(n);
        Cu.status(Cu.cuMemsetD32Async, "cuMemsetD32Async(timeline ends, block records)", timeline + 8L * n, 0, (bytes - 8L * n) / 4, stream);
        run(batch);
        MemorySegment staging = pinned(Math.toIntExact(bytes / 4));
        Cu.status(Cu.cuMemcpyDtoHAsync, "cuMemcpyDtoH(timeline)", staging, timeline, bytes, stream);
        sync();
        long[] slots = staging.asSlice(0, 16L * n).toArray(JAVA_LONG);
        long[] records = staging.asSlice(16L * n, bytes - 16L * n).toArray(JAVA_LONG);
        int[] streamOf = plan != null && graphs.containsKey(batch) ? plan.streamOf() : new int[n];
        var names = program.kernels().stream().map(Kernel::name).toList();
        long[] blocks = new long[n];
        for (int k = 0; k < n; k++) {
            PtxRenderer.Launch l = launchOf(k, batch).grid();
            blocks[k] = (long) l.gridX() * l.gridY() * l.gridZ();
        }
        return Timeline.of(program.name(), names, streamOf, urgent(), blocks, slots, records, PtxRenderer.TIMELINE_BLOCKS);
    }

    /** Free and total device memory (cuMemGetInfo), for the soak benchmark. */
    public long[] memoryInfo() {
        makeCurrent();
        try (Arena a = Arena.ofConfined()) {
            MemorySegment free = a.allocate(JAVA_LONG), total = a.allocate(JAVA_LONG);
            Cu.status(Cu.cuMemGetInfo, "cuMemGetInfo", free, total);
            return new long[]{free.get(JAVA_LONG, 0), total.get(JAVA_LONG, 0)};
        }
    }

    @Override
    public long deviceBytesInUse() {
        long[] info = memoryInfo();
        return info[1] - info[0];
    }

    @Override
    public int maxBatch() { return maxBatch; }

    @Override
    public void close() {
        makeCurrent();
        for (MemorySegment g : graphs.values()) Cu.call(Cu.cuGraphExecDestroy, g);
        for (int i = 0; i < buffers.length; i++) if (memory.owns(i)) Cu.call(Cu.cuMemFree, buffers[i]);
        Cu.call(Cu.cuMemFree, workspace);
        if (timeline != 0) Cu.call(Cu.cuMemFree, timeline);
        if (hostStaging != null) Cu.call(Cu.cuMemFreeHost, hostStaging);
        for (MemorySegment m : modules) Cu.call(Cu.cuModuleUnload, m);
        for (MemorySegment m : variantModules) Cu.call(Cu.cuModuleUnload, m);
        if (events != null) for (MemorySegment e : events) Cu.call(Cu.cuEventDestroy, e);
        if (streams != null) for (int s = 1; s < streams.length; s++) if (streams[s] != null) Cu.call(Cu.cuStreamDestroy, streams[s]);
        Cu.call(Cu.cuStreamDestroy, stream);
        arena.close();
    }
}
