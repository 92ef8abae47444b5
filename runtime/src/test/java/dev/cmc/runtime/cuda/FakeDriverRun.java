package dev.cmc.runtime.cuda;

import dev.cmc.compile.Compiler;
import dev.cmc.dsl.Spec;
import dev.cmc.dsl.SpecLoader;
import dev.cmc.kernel.Program;
import dev.cmc.kernel.TaskDag;
import dev.cmc.render.PtxRenderer;

import java.lang.foreign.Arena;
import java.lang.foreign.FunctionDescriptor;
import java.lang.foreign.Linker;
import java.lang.foreign.SymbolLookup;
import java.lang.invoke.MethodHandle;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.*;

import static java.lang.foreign.ValueLayout.ADDRESS;

/**
 * What {@link FakeDriverTest} runs in a JVM of its own, on the fake driver (fake_cuda.c) in place of libcuda:
 * the seed model's sampler and CT step, and the iCT step with its σ table, through the real {@link CudaBackend}
 * and {@link CudaExecutable} in each GEMM arithmetic and tiling, split and fused. Each program is loaded, run
 * at two batch sizes (the first run at each timing split-K slice counts kernel by kernel, where the fake's
 * made-up times make 2 slices fastest), captured, launched from its graph and profiled kernel by kernel. After
 * each capture it reads the fake's log and checks what the graph holds against the program: every kernel that
 * has work at that batch is in it once, with the batch as its rows and the slice count the tuning chose, its
 * edges order every pair of kernels that the task graph says conflict, and exactly the urgent kernels' nodes
 * have the GPU's greatest priority. A program loaded again takes its slice counts from the cache. Then a short
 * `cmc train` through the Trainer and the evaluation's sampling. The fake itself rejects any call that breaks
 * the driver API's rules. Exits 1 on the first failure.
 * <p>
 * With a second argument, the fake's fault of that name instead (CMC_FAKE_CUDA_FAULT): "jit", every module
 * refused, where loading must fail with the JIT's log and the generated PTX saved; "fork", a second stream's
 * joining a capture refused, where the CT step must still run, captured on one stream; "pdl", programmatic launches
 * refused in a capture, where it must still run, captured on its streams with plain dependencies; "pdl-launch", a
 * graph of them refused at launch, where it must be recaptured so and run; "priority", node priorities refused,
 * where it must be captured without them and run; "tune-tiles", no fault but CMC_CUDA_TUNE_TILES=1 (see {@link #tunedTiles});
 * "tune-tiles-refused", the same with every cluster launch refused, where the tiles must be timed without them, and
 * the step captured so and run.
 */
public final class FakeDriverRun {
    private static Path log;
    private static MethodHandle note;
    /** The fake GPU's SMs, which the runtime's grids follow. */
    private static int sms;

