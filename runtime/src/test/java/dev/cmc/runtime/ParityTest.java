package dev.cmc.runtime;

import dev.cmc.compile.Compiler;
import dev.cmc.dsl.Spec;
import dev.cmc.dsl.SpecLoader;
import dev.cmc.ir.Node;
import dev.cmc.model.ParamLayout;
import dev.cmc.reference.Reference;
import dev.cmc.runtime.jvm.JvmBackend;
import dev.cmc.runtime.jvm.JvmExecutable;
import org.junit.jupiter.params.ParameterizedTest;
import org.junit.jupiter.api.Named;
import org.junit.jupiter.params.provider.Arguments;
import org.junit.jupiter.params.provider.MethodSource;

import java.util.stream.Stream;

import java.util.*;

import static org.junit.jupiter.api.Assertions.*;

/**
 * Every generated kernel against the float64 reference interpreter, llm.c style, on every backend this
 * machine has: jvm always, each OpenCL device when a platform is installed, each CUDA GPU, TornadoVM where an
 * SDK is installed (TORNADOVM_HOME), and the PTX that
 * the cuda backend generates run by {@link dev.cmc.runtime.cuda.PtxSimulator} everywhere.
 */
class ParityTest {
    /** jvm, then each OpenCL device in its own style and, on CPUs, in the GPU style too (local-memory GEMMs). */
    static List<Named<Backend>> backends() {
        var all = new ArrayList<Named<Backend>>(List.of(Named.of("jvm", new JvmBackend(2))));
        for (var d : dev.cmc.runtime.opencl.OpenClDevices.list()) {
            var cl = new dev.cmc.runtime.opencl.OpenClBackend(d.index());
            all.add(Named.of("opencl:" + d.index() + " " + cl.style().name().toLowerCase() + " style", cl));
            if (cl.style() == dev.cmc.render.OpenClRenderer.Style.CPU) {
                all.add(Named.of("opencl:" + d.index() + " gpu style", new dev.cmc.runtime.opencl.OpenClBackend(d.index())
                        .withStyle(dev.cmc.render.OpenClRenderer.Style.GPU)));
            }
        }
        if (all.size() == 1) skipped("OpenCL skipped: " + dev.cmc.runtime.opencl.OpenClDevices.unavailable());
        // The cuda backend's PTX: on a GPU when there is one, and always through the PTX simulator.
        for (var d : dev.cmc.runtime.cuda.CudaDevices.list()) {
            if (d.major() < 8) continue;
            all.add(Named.of("cuda:" + d.index() + " " + d.name() + " with fp32 FMA GEMMs",
                    new dev.cmc.runtime.cuda.CudaBackend(d.index()).withMatmul(dev.cmc.render.PtxRenderer.Matmul.FMA)));
            all.add(Named.of("cuda:" + d.index() + " " + d.name() + " with tf32 tensor-core GEMMs",
                    new dev.cmc.runtime.cuda.CudaBackend(d.index()).withPrecision("tf32")));
            all.add(Named.of("cuda:" + d.index() + " " + d.name() + " with bf16 tensor-core GEMMs",
                    new dev.cmc.runtime.cuda.CudaBackend(d.index()).withPrecision("bf16")));
            all.add(Named.of("cuda:" + d.index() + " " + d.name() + " with 3xTF32 GEMMs",
                    new dev.cmc.runtime.cuda.CudaBackend(d.index()).withMatmul(dev.cmc.render.PtxRenderer.Matmul.TF32X3)));
            for (var m : List.of(dev.cmc.render.PtxRenderer.Matmul.TF32X3, dev.cmc.render.PtxRenderer.Matmul.TF32)) {
                all.add(Named.of("cuda:" + d.index() + " " + d.name() + " with " + m.description + " in 128x128 tiles",
                        new dev.cmc.runtime.cuda.CudaBackend(d.index()).withMatmul(m).withTiling(dev.cmc.render.PtxRenderer.Tiling.WIDE)));
                if (d.major() != 9) continue;   // wgmma: Hopper only
                all.add(Named.of("cuda:" + d.index() + " " + d.name() + " with " + m.description + " in 128x128 wgmma tiles",
                        new dev.cmc.runtime.cuda.CudaBackend(d.index()).withMatmul(m).withTiling(dev.cmc.render.PtxRenderer.Tiling.WGMMA)));
                all.add(Named.of("cuda:" + d.index() + " " + d.name() + " with " + m.description + " in 128x256 wgmma tiles",
                        new dev.cmc.runtime.cuda.CudaBackend(d.index()).withMatmul(m).withTiling(dev.cmc.render.PtxRenderer.Tiling.WGMMA_WIDE)));
            }
            if (d.major() == 9) {   // each GEMM's tiles by its shape, as fp32 takes them at 4,096 rows by default; and its variants
                for (var row : List.of(Map.entry("in wgmma tiles by shape", dev.cmc.render.PtxRenderer.Tiling.WGMMA_MIXED),
                        Map.entry("in wgmma tiles by shape, refilled early", dev.cmc.render.PtxRenderer.Tiling.WGMMA_MIXED_EARLY),
                        Map.entry("in wgmma tiles by shape, split K summed across clusters", dev.cmc.render.PtxRenderer.Tiling.WGMMA_MIXED_CLUSTER),
                        Map.entry("in wgmma tiles by shape, refilled early, split K summed across clusters",
                                dev.cmc.render.PtxRenderer.Tiling.WGMMA_MIXED_EARLY_CLUSTER),
                        Map.entry("in 128x256 wgmma tiles, refilled early", dev.cmc.render.PtxRenderer.Tiling.WGMMA_WIDE_EARLY))) {
                    all.add(Named.of("cuda:" + d.index() + " " + d.name() + " with 3xTF32 GEMMs " + row.getKey(),
                            new dev.cmc.runtime.cuda.CudaBackend(d.index()).withMatmul(dev.cmc.render.PtxRenderer.Matmul.TF32X3).withTiling(row.getValue())));
                }
            }
            if (d.major() == 9) {   // wgmma's 32-deep slices, tf32's alone (GemmKernelTest checks them in the simulator)
                all.add(Named.of("cuda:" + d.index() + " " + d.name() + " with tf32 tensor-core GEMMs in 128x128 wgmma tiles, 32-deep slices",
                        new dev.cmc.runtime.cuda.CudaBackend(d.index()).withPrecision("tf32").withTiling(dev.cmc.render.PtxRenderer.Tiling.WGMMA_DEEP)));
            }
        }
        if (dev.cmc.runtime.cuda.CudaDevices.unavailable() != null) {
            skipped("cuda on a GPU skipped: " + dev.cmc.runtime.cuda.CudaDevices.unavailable() + " (its PTX runs in the simulator instead)");
        }
        if (dev.cmc.runtime.tornado.TornadoSdk.unavailable() == null) all.add(Named.of("tornado", new dev.cmc.runtime.tornado.TornadoBackend()));
        else skipped("tornado skipped: " + dev.cmc.runtime.tornado.TornadoSdk.unavailable());
        all.add(Named.of("cuda PTX, simulated", new dev.cmc.runtime.cuda.SimulatedCudaBackend()));
        all.add(Named.of("cuda PTX with tf32 tensor-core GEMMs, simulated", new dev.cmc.runtime.cuda.SimulatedCudaBackend(dev.cmc.render.PtxRenderer.Matmul.TF32)));
        all.add(Named.of("cuda PTX with bf16 tensor-core GEMMs, simulated", new dev.cmc.runtime.cuda.SimulatedCudaBackend(dev.cmc.render.PtxRenderer.Matmul.BF16)));
        all.add(Named.of("cuda PTX with 3xTF32 GEMMs, simulated", new dev.cmc.runtime.cuda.SimulatedCudaBackend(dev.cmc.render.PtxRenderer.Matmul.TF32X3)));
        all.add(Named.of("cuda PTX with 3xTF32 GEMMs in 128x128 tiles, simulated",
                new dev.cmc.runtime.cuda.SimulatedCudaBackend(dev.cmc.render.PtxRenderer.Matmul.TF32X3, dev.cmc.render.PtxRenderer.Tiling.WIDE)));
        all.add(Named.of("cuda PTX with 3xTF32 GEMMs in 128x128 wgmma tiles, simulated",
                new dev.cmc.runtime.cuda.SimulatedCudaBackend(dev.cmc.render.PtxRenderer.Matmul.TF32X3, dev.cmc.render.PtxRenderer.Tiling.WGMMA)));
        all.add(Named.of("cuda PTX with 3xTF32 GEMMs in 128x256 wgmma tiles, simulated",
                new dev.cmc.runtime.cuda.SimulatedCudaBackend(dev.cmc.render.PtxRenderer.Matmul.TF32X3, dev.cmc.render.PtxRenderer.Tiling.WGMMA_WIDE)));
        all.add(Named.of("cuda PTX with 3xTF32 GEMMs in wgmma tiles by shape, split K summed across clusters, simulated",
                new dev.cmc.runtime.cuda.SimulatedCudaBackend(dev.cmc.render.PtxRenderer.Matmul.TF32X3, dev.cmc.render.PtxRenderer.Tiling.WGMMA_MIXED_CLUSTER)));
        // -Dcmc.parity.backends=cuda: keeps the backends whose names start so (a GPU session's minutes are few).
        String only = System.getProperty("cmc.parity.backends", "");
        if (!only.isBlank()) all.removeIf(b -> java.util.Arrays.stream(only.split(",")).noneMatch(prefix -> b.getName().startsWith(prefix.strip())));
        // -Dcmc.parity.ending="with 3xTF32 GEMMs;in 128x128 tiles": keeps the backends whose names end with one of these,
        // so that a GPU run checks the default GEMMs first, in a stage of their own (each program costs the driver's JIT
        // seconds: a stage of every backend outlasts its time limit).
        String ending = System.getProperty("cmc.parity.ending", "");
        if (!ending.isBlank()) all.removeIf(b -> java.util.Arrays.stream(ending.split(";")).noneMatch(end -> b.getName().endsWith(end.strip())));
        // -Dcmc.parity.wgmma=only|none: the wgmma rows alone, or all but them, so that a GPU run can check them in a
        // process of their own (a kernel fault leaves the CUDA context unusable for every test after it).
        String wgmma = System.getProperty("cmc.parity.wgmma", "");
        if (wgmma.equals("only")) all.removeIf(b -> !b.getName().contains("wgmma"));
        if (wgmma.equals("none")) all.removeIf(b -> b.getName().contains("wgmma"));
        return all;
    }

