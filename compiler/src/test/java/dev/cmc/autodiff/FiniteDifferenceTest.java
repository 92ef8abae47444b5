package dev.cmc.autodiff;

import dev.cmc.compile.Compiler;
import dev.cmc.dsl.Spec;
import dev.cmc.dsl.SpecLoader;
import dev.cmc.ir.Graph;
import dev.cmc.ir.Node;
import dev.cmc.ir.Op;
import dev.cmc.ir.Shape;
import dev.cmc.model.ParamLayout;
import dev.cmc.reference.Reference;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.params.ParameterizedTest;
import org.junit.jupiter.params.provider.EnumSource;

import java.util.*;
import java.util.function.BiFunction;

import static org.junit.jupiter.api.Assertions.*;

/** Autodiff checked by central differences in float64, for every op and for the whole consistency loss. */
class FiniteDifferenceTest {
    static final int B = 3;

    /** loss = mean over rows of Σ_c R[c]·out[r,c], with a fixed random R so every output element matters. */
    static Node scalarize(Graph g, Node out) {
        double[] r = new double[out.shape().cols()];
        var rng = new SplittableRandom(out.shape().cols());
        for (int i = 0; i < r.length; i++) r[i] = rng.nextDouble() * 2 - 1;
        Node weighted = g.mul(out, g.constRow(r));
        Node rows = weighted.shape().cols() == 1 ? weighted : g.reduceCols(weighted);
        if (!rows.shape().batched()) rows = g.broadcast(rows, Shape.batch(1));
        return g.meanBatch(rows);
    }

    /** Checks d loss / d input for every input of the graph built by build. */
    static void check(BiFunction<Graph, List<Node>, Node> build, List<Shape> shapes, double lo, double hi) {
        var g = new Graph();
        var inputs = new ArrayList<Node>();
        var values = new HashMap<String, double[]>();
        var rng = new SplittableRandom(42);
        for (int i = 0; i < shapes.size(); i++) {
            Node in = shapes.get(i).batched() ? g.input("in" + i, shapes.get(i)) : g.param("in" + i, shapes.get(i));
            inputs.add(in);
            double[] v = new double[(int) shapes.get(i).size(B)];
            for (int k = 0; k < v.length; k++) v[k] = lo + (hi - lo) * rng.nextDouble();
            values.put(in.name(), v);
        }
        Node loss = scalarize(g, build.apply(g, inputs));
        Map<Node, Node> grads = Autodiff.gradients(g, loss, inputs);
        var all = new ArrayList<Node>(grads.values());
        all.add(loss);
        var env = Reference.run(all, B, values);
        for (Node in : inputs) {
            double[] analytic = env.get(grads.get(in)).data();
            double[] v = values.get(in.name());
            for (int k = 0; k < v.length; k++) {
                double numeric = centralDifference(loss, values, v, k, 1e-6 * Math.max(1, Math.abs(v[k])));
                assertEquals(numeric, analytic[k], 1e-6 * Math.max(1, Math.abs(numeric)), "d loss/d " + in.name() + "[" + k + "]");
            }
        }
    }

    /** (L(v_k + h) − L(v_k − h)) / 2h, with v one of the arrays in values; v is left as it was. */
    static double centralDifference(Node loss, Map<String, double[]> values, double[] v, int k, double h) {
        double keep = v[k];
        v[k] = keep + h;
        double up = Reference.run(List.of(loss), B, values).get(loss).data()[0];
        v[k] = keep - h;
        double down = Reference.run(List.of(loss), B, values).get(loss).data()[0];
        v[k] = keep;
        return (up - down) / (2 * h);
    }

    @ParameterizedTest
    @EnumSource(value = Op.class, names = {"NEG", "EXP", "LOG", "SIN", "COS", "SQRT", "SQUARE", "SILU", "GELU", "RELU"})
    void unaryOps(Op op) {
        // RELU is checked away from its kink; LOG and SQRT on positive inputs.
        check((g, in) -> g.unary(op, in.getFirst()), List.of(Shape.batch(4)), 0.2, 2.0);
        if (op != Op.LOG && op != Op.SQRT) check((g, in) -> g.unary(op, in.getFirst()), List.of(Shape.batch(4)), -2.0, -0.2);
    }