    public static void main(String[] args) throws Throwable {
        log = Path.of(args[0]);
        note = Linker.nativeLinker().downcallHandle(SymbolLookup.libraryLookup(System.getenv("CMC_CUDA_LIBRARY"), Arena.global())
                .find("fakecuda_note").orElseThrow(), FunctionDescriptor.ofVoid(ADDRESS));
        if (args.length > 1) {
            fault(args[1]);
            return;
        }
        var device = CudaDevices.list().getFirst();
        sms = device.multiprocessors();
        boolean hopper = device.major() == 9, wideShared = device.sharedPerBlock() >= PtxRenderer.mlpSharedBytes(256);
        Spec seed = spec("input_dim = 64; hidden_size = 256; num_layers = 4;", "method = ct;");
        Spec ict = spec("input_dim = 64; hidden_size = 256; num_layers = 4;", "method = ict;");
        var programs = List.of(Compiler.sampler(seed).program(), Compiler.trainStep(seed).program(),
                Compiler.trainStep(ict, null, Compiler.sigmaRows(ict, 4096)).program());
        var configs = new ArrayList<CudaBackend>();
        configs.add(new CudaBackend(0).withMatmul(PtxRenderer.Matmul.TF32X3));   // the defaults: wgmma tiles at 4,096 rows on compute capability 9.0
        if (hopper) configs.add(new CudaBackend(0).withMatmul(PtxRenderer.Matmul.TF32X3).withTiling(PtxRenderer.Tiling.NARROW).withFusedMlp(false));
        configs.add(new CudaBackend(0).withMatmul(PtxRenderer.Matmul.FMA).withTiling(PtxRenderer.Tiling.NARROW).withFusedMlp(false));
        configs.add(new CudaBackend(0).withMatmul(PtxRenderer.Matmul.BF16).withTiling(PtxRenderer.Tiling.WIDE).withFusedMlp(false));
        if (hopper) {
            configs.add(new CudaBackend(0).withMatmul(PtxRenderer.Matmul.TF32).withTiling(PtxRenderer.Tiling.WGMMA).withFusedMlp(false));
            configs.add(new CudaBackend(0).withMatmul(PtxRenderer.Matmul.TF32X3).withTiling(PtxRenderer.Tiling.WGMMA).withFusedMlp(true));
            configs.add(new CudaBackend(0).withMatmul(PtxRenderer.Matmul.TF32).withTiling(PtxRenderer.Tiling.WGMMA_DEEP).withFusedMlp(false));
            configs.add(new CudaBackend(0).withMatmul(PtxRenderer.Matmul.TF32X3).withTiling(PtxRenderer.Tiling.WGMMA_WIDE).withFusedMlp(false));
            configs.add(new CudaBackend(0).withMatmul(PtxRenderer.Matmul.TF32X3).withTiling(PtxRenderer.Tiling.WGMMA_MIXED_CLUSTER).withFusedMlp(false));
            configs.add(new CudaBackend(0).withMatmul(PtxRenderer.Matmul.TF32).withTiling(PtxRenderer.Tiling.WGMMA_MLP).withFusedMlp(true));
            configs.add(new CudaBackend(0).withMatmul(PtxRenderer.Matmul.TF32).withTiling(PtxRenderer.Tiling.WGMMA_CHAIN).withFusedMlp(true));
            configs.add(new CudaBackend(0).withMatmul(PtxRenderer.Matmul.TF32).withTiling(PtxRenderer.Tiling.WGMMA_CHAIN_BULK).withFusedMlp(true));
        }
        if (wideShared) configs.add(new CudaBackend(0).withMatmul(PtxRenderer.Matmul.TF32).withTiling(PtxRenderer.Tiling.NARROW).withFusedMlp(true));
        int checked = 0;
        for (CudaBackend backend : configs) {
            for (Program program : programs) {
                check(backend, program, 4096, 256);
                checked++;
            }
        }
        cachedCounts(configs.getFirst(), programs.get(1), 4096, 256);
        timelined(programs.get(1));
        checked++;
        // h = 128: fused blocks of 154 KB, which fit an A100's shared memory too.
        Spec roll = spec("input_dim = 2; hidden_size = 128; num_layers = 3;", "method = ict;");
        for (Program program : List.of(Compiler.sampler(roll).program(), Compiler.trainStep(roll).program())) {
            check(new CudaBackend(0).withMatmul(PtxRenderer.Matmul.TF32X3).withFusedMlp(true), program, 4096, 256);
            checked++;
        }
        settings(hopper, wideShared, programs.getFirst());
        new CudaBackend(0).measurePeakGflops();   // the FMA probe, `cmc bench`'s peak: its own PTX, launched like the rest
        System.out.println("fake driver: " + checked + " programs checked on " + device.name());
        train();
    }