    private static final java.util.Set<String> SAID = java.util.concurrent.ConcurrentHashMap.newKeySet();

    /** Says once per run what this machine lacks (backends() is asked for by every parameterized test). */
    private static void skipped(String why) {
        if (SAID.add(why)) System.out.println("ParityTest: " + why);
    }

    /**
     * fp32 kernels agree with float64 to 1e-4 relative; with TF32 GEMMs (10-bit mantissas in), 5e-3; with bf16
     * GEMMs (7-bit), 1e-2 (the simulated PTX is off by up to 5.1e-3).
     */
    static double tolerance(Backend backend) {
        return switch (matmul(backend)) {
            case TF32 -> 5e-3;
            case BF16 -> 1e-2;
            default -> 1e-4;
        };
    }

    /**
     * A weight's gradient passes through three times as many GEMMs as the forward pass (forward, input
     * gradients back down the blocks, the weight-gradient GEMM), each rounding its inputs to TF32: seen up
     * to 1.3e-2 of the largest element; bf16, up to 7.2e-2 (simulated), on a ReLU model's bias gradient, where
     * units whose pre-activation lies within bf16's rounding of zero switch on or off. Single GEMMs are held to
     * 5e-3 (TF32) and 2e-2 (bf16) in GemmKernelTest.
     */
    static double gradientTolerance(Backend backend) {
        return switch (matmul(backend)) {
            case TF32 -> 2e-2;
            case BF16 -> 8e-2;
            default -> 1e-4;
        };
    }