    @ParameterizedTest
    @EnumSource(value = Op.class, names = {"ADD", "SUB", "MUL", "DIV"})
    void binaryOpsWithBroadcasting(Op op) {
        check((g, in) -> g.binary(op, in.get(0), in.get(1)), List.of(Shape.batch(4), Shape.batch(4)), 0.5, 2.0);
        check((g, in) -> g.binary(op, in.get(0), in.get(1)), List.of(Shape.batch(4), Shape.batch(1)), 0.5, 2.0);
        check((g, in) -> g.binary(op, in.get(0), in.get(1)), List.of(Shape.batch(4), Shape.fixed(1, 4)), 0.5, 2.0);
        check((g, in) -> g.binary(op, in.get(0), in.get(1)), List.of(Shape.batch(1), Shape.fixed(1, 4)), 0.5, 2.0);
    }

    @Test
    void matmul() {
        check((g, in) -> g.matmul(in.get(0), in.get(1)), List.of(Shape.batch(4), Shape.fixed(4, 5)), -1, 1);
    }

    @Test
    void normalize() {
        check((g, in) -> g.normalize(in.getFirst()), List.of(Shape.batch(6)), -1, 1);
    }

    @Test
    void reductions() {
        check((g, in) -> g.reduceCols(in.getFirst()), List.of(Shape.batch(5)), -1, 1);
        check((g, in) -> g.reduceBatch(in.getFirst()), List.of(Shape.batch(5)), -1, 1);
        check((g, in) -> g.broadcast(in.getFirst(), Shape.batch(3)), List.of(Shape.fixed(1, 3)), -1, 1);
    }

    /** The whole CT loss of a small model, with respect to every parameter, through the compiler's own graph. */
    @Test
    void wholeConsistencyLoss() {
        for (String extra : List.of("activation = silu;", "activation = gelu; input_scaling = none;")) {
            Spec spec = SpecLoader.fromText("fd.cm", "model fd { input_dim = 3; hidden_size = 6; num_layers = 2; expansion = 2; " + extra + " }\n"
                    + "train { loss = pseudo_huber; huber_c = 0.1; }");
            var c = Compiler.trainStep(spec);
            var values = new HashMap<String, double[]>();
            var rng = new SplittableRandom(7);
            putFlat(values, c.layout(), c.layout().initialize(1), "", rng);
            putFlat(values, c.layout(), c.layout().initialize(2), "target/", null);
            putStepInputs(values, rng, new double[]{1.0, 0.5, 2.0});
            assertTrue(checkParamGradients(c, values, 3) > 50);
        }
    }

    /**
     * A flat parameter array as reference values, named prefix + parameter. With rng, each value is moved by
     * 0.1·N(0,1), so norms and biases leave 1 and 0 and their gradients are generic.
     */
    static void putFlat(Map<String, double[]> values, ParamLayout layout, float[] flat, String prefix, SplittableRandom rng) {
        for (ParamLayout.Entry e : layout.entries()) {
            double[] v = new double[e.size()];
            for (int i = 0; i < v.length; i++) v[i] = flat[e.offset() + i] + (rng == null ? 0 : 0.1 * rng.nextGaussian());
            values.put(prefix + e.name(), v);
        }
    }

    /**
     * x₀ and z at random (plus half the step's own noise drawn from seed 5: z enters the loss as z + 0.5·z′),
     * and σ pairs from near σ_min to mid-range, for a batch of B = 3.
     */
    static void putStepInputs(Map<String, double[]> values, SplittableRandom rng, double[] weight) {
        for (String in : List.of("x0", "z")) values.put(in, rng.doubles(B * 3L, -1, 1).toArray());
        values.putAll(dev.cmc.compile.Compiler.noiseValues(5, 0, 0.5));
        values.put("sigma_lo", new double[]{0.01, 0.5, 3.0});
        values.put("sigma_hi", new double[]{0.02, 0.9, 5.0});
        values.put("weight", weight);
    }