    /** What this GPU cannot run is refused when asked for, saying what it needs and what to use instead. */
    private static void settings(boolean hopper, boolean wideShared, Program seedSampler) {
        if (!hopper) {
            expectRefusal(() -> new CudaBackend(0).withTiling(PtxRenderer.Tiling.WGMMA).tiling(256),
                    "CMC_CUDA_TILES=wgmma needs a compute capability 9.0 GPU", "use narrow or wide");
        }
        if (!wideShared) {
            expectRefusal(() -> new CudaBackend(0).withMatmul(PtxRenderer.Matmul.TF32).withFusedMlp(true).prepare(seedSampler, 1),
                    "CMC_CUDA_MLP=fused needs " + PtxRenderer.mlpSharedBytes(256) / 1024 + " KB of shared memory a block", "allows 163 KB: use split");
        }
    }

    private static void expectRefusal(Runnable asked, String... says) {
        try {
            asked.run();
        } catch (dev.cmc.runtime.SettingException e) {
            for (String s : says) if (!e.getMessage().contains(s)) throw new AssertionError("the refusal does not say '" + s + "': " + e.getMessage());
            System.out.println("refused as expected: " + e.getMessage());
            return;
        }
        throw new AssertionError("not refused: " + String.join(" ... ", says));
    }

    /**
     * What `cmc train` does on the cuda backend, in short: iCT steps through the Trainer, then 1- and 2-step
     * samples evaluated against data.
     */
    private static void train() {
        Spec roll = SpecLoader.fromText("roll.cm", "model roll { input_dim = 2; hidden_size = 128; num_layers = 3; }\n"
                + "train { method = ict; steps = 300; batch_size = 256; }\ndata { source = \"builtin:swiss_roll\"; samples = 4000; }\n");
        var data = dev.cmc.runtime.data.Datasets.load(roll, 1);
        try (var model = dev.cmc.runtime.api.ConsistencyModel.build(roll, new CudaBackend(0))) {
            model.prepareTraining(256);
            new dev.cmc.runtime.train.Trainer(model, data, 1, 10).run(300, (step, total, loss, n) -> {});
            if (model.step() != 300) throw new AssertionError("trained to step " + model.step() + ", not 300");
            var report = dev.cmc.runtime.train.Evaluation.evaluate(model, data, 500, 1, 2);
            System.out.println("fake driver: 300 training steps and the evaluation of " + report.table().lines().count() + " rows");
        }
    }