    /** How a backend's GEMMs multiply: FMA for every backend but cuda's tensor-core modes. */
    static dev.cmc.render.PtxRenderer.Matmul matmul(Backend backend) {
        if (backend instanceof dev.cmc.runtime.cuda.SimulatedCudaBackend s) return s.matmul();
        if (backend instanceof dev.cmc.runtime.cuda.CudaBackend c) return c.matmul();
        return dev.cmc.render.PtxRenderer.Matmul.FMA;
    }

    /** Every backend with every case, but the GPU style on a CPU device (slow to build) with the first case only. */
    static Stream<Arguments> cases(String... extras) {
        var out = new ArrayList<Arguments>();
        for (Named<Backend> b : backends()) {
            for (String e : extras) {
                if (b.getName().endsWith("gpu style") && e != extras[0] && b.getPayload() instanceof dev.cmc.runtime.opencl.OpenClBackend cl
                        && !cl.device().isGpu()) continue;
                out.add(Arguments.of(b, e));
            }
        }
        return out.stream();
    }

    static Stream<Arguments> samplerCases() {
        return cases("activation = silu;", "activation = gelu; input_scaling = none;", "activation = relu;");
    }

    static Stream<Arguments> trainCases() {
        return cases("activation = silu;", "activation = gelu;", "activation = relu; input_scaling = none;");
    }

