package dev.cmc.compile;

import dev.cmc.autodiff.Autodiff;
import dev.cmc.dsl.Spec;
import dev.cmc.fusion.Fusion;
import dev.cmc.ir.Graph;
import dev.cmc.ir.Node;
import dev.cmc.ir.Shape;
import dev.cmc.kernel.*;
import dev.cmc.model.ConsistencyModelGraph;
import dev.cmc.model.ParamLayout;

import java.util.*;

/**
 * The compiler's driver: spec → tensor IR → (autodiff) → fusion → kernel IR, for the two programs cmc runs:
 * the sampler f(x, σ) and one training step. Renderers take it from there.
 */
public final class Compiler {
    private Compiler() {}

    /** A compiled program with the graph it came from, kept for the reference interpreter and tests. */
    public record Compiled(Program program, Graph graph, Map<String, Node> outputs, ParamLayout layout) {}

    /** The noise array of the sampler and the training step: the seed of the draw, the row of the draw that batch row 0 is, and the scale. */
    public static final String NOISE = "noise";
    public static final int NOISE_SEED = 0, NOISE_ROW = 1, NOISE_SCALE = 2;
    /** The graph's inputs for the noise array's elements, in its order. */
    private static final List<String> NOISE_INPUTS = List.of("noise_seed", "noise_row", "noise_scale");

    /** The reference interpreter's values for a noise array (seed, first row, scale), by the graph's input names. */
    public static Map<String, double[]> noiseValues(double seed, double firstRow, double scale) {
        double[] noise = {seed, firstRow, scale};
        var values = new LinkedHashMap<String, double[]>();
        for (int i = 0; i < NOISE_INPUTS.size(); i++) values.put(NOISE_INPUTS.get(i), new double[]{noise[i]});
        return values;
    }

    /**
     * One step of Algorithm 1: f(x + s·z, σ) for x[B,d] at one σ shared by the whole batch (sigma is [1,1]),
     * with z standard normal noise the program draws itself ({@link dev.cmc.kernel.Noise}) and s, its seed and
     * its first row in the {@link #NOISE} array. The first step is x = 0, s = σ_max; a later one is the last
     * step's output, s = √(τ² − σ_min²); s = 0 evaluates f(x, σ) alone. The σ embedding, its dense layer and
     * c_in, c_skip, c_out are computed once, not once per row. Output out[B,d]; weights from the "params" array.
     */
    public static Compiled sampler(Spec spec) {
        return denoiser(spec, Shape.scalar(), "_sample");
    }

    /** f(x, σ) with a σ per row (sigma is [B,1]) and no noise: for evaluating the loss and for tests. */
    public static Compiled denoiser(Spec spec) {
        return denoiser(spec, Shape.batch(1), "_denoise");
    }

    private static Compiled denoiser(Spec spec, Shape sigmaShape, String suffix) {
        var model = ConsistencyModelGraph.of(spec);
        ParamLayout layout = model.layout();
        var g = new Graph();
        int d = spec.model().inputDim();
        Node x = g.input("x", Shape.batch(d));
        Node sigma = g.input("sigma", sigmaShape);
        var bound = new LinkedHashMap<Node, Buf>();
        var declared = new LinkedHashMap<String, Program.Array>();
        Node start = sigmaShape.batched() ? x : plusNoise(g, x, "x_noised", bound, declared);
        Node f = model.denoise(g, start, sigma, "");

        bindInput(bound, declared, x, Program.Role.INPUT);
        bindInput(bound, declared, sigma, Program.Role.INPUT);
        bindParams(bound, declared, g, layout, "", "params", Program.Role.PARAMS);
        declare(declared, "out", Program.Role.OUTPUT, f.shape());
        bound.put(f, Buf.whole("out", f.shape()));
        Program p = Fusion.fuse(spec.name() + suffix, g, bound, declared);
        return new Compiled(p, g, Map.of("out", f), layout);
    }