    private static void fault(String fault) throws Throwable {
        Spec seed = spec("input_dim = 64; hidden_size = 256; num_layers = 4;", "method = ct;");
        var backend = new CudaBackend(0);
        switch (fault) {
            case "jit" -> {
                try (var exe = backend.load(Compiler.sampler(seed).program(), 256)) {
                    throw new AssertionError("a module the driver refused loaded");
                } catch (Cu.CudaException e) {
                    String message = e.getMessage();
                    var saved = java.util.regex.Pattern.compile("generated PTX: (\\S+)").matcher(message);
                    if (!message.startsWith("cuModuleLoadDataEx for m_sample") || !message.contains("JIT log:\nptxas application ptx input, line 12")
                            || !saved.find() || !Files.readString(Path.of(saved.group(1))).contains(".entry")) {
                        throw new AssertionError("the refusal does not name the program, quote the JIT log and save the PTX:\n" + message);
                    }
                    System.out.println("refused as expected: " + message.lines().findFirst().orElseThrow());
                    Files.delete(Path.of(saved.group(1)));
                }
            }
            case "fork" -> {
                List<String> launches = stepThrice(backend, seed, fault);
                if (streams(launches) != 1) {
                    throw new AssertionError("after a refused fork the step is not captured on one stream and run: " + launches.size() + " launches");
                }
                System.out.println("captured on one stream after the refused fork: " + launches.size() + " launches");
            }
            case "priority" -> {
                List<String> launches = stepThrice(backend, seed, fault);
                if (streams(launches) < 2 || since(fault).stream().anyMatch(l -> l.startsWith("node "))) {
                    throw new AssertionError("after refused priorities the step is not captured without them on its streams: " + launches.size() + " launches");
                }
                System.out.println("captured without priorities after the refusal: " + launches.size() + " launches");
            }
            case "pdl", "pdl-launch" -> {
                List<String> launches = stepThrice(backend, seed, fault);
                if (fault.equals("pdl-launch")) launches = launches.subList(launches.size() / 2, launches.size());   // the recapture, or the timing and capture
                if (streams(launches) < 2 || launches.stream().anyMatch(l -> l.endsWith(" programmatic"))) {
                    throw new AssertionError("after refused programmatic launches the step is not captured with plain ones on its streams: "
                            + launches.size() + " launches");
                }
                System.out.println("captured without programmatic launches after the refusal: " + launches.size() + " launches");
            }
            case "old-driver" -> {   // a driver without cuLaunchKernelEx (before CUDA 11.8): no cluster sums, no programmatic launches
                expectRefusal(() -> new CudaBackend(0).withMatmul(PtxRenderer.Matmul.TF32X3).withTiling(PtxRenderer.Tiling.WGMMA_MIXED_CLUSTER).tiling(4096),
                        "CMC_CUDA_TILES=wgmma-mixed-cluster needs a driver with cuLaunchKernelEx", "use wgmma-mixed");
                List<String> launches = stepThrice(backend, seed, fault);
                if (launches.isEmpty() || launches.stream().anyMatch(l -> l.endsWith(" programmatic"))) {
                    throw new AssertionError("without cuLaunchKernelEx the step is not captured with plain launches: " + launches.size() + " launches");
                }
                System.out.println("captured with plain launches on a driver without cuLaunchKernelEx: " + launches.size() + " launches");
            }
            case "tune-tiles" -> tunedTiles(seed);
            case "tune-tiles-refused" -> {   // CMC_CUDA_TUNE_TILES=1 on a driver that refuses every cluster launch: timing them, or capturing those a cache kept
                try (Arena a = Arena.ofConfined(); CudaExecutable exe = new CudaBackend(0).withMatmul(PtxRenderer.Matmul.TF32X3)
                        .load(Compiler.trainStep(seed).program(), 4096)) {
                    mark(a, fault);
                    for (int run = 0; run < 3; run++) exe.run(4096);
                    List<String> lines = since(fault);
                    int refused = -1;
                    for (int i = 0; i < lines.size(); i++) if (lines.get(i).startsWith("error")) refused = i;
                    List<String> after = lines.subList(refused + 1, lines.size());
                    long captured = after.stream().filter(l -> l.startsWith("launch ") && !l.contains(" node -1 ")).count();
                    var cluster = after.stream().filter(l -> l.startsWith("cluster ")).findFirst();
                    if (refused < 0 || cluster.isPresent() || after.stream().noneMatch(l -> l.startsWith("graph launch"))) {
                        throw new AssertionError("after refused clusters the step is not captured without them and run: "
                                + (refused < 0 ? "nothing refused" : cluster.orElse("no graph launched")));
                    }
                    System.out.println("after the last refusal: " + captured + " launches captured (timing graphs and the step's), none in clusters, and the step's graph launched");
                }
            }
            case "sampler" -> {   // no fault: the seed sampler loaded and run once, as CMC_CUDA_CUBINS and CMC_CUDA_SAVE_PTX say
                try (var exe = backend.load(Compiler.sampler(seed).program(), 256)) {
                    exe.run(256);
                }
                System.out.println("sampler loaded and run");
            }
            default -> throw new IllegalArgumentException(fault);
        }
    }