    /** Every stride-th element of every online parameter's gradient against central differences; returns the count. */
    static int checkParamGradients(Compiler.Compiled c, Map<String, double[]> values, int stride) {
        Node loss = c.outputs().get("loss");
        var env = Reference.run(c.outputs().values(), B, values);
        int checked = 0;
        for (ParamLayout.Entry e : c.layout().entries()) {
            double[] analytic = env.get(c.outputs().get("grad:" + e.name())).data();
            double[] v = values.get(e.name());
            for (int k = 0; k < v.length; k += stride) {
                double numeric = centralDifference(loss, values, v, k, 1e-6);
                assertEquals(numeric, analytic[k], 1e-6 + 1e-5 * Math.abs(numeric), "d loss/d " + e.name() + "[" + k + "]");
                checked++;
            }
        }
        return checked;
    }

    /** The CD loss through the online network only: teacher and EMA target are constants of the step. */
    @Test
    void wholeDistillationLoss() {
        Spec student = SpecLoader.fromText("cd.cm", "model s { input_dim = 3; hidden_size = 6; num_layers = 1; expansion = 2; }\n"
                + "train { method = cd; teacher = \"t.safetensors\"; huber_c = 0.1; }");
        Spec teacher = SpecLoader.fromText("t.cm", "model t { input_dim = 3; hidden_size = 8; num_layers = 1; expansion = 2; }\ntrain { method = edm; }");
        var c = Compiler.trainStep(student, teacher);
        var teacherLayout = new dev.cmc.model.ConsistencyModelGraph(teacher.model(), true).layout();
        var values = new HashMap<String, double[]>();
        var rng = new SplittableRandom(8);
        putFlat(values, c.layout(), c.layout().initialize(1), "", rng);
        putFlat(values, c.layout(), c.layout().initialize(2), "target/", null);
        putFlat(values, teacherLayout, teacherLayout.initialize(3), "teacher/", null);
        putStepInputs(values, rng, new double[]{1.0, 1.0, 1.0});
        assertTrue(checkParamGradients(c, values, 2) > 40);
        // Nothing flows into the teacher or the target.
        assertFalse(c.outputs().keySet().stream().anyMatch(k -> k.startsWith("grad:teacher/") || k.startsWith("grad:target/")));
    }

    @Test
    void seedParameterCount() {
        Spec spec = SpecLoader.fromText("seed.cm", "model seed_default { input_dim = 64; hidden_size = 256; num_layers = 4; sigma_min = 0.002; sigma_max = 80.0; }");
        var model = new dev.cmc.model.ConsistencyModelGraph(spec.model());
        assertEquals(2_203_200, model.layout().total());
        assertEquals(2_195_456, model.approximateParamCount());
    }

    @Test
    void skipParameterisationIsIdentityAtSigmaMin() {
        Spec spec = SpecLoader.fromText("s.cm", "model s { input_dim = 3; hidden_size = 8; num_layers = 1; }");
        var c = Compiler.denoiser(spec);
        var values = new HashMap<String, double[]>();
        float[] p = c.layout().initialize(3);
        for (ParamLayout.Entry e : c.layout().entries()) {
            double[] v = new double[e.size()];
            for (int i = 0; i < v.length; i++) v[i] = p[e.offset() + i];
            values.put(e.name(), v);
        }
        double[] x = {0.3, -1.2, 2.5, 0.1, 0.2, 0.3, -4, 5, 6};
        values.put("x", x);
        values.put("sigma", new double[]{0.002, 0.002, 0.002});
        double[] out = Reference.run(List.of(c.outputs().get("out")), 3, values).get(c.outputs().get("out")).data();
        assertArrayEquals(x, out, 1e-12);
    }

    @Test
    void sigmaEmbeddingIsSinThenCos() {
        Spec spec = SpecLoader.fromText("s.cm", "model s { input_dim = 2; hidden_size = 8; }");
        var model = new dev.cmc.model.ConsistencyModelGraph(spec.model());
        var g = new Graph();
        Node sigma = g.input("sigma", Shape.batch(1));
        Node feats = model.sigmaFeatures(g, sigma);
        double s = 0.37;
        double[] got = Reference.run(List.of(feats), 1, Map.of("sigma", new double[]{s})).get(feats).data();
        double a = Math.log(s + 1e-10);
        for (int i = 0; i < 4; i++) {
            double freq = Math.exp(-Math.log(10000) * i / 3);
            assertEquals(Math.sin(a * freq), got[i], 1e-12);
            assertEquals(Math.cos(a * freq), got[4 + i], 1e-12);
        }
    }
}