    /**
     * base + s·z: z standard normal noise of base's shape drawn in the kernel, its seed, first row and scale s
     * read from the {@link #NOISE} array, which this declares and binds.
     */
    private static Node plusNoise(Graph g, Node base, String label, Map<Node, Buf> bound, Map<String, Program.Array> declared) {
        declare(declared, NOISE, Program.Role.INPUT, Shape.fixed(1, 3));
        var in = new ArrayList<Node>();
        for (int i = 0; i < NOISE_INPUTS.size(); i++) {
            in.add(g.input(NOISE_INPUTS.get(i), Shape.scalar()));
            bound.put(in.get(i), new Buf(NOISE, i, Shape.scalar()));
        }
        Node seed = in.get(NOISE_SEED), row = in.get(NOISE_ROW), scale = in.get(NOISE_SCALE);
        return g.label(g.add(base, g.mul(scale, g.noise(seed, row, base.shape()))), label);
    }

    /**
     * One consistency-training step (CT or iCT; the host picks σ pairs and weights):
     * loss = mean_i w_i · d(f_θ(x₀ + σ_hi z, σ_hi), f_θ⁻(x₀ + σ_lo z, σ_lo)), then its gradient with
     * respect to θ, then Adam and both EMAs in one pass. z is the z input plus s·z′, z′ drawn in the kernel
     * from the {@link #NOISE} array's seed (first row 0) and s its scale: the trainer leaves z at zero and draws
     * it all on the device (s = 1); a caller's own z runs with s = 0.
     */
    public static Compiled trainStep(Spec spec) {
        return trainStep(spec, null);
    }

    /**
     * The training step, given the teacher's spec for consistency distillation (method = cd): the teacher is an
     * EDM denoiser whose weights live in the "teacher" array, and its two evaluations of one Heun step from
     * σ_{n+1} to σ_n are kernels of this same program (paper Algorithm 2):
     * <pre>
     *   d  = (x − D(x, σ_hi))/σ_hi,  x̃ = x + (σ_lo − σ_hi)·d,  d′ = (x̃ − D(x̃, σ_lo))/σ_lo,
     *   x̂ = x + (σ_lo − σ_hi)·(d + d′)/2,  loss = mean w·d(f_θ(x, σ_hi), f_θ⁻(x̂, σ_lo))
     * </pre>
     */
    public static Compiled trainStep(Spec spec, Spec teacher) {
        return trainStep(spec, teacher, 0);
    }