    /**
     * CMC_CUDA_TUNE_TILES=1: the seed's CT step at 4,096 rows, whose default tiling (wgmma-mixed) has variants, is
     * timed kernel by kernel in them too; the fake times a launch in clusters at half, so each GEMM that splits K
     * is captured summed across a cluster of 2 slices, and the choices kept name that tiling. Loaded again, the
     * step takes them from the cache: captured at once, the same clusters in it.
     */
    private static void tunedTiles(Spec seed) throws Throwable {
        var backend = new CudaBackend(0).withMatmul(PtxRenderer.Matmul.TF32X3);
        if (backend.tiling(4096) != PtxRenderer.Tiling.WGMMA_MIXED) throw new AssertionError("the step at 4,096 is not in wgmma-mixed tiles: " + backend.tiling(4096));
        Program step = Compiler.trainStep(seed).program();
        List<String> first = null;
        for (String load : List.of("tuned tiles", "cached tiles")) {
            try (Arena a = Arena.ofConfined(); CudaExecutable exe = backend.load(step, 4096)) {
                mark(a, load);
                exe.run(4096);
                List<String> timed = since(load);
                if (load.equals("tuned tiles")) {
                    if (timed.stream().noneMatch(l -> l.startsWith("cluster "))) throw new AssertionError("no GEMM timed in clusters");
                    mark(a, "captured " + load);
                    exe.run(4096);
                } else if (timed.stream().anyMatch(l -> l.startsWith("launch ") && l.contains(" node -1 "))) {
                    throw new AssertionError("loaded again, the step was timed again");
                }
                List<String> lines = since(load.equals("tuned tiles") ? "captured " + load : load);
                for (String l : lines) if (l.startsWith("error")) throw new AssertionError(load + ": the driver refused a call: " + l);
                var launches = lines.stream().filter(l -> l.startsWith("launch ")).toList();
                var clustered = lines.stream().filter(l -> l.startsWith("cluster ")).map(l -> l.split(" ")).toList();
                if (launches.stream().anyMatch(l -> l.contains(" node -1 ")) || launches.size() != step.kernels().size()) {
                    throw new AssertionError(load + ": " + launches.size() + " launches, not the step's " + step.kernels().size() + " captured");
                }
                if (clustered.isEmpty() || clustered.stream().anyMatch(c -> !c[2].equals("2"))) {
                    throw new AssertionError(load + ": the split GEMMs are not captured in clusters of 2 slices: " + clustered.size() + " clusters");
                }
                List<String> names = clustered.stream().map(c -> c[1]).sorted().toList();
                if (first != null && !first.equals(names)) throw new AssertionError("loaded again, other GEMMs run in clusters: " + names + ", not " + first);
                first = names;
            }
        }
        String kept = Files.readString(Path.of(GemmTuning.where()));
        if (!kept.contains(":2@wgmma-mixed-cluster")) throw new AssertionError("the kept choices name no cluster tiling:\n" + kept);
        System.out.println("tiles tuned: " + first.size() + " split GEMMs summed across clusters of 2 slices, and taken from the cache when loaded again");
    }

    /**
     * The CT step at 256 rows, run three times after a fault (timed, captured and launched, or with tuning off,
     * captured and launched, then launched again); its launches, having checked that a graph of them ran.
     */
    private static List<String> stepThrice(CudaBackend backend, Spec seed, String fault) throws Throwable {
        try (Arena a = Arena.ofConfined(); var exe = backend.load(Compiler.trainStep(seed).program(), 256)) {
            mark(a, fault);
            exe.run(256);
            exe.run(256);
            exe.run(256);
            List<String> lines = since(fault);
            if (lines.stream().noneMatch(l -> l.startsWith("graph launch"))) throw new AssertionError("after fault " + fault + " no graph ran");
            return lines.stream().filter(l -> l.startsWith("launch ")).toList();
        }
    }

    private static long streams(List<String> launches) {
        return launches.stream().map(l -> after(l.split(" "), "stream")).distinct().count();
    }

    private static Spec spec(String model, String train) {
        return SpecLoader.fromText("fake.cm", "model m { " + model + " }\ntrain { " + train + " }\ndata { source = \"builtin:none\"; }\n");
    }