    static Stream<Named<Backend>> backendStream() {
        return backends().stream();
    }

    static Spec spec(String extra) {
        return SpecLoader.fromText("parity.cm", "model p { input_dim = 5; hidden_size = 40; num_layers = 2; expansion = 3; " + extra + " }\n"
                + "data { source = \"builtin:none\"; }");
    }

    @ParameterizedTest
    @MethodSource("samplerCases")
    void samplerMatchesReference(Backend backend, String extra) {
        Spec spec = spec(extra);
        var rng = new SplittableRandom(11);
        float[] perRow = new float[7];
        for (int i = 0; i < perRow.length; i++) perRow[i] = (float) (0.002 + rng.nextDouble() * 20);
        checkDenoiser(backend, Compiler.denoiser(spec), perRow, null, 7);
        checkDenoiser(backend, Compiler.sampler(spec), new float[]{3.7f}, null, 7);
        // Later steps of Algorithm 1 (noise drawn in the kernel, from row 17 of the draw), and a first step (x = 0).
        checkDenoiser(backend, Compiler.sampler(spec), new float[]{3.7f}, new float[]{54_321, 17, 1.3f}, 7);
        checkDenoiser(backend, Compiler.sampler(spec), new float[]{80f}, new float[]{9, 0, 80f}, 6);
    }

    /** The seed-default shapes (64 → 256 → 1024), which take the full-width GEMM tiles. */
    @ParameterizedTest
    @MethodSource("backendStream")
    void seedShapesMatchReference(Backend backend) {
        Spec spec = SpecLoader.fromText("seed.cm", "model seed_default { input_dim = 64; hidden_size = 256; num_layers = 2; }");
        checkDenoiser(backend, Compiler.sampler(spec), new float[]{0.5f}, new float[]{77, 1_000, 0.25f}, 6);
    }

    /** noise: the sampler's (seed, first row, scale), or null for none (a denoiser, or a sampler left at zeros). */
    private void checkDenoiser(Backend backend, Compiler.Compiled c, float[] sigma, float[] noise, int batch) {
        int dim = c.outputs().get("out").shape().cols();
        float[] params = withLayerNorms(c.layout(), c.layout().initialize(3), 3);
        var rng = new SplittableRandom(11);
        float[] x = noise != null && noise[2] == 80f ? new float[batch * dim] : random(rng, batch * dim, 2.0);
        assertClose(referenceDenoise(c, params, x, sigma, noise, batch), denoise(backend, c.program(), 8, params, x, sigma, noise, batch),
                tolerance(backend), "f(x + s·z, sigma)");
    }