    /**
     * The training step with the σ embedding computed once per distinct σ rather than once per row, when
     * sigmaRows &gt; 0 (see {@link #sigmaRows}): σ_hi and σ_lo then also come as {@link SigmaGroups} of at
     * most sigmaRows distinct values each. c_in, c_skip and c_out stay per row; they cost a few flops.
     */
    public static Compiled trainStep(Spec spec, Spec teacher, int sigmaRows) {
        var model = ConsistencyModelGraph.of(spec);
        ParamLayout layout = model.layout();
        var g = new Graph();
        int d = spec.model().inputDim();
        var bound = new LinkedHashMap<Node, Buf>();
        var declared = new LinkedHashMap<String, Program.Array>();
        Node x0 = g.input("x0", Shape.batch(d));
        Node z = plusNoise(g, g.input("z", Shape.batch(d)), "z_drawn", bound, declared);
        Node sigmaHi = g.input("sigma_hi", Shape.batch(1));
        Node weight = g.input("weight", Shape.batch(1));
        boolean grouped = sigmaRows > 0 && !model.edm();
        var tableHi = grouped ? SigmaGroups.table(g, "hi", sigmaRows, true) : null;
        var tableLo = grouped ? SigmaGroups.table(g, "lo", sigmaRows, false) : null;
        Node online, target, loss;
        if (model.edm()) {
            // EDM denoising: λ(σ)·‖D(x₀ + σn, σ) − x₀‖², σ = sigma_hi and n = z chosen by the host.
            online = model.denoise(g, g.label(g.add(x0, g.mul(sigmaHi, z)), "x_noisy"), sigmaHi, "");
            target = x0;
            loss = g.label(g.meanBatch(g.mul(weight, g.label(g.reduceCols(g.unary(dev.cmc.ir.Op.SQUARE, g.sub(online, x0))), "sq_err"))), "loss");
        } else if (spec.train().method().equals("cd")) {
            if (teacher == null) throw new IllegalArgumentException("method = cd needs the teacher's spec");
            Node sigmaLo = g.input("sigma_lo", Shape.batch(1));
            var teacherNet = new ConsistencyModelGraph(teacher.model(), true);
            Node x = g.label(g.add(x0, g.mul(sigmaHi, z)), "x_hi");
            Node step = g.label(g.sub(sigmaLo, sigmaHi), "step");
            Node slope = g.label(g.div(g.sub(x, teacherNet.denoise(g, x, sigmaHi, tableHi, "teacher/")), sigmaHi), "slope");
            Node euler = g.label(g.add(x, g.mul(step, slope)), "x_euler");
            Node slope2 = g.label(g.div(g.sub(euler, teacherNet.denoise(g, euler, sigmaLo, tableLo, "teacher/")), sigmaLo), "slope2");
            Node xLo = g.label(g.add(x, g.mul(g.mul(step, g.add(slope, slope2)), 0.5)), "x_heun");
            online = model.denoise(g, x, sigmaHi, tableHi, "");
            target = model.denoise(g, xLo, sigmaLo, tableLo, "target/");
            loss = g.label(consistencyLoss(g, spec, online, target, weight), "loss");
        } else {
            Node sigmaLo = g.input("sigma_lo", Shape.batch(1));
            online = model.denoise(g, g.label(g.add(x0, g.mul(sigmaHi, z)), "x_hi"), sigmaHi, tableHi, "");
            target = model.denoise(g, g.label(g.add(x0, g.mul(sigmaLo, z)), "x_lo"), sigmaLo, tableLo, "target/");
            loss = g.label(consistencyLoss(g, spec, online, target, weight), "loss");
        }

        List<Node> params = new ArrayList<>();
        for (Node p : g.params()) if (!p.name().contains("/")) params.add(p);
        Map<Node, Node> grads = Autodiff.gradients(g, loss, params);

        for (Node in : g.inputs()) if (!bound.containsKey(in)) bindInput(bound, declared, in, Program.Role.INPUT);
        bindParams(bound, declared, g, layout, "", "params", Program.Role.PARAMS);
        bindParams(bound, declared, g, layout, "target/", "target", Program.Role.STATE);
        if (teacher != null && spec.train().method().equals("cd")) {
            bindParams(bound, declared, g, new ConsistencyModelGraph(teacher.model(), true).layout(), "teacher/", "teacher", Program.Role.STATE);
        }
        declare(declared, "loss", Program.Role.OUTPUT, Shape.scalar());
        bound.put(loss, Buf.whole("loss", Shape.scalar()));
        declare(declared, "grads", Program.Role.GRADS, Shape.fixed(1, layout.total()));
        for (var e : grads.entrySet()) {
            if (e.getValue() == null) throw new IllegalStateException("parameter " + e.getKey().name() + " does not reach the loss");
            ParamLayout.Entry pe = layout.get(e.getKey().name());
            bound.put(e.getValue(), new Buf("grads", pe.offset(), pe.shape()));
        }
        Program fused = Fusion.fuse(spec.name() + "_train_step", g, bound, declared);

        // The optimizer runs over the flat arrays, after every gradient is written.
        var arrays = new ArrayList<>(fused.arrays());
        // The EMA target θ⁻ is read only by consistency training, but the optimizer updates it either way.
        for (String state : List.of("target", "adam_m", "adam_v", "ema")) {
            if (arrays.stream().noneMatch(a -> a.name().equals(state))) {
                arrays.add(new Program.Array(state, Program.Role.STATE, Shape.fixed(1, layout.total()), null));
            }
        }
        arrays.add(new Program.Array("scalars", Program.Role.INPUT, Shape.fixed(1, OptimizerScalars.SIZE), null));
        var kernels = new ArrayList<>(fused.kernels());
        if (spec.train().gradClip() > 0) {
            kernels.add(new Kernel.SumSquares("k_grad_norm", "grads", layout.total(),
                    new Buf("scalars", OptimizerScalars.GRAD_NORM_SQ, Shape.scalar())));
        }
        kernels.addAll(optimizer(spec.train(), layout));
        Program p = new Program(fused.name(), arrays, kernels);
        var outs = new LinkedHashMap<String, Node>();
        outs.put("loss", loss);
        outs.put("online", online);
        outs.put("target", target);
        for (var e : grads.entrySet()) outs.put("grad:" + e.getKey().name(), e.getValue());
        return new Compiled(p, g, outs, layout);
    }