    private static void check(CudaBackend backend, Program program, int maxBatch, int smaller) throws Throwable {
        String what = program.name() + " on " + backend.deviceName() + " for " + maxBatch + " rows";
        Program prepared = backend.prepare(program, maxBatch);
        if (backend.deviceName().contains("fused") && prepared.kernels().stream().noneMatch(k -> k instanceof dev.cmc.kernel.Kernel.Mlp || k instanceof dev.cmc.kernel.Kernel.MlpChain)) {
            throw new AssertionError(what + ": no fused block");
        }
        try (Arena a = Arena.ofConfined(); CudaExecutable exe = backend.load(program, maxBatch)) {
            for (int batch : new int[]{maxBatch, smaller}) {
                // The first run at a batch times split-K slice counts kernel by kernel where some GEMM has a choice,
                // and the next captures the graph; where none has, the first captures it.
                String first = "first run " + batch + " " + what;
                mark(a, first);
                exe.run(batch);
                List<String> captured = since(first);
                if (checkTuning(prepared, backend, maxBatch, batch, captured, what + " at " + batch)) {
                    mark(a, "capture " + batch + " " + what);
                    exe.run(batch);
                    captured = since("capture " + batch + " " + what);
                }
                checkCapture(prepared, backend, maxBatch, batch, captured, what + " at " + batch);
                exe.run(batch);
                if (since(first).stream().noneMatch(l -> l.startsWith("graph launch"))) {
                    throw new AssertionError(what + " at " + batch + ": no graph launched");
                }
            }
            mark(a, "profile " + what);
            if (exe.profile(smaller).isEmpty()) throw new AssertionError(what + ": no kernel profiled");
            checkWriteAll(exe, program);
        }
    }

    /**
     * Kernels that record their timeline (cmc bench --trace): tuned, captured and launched as the rest, each with its
     * one more pointer (the fake checks every pointer and the rows after it), then a timeline read back: empty
     * here, where no kernel runs, and every kernel's slots as set before the run.
     */
    private static void timelined(Program program) throws Throwable {
        var backend = new CudaBackend(0).withMatmul(PtxRenderer.Matmul.TF32X3).withTimeline(true);
        if (!backend.deviceName().contains("kernels recording their timeline")) throw new AssertionError("the device's name hides the timeline: " + backend.deviceName());
        check(backend, program, 4096, 256);
        try (CudaExecutable exe = backend.load(program, 4096)) {
            var timeline = exe.timeline(256);
            if (!timeline.spans().isEmpty()) throw new AssertionError(program.name() + ": a timeline where no kernel ran: " + timeline.spans().getFirst());
        }
    }

    /**
     * A program loaded again on the same GPU takes the slice counts timed before from the cache: its first run at
     * a batch already tuned is captured, with those counts, not timed again kernel by kernel.
     */
    private static void cachedCounts(CudaBackend backend, Program program, int maxBatch, int batch) throws Throwable {
        String what = program.name() + " loaded again on " + backend.deviceName();
        try (Arena a = Arena.ofConfined(); CudaExecutable exe = backend.load(program, maxBatch)) {
            mark(a, "cached " + what);
            exe.run(batch);
            List<String> lines = since("cached " + what);
            if (lines.stream().anyMatch(l -> l.startsWith("launch ") && l.contains(" node -1 "))) throw new AssertionError(what + ": timed again");
            checkCapture(backend.prepare(program, maxBatch), backend, maxBatch, batch, lines, what);
        }
    }

    /** Arrays written together through one staging buffer read back as written, each in its own place. */
    private static void checkWriteAll(CudaExecutable exe, Program program) {
        var rng = new java.util.SplittableRandom(2);
        var arrays = new java.util.LinkedHashMap<String, float[]>();
        for (var arr : program.arrays()) {
            if (arr.role() != Program.Role.INPUT) continue;
            float[] v = new float[(int) arr.size(3)];   // batched arrays at 3 rows
            for (int i = 0; i < v.length; i++) v[i] = (float) rng.nextGaussian();
            arrays.put(arr.name(), v);
        }
        if (arrays.size() < 2) throw new AssertionError(program.name() + ": fewer than two inputs to write together");
        exe.writeAll(arrays);
        arrays.forEach((name, v) -> {
            float[] back = new float[v.length];
            exe.read(name, back, back.length);
            if (!java.util.Arrays.equals(v, back)) throw new AssertionError(program.name() + ": " + name + " written with others reads back otherwise");
        });
    }