    /** out = f(x, σ) from a denoiser or sampler program, loaded for maxBatch rows and run at batch. */
    static float[] denoise(Backend backend, dev.cmc.kernel.Program p, int maxBatch, float[] params, float[] x, float[] sigma, int batch) {
        return denoise(backend, p, maxBatch, params, x, sigma, null, batch);
    }

    /** out = f(x + s·z, σ), the sampler's noise (seed, first row, s) written where not null. */
    static float[] denoise(Backend backend, dev.cmc.kernel.Program p, int maxBatch, float[] params, float[] x, float[] sigma, float[] noise, int batch) {
        try (Executable exe = backend.load(p, maxBatch)) {
            exe.write("params", params, params.length);
            exe.write("x", x, x.length);
            exe.write("sigma", sigma, sigma.length);
            if (noise != null) exe.write(Compiler.NOISE, noise, noise.length);
            exe.run(batch);
            float[] out = new float[x.length];
            exe.read("out", out, out.length);
            return out;
        }
    }

    /** The same f(x, σ) by the float64 reference interpreter. */
    static double[] referenceDenoise(Compiler.Compiled c, float[] params, float[] x, float[] sigma, int batch) {
        return referenceDenoise(c, params, x, sigma, null, batch);
    }

    /** The same f(x + s·z, σ) by the float64 reference interpreter: a sampler's noise is (0, 0, 0) where null. */
    static double[] referenceDenoise(Compiler.Compiled c, float[] params, float[] x, float[] sigma, float[] noise, int batch) {
        var values = new HashMap<String, double[]>();
        values.put("x", toDouble(x));
        values.put("sigma", toDouble(sigma));
        float[] n = noise == null ? new float[3] : noise;
        values.putAll(Compiler.noiseValues(n[Compiler.NOISE_SEED], n[Compiler.NOISE_ROW], n[Compiler.NOISE_SCALE]));
        putParams(values, c.layout(), params, "");
        return Reference.run(List.of(c.outputs().get("out")), batch, values).get(c.outputs().get("out")).data();
    }

    @ParameterizedTest
    @MethodSource("trainCases")
    void trainStepMatchesReference(Backend backend, String extra) {
        for (String train : List.of("train { loss = pseudo_huber; grad_clip = 0; }", "train { loss = l2; optimizer = radam; weight_decay = 0.01; }")) {
            Spec spec = SpecLoader.fromText("parity.cm", "model p { input_dim = 5; hidden_size = 40; num_layers = 2; expansion = 3; " + extra + " }\n"
                    + "data { source = \"builtin:none\"; }\n" + train);
            checkTrainStep(backend, spec);
        }
    }

    /** The consistency-distillation step, with its teacher's Heun step as kernels of the same program. */
    @ParameterizedTest
    @MethodSource("backendStream")
    void distillationStepMatchesReference(Backend backend) {
        Spec student = SpecLoader.fromText("cd.cm", "model s { input_dim = 5; hidden_size = 32; num_layers = 1; expansion = 2; }\n"
                + "data { source = \"builtin:none\"; }\ntrain { method = cd; teacher = \"t.safetensors\"; }");
        Spec teacher = SpecLoader.fromText("t.cm", "model t { input_dim = 5; hidden_size = 48; num_layers = 1; expansion = 2; }\n"
                + "data { source = \"builtin:none\"; }\ntrain { method = edm; }");
        checkTrainStep(backend, student, teacher);
    }