    /**
     * Adam + EMA: one kernel a module (embed, in, each block, out: the parameters named before the first '.'),
     * each over its module's contiguous run of the flat arrays, so that a module's update may run as soon as its
     * gradients are written, beside the rest of the backward pass; only the last modules' updates are left after
     * it (on an H200 one pass over all 2.2M of the seed's parameters took 24 µs at the end of the CT step's longest
     * chain). With gradient clipping, one kernel over all: each update needs the global norm of every gradient.
     */
    static List<Kernel.AdamEma> optimizer(Spec.Train t, ParamLayout layout) {
        if (t.gradClip() > 0) return List.of(new Kernel.AdamEma("k_adam_ema", 0, layout.total(), t.beta1(), t.beta2(), t.gradClip()));
        var modules = new LinkedHashMap<String, int[]>();   // module -> {first, end}
        for (ParamLayout.Entry e : layout.entries()) {
            String module = e.name().contains(".") ? e.name().substring(0, e.name().indexOf('.')) : e.name();
            int[] run = modules.computeIfAbsent(module, m -> new int[]{e.offset(), e.offset()});
            if (run[1] != e.offset()) throw new IllegalStateException("parameters of " + module + " are not contiguous in the flat array");
            run[1] = e.offset() + e.size();
        }
        var out = new ArrayList<Kernel.AdamEma>();
        modules.forEach((m, run) -> out.add(new Kernel.AdamEma("k_adam_ema_" + m, run[0], run[1] - run[0], t.beta1(), t.beta2(), 0)));
        return out;
    }

    /**
     * How many distinct σ a training step should be compiled for, at this batch size: the most the method's
     * noise grid can give (N − 1 levels for σ_hi, and as many for σ_lo), when that is at most half the batch,
     * so that the embedding's GEMMs run on at most half the rows; else 0, an embedding per row. EDM training
     * draws σ from a continuum, so it always embeds per row.
     */
    public static int sigmaRows(Spec spec, int batch) {
        var t = spec.train();
        int levels = switch (t.method()) {
            case "cd" -> spec.schedule().nSteps();
            case "ct", "ict" -> t.s1() + 1;
            default -> 0;
        };
        return levels > 1 && levels - 1 <= batch / 2 ? levels - 1 : 0;
    }

    /** w · d(a, b) per row, averaged over the batch. pseudo-Huber: √(‖a−b‖² + c²) − c; l2: ‖a−b‖². */
    public static Node consistencyLoss(Graph g, Spec spec, Node a, Node b, Node weight) {
        Node sq = g.label(g.reduceCols(g.unary(dev.cmc.ir.Op.SQUARE, g.sub(a, b))), "sq_dist");
        Node dist = spec.train().loss().equals("l2") ? sq
                : g.add(g.unary(dev.cmc.ir.Op.SQRT, g.add(sq, spec.train().huberC() * spec.train().huberC())), -spec.train().huberC());
        return g.meanBatch(g.mul(weight, dist));
    }

    private static void bindInput(Map<Node, Buf> bound, Map<String, Program.Array> declared, Node in, Program.Role role) {
        declare(declared, in.name(), role, in.shape());
        bound.put(in, Buf.whole(in.name(), in.shape()));
    }

    private static void bindParams(Map<Node, Buf> bound, Map<String, Program.Array> declared, Graph g, ParamLayout layout,
                                   String prefix, String array, Program.Role role) {
        declare(declared, array, role, Shape.fixed(1, layout.total()));
        for (Node p : g.params()) {
            if (prefix.isEmpty() ? p.name().contains("/") : !p.name().startsWith(prefix)) continue;
            ParamLayout.Entry e = layout.get(p.name().substring(prefix.length()));
            bound.put(p, new Buf(array, e.offset(), e.shape()));
        }
    }

    private static void declare(Map<String, Program.Array> declared, String name, Program.Role role, Shape shape) {
        declared.putIfAbsent(name, new Program.Array(name, role, shape, null));
    }
}