    private static void mark(Arena a, String text) throws Throwable {
        note.invokeExact(a.allocateFrom(text));
    }

    /** The log's lines after the last note with this text. */
    private static List<String> since(String text) throws Exception {
        List<String> lines = Files.readAllLines(log);
        int from = lines.lastIndexOf("note " + text);
        if (from < 0) throw new AssertionError("no note '" + text + "' in " + log);
        return lines.subList(from + 1, lines.size());
    }

    /**
     * The slice count a split GEMM is captured with after tuning on the fake, whose made-up times make 2 slices
     * fastest: 2 where it is on offer, else the formula's; any other kernel's grid as the formula says.
     */
    private static int tunedSlices(Program p, CudaBackend backend, int maxBatch, int batch, int k) {
        int own = PtxRenderer.launch(p.kernels().get(k), batch, backend.matmul(), backend.tiling(maxBatch), sms).gridZ();
        if (!(p.kernels().get(k) instanceof dev.cmc.kernel.Kernel.Gemm g)) return own;
        var choices = PtxRenderer.splitChoices(g, batch, maxBatch, backend.matmul(), backend.tiling(maxBatch), sms);
        return choices.size() > 1 && choices.contains(2) ? 2 : own;
    }

    /**
     * The first run at a batch, and whether it was a tuning run: where some GEMM has a choice of slice counts, every
     * kernel with work launched once outside a capture, in launch order, each split GEMM with the count it will be
     * captured with, those with a choice timed first in graphs of their own; where none has, no kernel outside a capture.
     */
    private static boolean checkTuning(Program p, CudaBackend backend, int maxBatch, int batch, List<String> lines, String what) {
        for (String l : lines) if (l.startsWith("error")) throw new AssertionError(what + ": the driver refused a call: " + l);
        var direct = lines.stream().filter(l -> l.startsWith("launch ") && l.contains(" node -1 ")).map(l -> l.split(" ")).toList();
        boolean choices = false;
        for (var kernel : p.kernels()) {
            if (kernel instanceof dev.cmc.kernel.Kernel.Gemm g && PtxRenderer.splitChoices(g, batch, maxBatch, backend.matmul(), backend.tiling(maxBatch), sms).size() > 1) choices = true;
        }
        if (!choices) {
            if (!direct.isEmpty()) throw new AssertionError(what + ": launched kernel by kernel with no slice count to time");
            return false;
        }
        int next = 0, timed = 0;
        for (int k = 0; k < p.kernels().size(); k++) {
            var l = PtxRenderer.launch(p.kernels().get(k), batch, backend.matmul(), backend.tiling(maxBatch), sms);
            if (l.gridX() == 0 || l.gridY() == 0) continue;
            String name = PtxRenderer.kernelName(p, k);
            if (next >= direct.size() || !direct.get(next)[1].equals(name)) throw new AssertionError(what + ": " + name + " not launched in order when tuning");
            int z = Integer.parseInt(direct.get(next++)[5]), expected = tunedSlices(p, backend, maxBatch, batch, k);
            if (z != expected) throw new AssertionError(what + ": " + name + " run with " + z + " slices when tuning, not " + expected);
            if (expected != l.gridZ()) timed++;
        }
        if (next != direct.size()) throw new AssertionError(what + ": " + (direct.size() - next) + " launches more than the program's when tuning");
        boolean offered = false;
        for (var kernel : p.kernels()) {
            if (kernel instanceof dev.cmc.kernel.Kernel.Gemm g && PtxRenderer.splitChoices(g, batch, maxBatch, backend.matmul(), backend.tiling(maxBatch), sms)
                    .contains(2) && PtxRenderer.splits(g, batch, backend.matmul(), backend.tiling(maxBatch), sms) != 2) offered = true;
        }
        if (offered && timed == 0) throw new AssertionError(what + ": 2 slices were on offer and faster, but no GEMM took them");
        return true;
    }