    /**
     * CT and CD steps that embed σ once per distinct value (a gather forward, a segment sum back, the embedding's
     * weight gradient as a GEMM over the table): σ pairs from a grid of 6 levels, so rows share σ, in a table
     * of 8 rows, 3 or more of them padding.
     */
    @ParameterizedTest
    @MethodSource("backendStream")
    void groupedSigmaStepsMatchReference(Backend backend) {
        Spec ct = SpecLoader.fromText("parity.cm", "model p { input_dim = 5; hidden_size = 40; num_layers = 2; expansion = 3; }\n"
                + "data { source = \"builtin:none\"; }\ntrain { loss = pseudo_huber; }");
        checkTrainStep(backend, ct, null, GRID_LEVELS + 2);
        Spec student = SpecLoader.fromText("cd.cm", "model s { input_dim = 5; hidden_size = 32; num_layers = 1; expansion = 2; }\n"
                + "data { source = \"builtin:none\"; }\ntrain { method = cd; teacher = \"t.safetensors\"; }");
        Spec teacher = SpecLoader.fromText("t.cm", "model t { input_dim = 5; hidden_size = 48; num_layers = 1; expansion = 2; }\n"
                + "data { source = \"builtin:none\"; }\ntrain { method = edm; }");
        checkTrainStep(backend, student, teacher, GRID_LEVELS + 2);
    }

    private static final int GRID_LEVELS = 6;
    /** The step's z is the given z plus 0.7 of the noise its kernel draws from seed 31. */
    private static final float[] STEP_NOISE = {31, 0, 0.7f};

    private void checkTrainStep(Backend backend, Spec spec) {
        checkTrainStep(backend, spec, null);
    }

    private void checkTrainStep(Backend backend, Spec spec, Spec teacher) {
        checkTrainStep(backend, spec, teacher, 0);
    }

    private void checkTrainStep(Backend backend, Spec spec, Spec teacher, int sigmaRows) {
        checkTrainStep(backend, spec, teacher, sigmaRows, 9);
    }

    /**
     * The PTX's Adam + EMA pass over a parameter count that is a multiple of 4 (21,684, from 4 data dimensions),
     * which it takes four elements a thread in 16-byte accesses; the other steps here have odd counts (21,765 and
     * fewer), one element a thread. Adam with weight decay, so that every term of the update is in play.
     */
    @org.junit.jupiter.api.Test
    void adamOverAMultipleOfFourParametersMatchesReference() {
        Spec spec = SpecLoader.fromText("parity.cm", "model p { input_dim = 4; hidden_size = 40; num_layers = 2; expansion = 3; }\n"
                + "data { source = \"builtin:none\"; }\ntrain { loss = pseudo_huber; grad_clip = 0; weight_decay = 0.01; }");
        checkTrainStep(new dev.cmc.runtime.cuda.SimulatedCudaBackend(), spec);
    }

    /**
     * The PTX's batch reductions (bias and LayerNorm gradients, the loss's mean) over 300 rows: each of a block's 32
     * row slices takes a full trip of 8 rows, then its tail, where the 9-row steps above reach only the tail.
     */
    @org.junit.jupiter.api.Test
    void batchReductionsOverManyRowsMatchReference() {
        Spec spec = SpecLoader.fromText("parity.cm", "model p { input_dim = 5; hidden_size = 40; num_layers = 1; expansion = 2; }\n"
                + "data { source = \"builtin:none\"; }\ntrain { loss = pseudo_huber; grad_clip = 0; }");
        checkTrainStep(new dev.cmc.runtime.cuda.SimulatedCudaBackend(), spec, null, 0, 300);
    }

    private void checkTrainStep(Backend backend, Spec spec, Spec teacher, int sigmaRows, int batch) {
        var c = Compiler.trainStep(spec, teacher, sigmaRows);
        var teacherLayout = teacher == null ? null : new dev.cmc.model.ConsistencyModelGraph(teacher.model(), true).layout();
        float[] teacherWeights = teacher == null ? null : withLayerNorms(teacherLayout, teacherLayout.initialize(7), 7);
        int d = spec.model().inputDim(), n = c.layout().total();
        float[] params = withLayerNorms(c.layout(), c.layout().initialize(5), 5);
        float[] target = withLayerNorms(c.layout(), c.layout().initialize(6), 6);
        var rng = new SplittableRandom(12);
        float[] x0 = random(rng, batch * d, 1.5), z = random(rng, batch * d, 1.0);
        float[] hi = new float[batch], lo = new float[batch], w = new float[batch];
        // CD's Heun step divides x − D(x, σ) by σ: near σ_min that difference cancels in fp32 on every
        // backend alike, so its check starts at σ = 0.5 where the comparison measures kernels, not cancellation.
        double sigmaFrom = teacher == null ? 0.002 : 0.5;
        for (int i = 0; i < batch; i++) {
            if (sigmaRows > 0) {   // adjacent levels of a grid, as consistency training draws them
                int level = rng.nextInt(GRID_LEVELS - 1);
                lo[i] = (float) (sigmaFrom + level * 1.5);
                hi[i] = (float) (sigmaFrom + (level + 1) * 1.5);
            } else {
                lo[i] = (float) (sigmaFrom + rng.nextDouble() * 5);
                hi[i] = lo[i] + (float) (rng.nextDouble() * 3);
            }
            w[i] = (float) (0.5 + rng.nextDouble());
        }
        Map<String, float[]> groups = sigmaRows > 0 ? dev.cmc.compile.SigmaGroups.inputs(hi, lo, batch, sigmaRows) : Map.of();
        float[] before = params.clone();
        try (Executable exe = backend.load(c.program(), batch + 3)) {
            exe.write("params", params, n);
            exe.write("target", target, n);
            if (teacher != null) exe.write("teacher", teacherWeights, teacherWeights.length);
            for (var e : Map.of("x0", x0, "z", z, "sigma_hi", hi, "sigma_lo", lo, "weight", w).entrySet()) exe.write(e.getKey(), e.getValue(), e.getValue().length);
            groups.forEach((name, v) -> exe.write(name, v, v.length));
            exe.write(Compiler.NOISE, STEP_NOISE, STEP_NOISE.length);
            float[] scalars = new float[dev.cmc.kernel.OptimizerScalars.SIZE];
            var t = spec.train();
            dev.cmc.kernel.OptimizerScalars.fill(scalars, t.optimizer(), 1, t.lr(), t.beta1(), t.beta2(), t.eps(), t.weightDecay(), 0.9, 0.99, 1.0);
            exe.write("scalars", scalars, scalars.length);
            exe.run(batch);

            var values = new HashMap<String, double[]>();
            for (var e : Map.of("x0", x0, "z", z, "sigma_hi", hi, "sigma_lo", lo, "weight", w).entrySet()) values.put(e.getKey(), toDouble(e.getValue()));
            groups.forEach((name, v) -> values.put(name, toDouble(v)));
            values.putAll(Compiler.noiseValues(STEP_NOISE[Compiler.NOISE_SEED], STEP_NOISE[Compiler.NOISE_ROW], STEP_NOISE[Compiler.NOISE_SCALE]));
            putParams(values, c.layout(), before, "");
            putParams(values, c.layout(), target, "target/");
            if (teacher != null) putParams(values, teacherLayout, teacherWeights, "teacher/");
            var ref = Reference.run(c.outputs().values(), batch, values);
            float[] loss = new float[1];
            exe.read("loss", loss, 1);
            assertClose(ref.get(c.outputs().get("loss")).data(), loss, tolerance(backend), "loss");
            float[] grads = new float[n];
            exe.read("grads", grads, n);
            exe.read("params", params, n);
            for (ParamLayout.Entry e : c.layout().entries()) {
                double[] g = ref.get(c.outputs().get("grad:" + e.name())).data();
                assertClose(g, Arrays.copyOfRange(grads, e.offset(), e.offset() + e.size()), gradientTolerance(backend), "gradient of " + e.name());
            }
            // One Adam step from zero moments moves each weight by about lr·sign(g) (RAdam: lr·g·(1−β1)/(1−β1) = lr·g at step 1).
            // The target and the EMA move toward the new weights at their rates (0.9 and 0.99 above; the EMA starts at 0).
            float[] m = new float[n], v = new float[n], targetAfter = new float[n], ema = new float[n];
            exe.read("adam_m", m, n);
            exe.read("adam_v", v, n);
            exe.read("target", targetAfter, n);
            exe.read("ema", ema, n);
            for (int i = 0; i < n; i += 97) {
                assertEquals((1 - t.beta1()) * grads[i], m[i], 1e-6 * Math.max(1, Math.abs(grads[i])), "adam m at " + i);
                assertEquals((1 - t.beta2()) * grads[i] * grads[i], v[i], 1e-6 * Math.max(1, grads[i] * grads[i]), "adam v at " + i);
                double upd = t.optimizer().equals("radam") ? grads[i] : grads[i] / (Math.abs(grads[i]) + t.eps());
                double expected = before[i] - t.lr() * upd - t.lr() * t.weightDecay() * before[i];
                assertEquals(expected, params[i], 1e-6 + 1e-3 * t.lr(), "param " + i + " after one step");
                assertEquals(0.9 * target[i] + 0.1 * params[i], targetAfter[i], 1e-6 * Math.max(1, Math.abs(target[i])), "target at " + i);
                assertEquals(0.01 * params[i], ema[i], 1e-7 * Math.max(1, Math.abs(params[i])), "ema at " + i);
            }
        }
    }