    private static void checkCapture(Program p, CudaBackend backend, int maxBatch, int batch, List<String> lines, String what) {
        for (String l : lines) if (l.startsWith("error")) throw new AssertionError(what + ": the driver refused a call: " + l);
        // launch NAME grid X Y Z block B shared S stream N node K deps A,B rows R
        Map<String, Integer> nodeOf = new HashMap<>();
        List<Set<Integer>> deps = new ArrayList<>();
        for (String l : lines) {
            if (!l.startsWith("launch ")) continue;
            String[] f = l.split(" ");
            int node = Integer.parseInt(after(f, "node"));
            if (node < 0) throw new AssertionError(what + ": launched outside the capture: " + l);
            if (nodeOf.put(f[1], node) != null) throw new AssertionError(what + ": " + f[1] + " captured twice");
            if (Integer.parseInt(after(f, "rows")) != batch) throw new AssertionError(what + ": " + f[1] + " captured with rows " + after(f, "rows"));
            int k = kernelIndex(p, f[1]), z = Integer.parseInt(f[5]), expected = tunedSlices(p, backend, maxBatch, batch, k);
            if (z != expected) throw new AssertionError(what + ": " + f[1] + " captured with " + z + " slices, not the " + expected + " tuning chose");
            var d = new HashSet<Integer>();
            if (!after(f, "deps").equals("-")) for (String x : after(f, "deps").split(",")) d.add(Integer.parseInt(x));
            while (deps.size() <= node) deps.add(new HashSet<>());
            deps.set(node, d);
        }
        var conflicts = TaskDag.dependencies(p);
        // The graph's nodes of kernels on or near the longest chain get the GPU's greatest priority, the rest keep the default.
        boolean[] urgent = TaskDag.urgent(conflicts, CudaExecutable.URGENT_SLACK);
        var prioritized = new HashSet<String>();
        for (String l : lines) if (l.startsWith("node ") && l.contains(" priority -5 ")) prioritized.add(l.split(" ")[1]);
        for (String l : lines) {
            if (!l.startsWith("launch ")) continue;
            String[] f = l.split(" ");
            if (prioritized.contains(after(f, "node")) != urgent[kernelIndex(p, f[1])]) throw new AssertionError(what + ": " + f[1] + "'s node at the wrong priority");
        }
        for (int k = 0; k < p.kernels().size(); k++) {
            var l = PtxRenderer.launch(p.kernels().get(k), batch, backend.matmul(), backend.tiling(maxBatch));
            String name = PtxRenderer.kernelName(p, k);
            boolean work = l.gridX() > 0 && l.gridY() > 0;
            if (work != nodeOf.containsKey(name)) throw new AssertionError(what + ": " + name + (work ? " is not in the graph" : " has no work but was launched"));
            if (!work) continue;
            for (int i : conflicts.get(k)) {
                String before = PtxRenderer.kernelName(p, i);
                if (nodeOf.containsKey(before) && !reaches(nodeOf.get(before), nodeOf.get(name), deps)) {
                    throw new AssertionError(what + ": " + name + " may run before " + before + ", whose arrays it shares");
                }
            }
        }
    }

    private static int kernelIndex(Program p, String name) {
        for (int k = 0; k < p.kernels().size(); k++) if (PtxRenderer.kernelName(p, k).equals(name)) return k;
        throw new AssertionError("no kernel " + name + " in " + p.name());
    }

    /** The word after a key in a log line's words. */
    private static String after(String[] words, String key) {
        return words[Arrays.asList(words).indexOf(key) + 1];
    }

    private static boolean reaches(int from, int to, List<Set<Integer>> deps) {
        var seen = new HashSet<Integer>();
        var queue = new ArrayDeque<>(List.of(to));
        while (!queue.isEmpty()) {
            int at = queue.poll();
            if (at == from) return true;
            for (int d : deps.get(at)) if (seen.add(d)) queue.add(d);
        }
        return false;
    }
}