    static void putParams(Map<String, double[]> values, ParamLayout layout, float[] flat, String prefix) {
        for (ParamLayout.Entry e : layout.entries()) {
            double[] v = new double[e.size()];
            for (int i = 0; i < v.length; i++) v[i] = flat[e.offset() + i];
            values.put(prefix + e.name(), v);
        }
    }

    static float[] random(SplittableRandom rng, int n, double scale) {
        float[] a = new float[n];
        for (int i = 0; i < n; i++) a[i] = (float) ((rng.nextDouble() * 2 - 1) * scale);
        return a;
    }

    static double[] toDouble(float[] a) {
        double[] d = new double[a.length];
        for (int i = 0; i < a.length; i++) d[i] = a[i];
        return d;
    }

    /** Relative error against the largest reference magnitude, with the first mismatches printed. */
    /**
     * Weights whose LayerNorm gains and biases are not 1 and 0, as they start: a kernel that reads the wrong
     * gain or bias element (a folded LayerNorm indexing by the wrong k, say) then shows.
     */
    static float[] withLayerNorms(ParamLayout layout, float[] params, long seed) {
        var rng = new SplittableRandom(seed + 100);
        for (ParamLayout.Entry e : layout.entries()) {
            if (!e.name().endsWith(".norm.g") && !e.name().endsWith(".norm.b")) continue;
            for (int i = 0; i < e.size(); i++) params[e.offset() + i] = (float) ((e.name().endsWith(".g") ? 1 : 0) + rng.nextDouble() - 0.5);
        }
        return params;
    }

    static void assertClose(double[] ref, float[] got, double tol, String what) {
        double scale = scale(ref), worst = 0;
        int worstAt = -1;
        var firsts = new StringBuilder();
        for (int i = 0; i < ref.length; i++) {
            double err = Math.abs(ref[i] - got[i]) / scale;
            if (err > worst) { worst = err; worstAt = i; }
            if (err > tol && firsts.length() < 400) firsts.append(String.format("  [%d] ref %.8g got %.8g%n", i, ref[i], got[i]));
        }
        assertTrue(worst <= tol, what + ": max relative error " + worst + " at " + worstAt + " (tolerance " + tol + ")\n" + firsts);
    }

    /** The largest difference of got from ref, relative to ref's largest element: what {@link #assertClose} bounds. */
    static double maxRelativeError(double[] ref, float[] got) {
        double scale = scale(ref), worst = 0;
        for (int i = 0; i < ref.length; i++) worst = Math.max(worst, Math.abs(ref[i] - got[i]) / scale);
        return worst;
    }

    private static double scale(double[] ref) {
        double scale = 1e-30;
        for (double v : ref) scale = Math.max(scale, Math.abs(v));
        return scale;
    }
}
