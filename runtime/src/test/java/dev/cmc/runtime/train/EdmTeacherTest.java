package dev.cmc.runtime.train;

import dev.cmc.compile.Compiler;
import dev.cmc.dsl.Spec;
import dev.cmc.dsl.SpecLoader;
import dev.cmc.model.ParamLayout;
import dev.cmc.reference.Reference;
import dev.cmc.runtime.api.ConsistencyModel;
import dev.cmc.runtime.data.Datasets;
import dev.cmc.runtime.jvm.JvmBackend;
import org.junit.jupiter.api.Test;

import java.util.HashMap;
import java.util.List;
import java.util.SplittableRandom;

import static org.junit.jupiter.api.Assertions.*;

/** The EDM diffusion teacher: its preconditioning, its Heun step against float64, and that it learns. */
class EdmTeacherTest {
    static Spec teacher(long steps) {
        return SpecLoader.fromText("teacher.cm", """
                model teacher { input_dim = 2; hidden_size = 64; num_layers = 2; }
                train { method = edm; steps = %d; batch_size = 128; lr = 2e-3; ema_decay = 0.99; seed = 4; }
                data { source = "builtin:swiss_roll"; samples = 5000; }
                """.formatted(steps));
    }

    /** One Heun step of the compiled teacher against the same step computed in float64 by the reference. */
    @Test
    void heunStepMatchesFloat64() {
        Spec spec = teacher(10);
        var c = Compiler.denoiser(spec);
        try (var model = ConsistencyModel.build(spec, new JvmBackend(2))) {
            int b = 5;
            float[] x = new float[b * 2];
            var rng = new SplittableRandom(2);
            for (int i = 0; i < x.length; i++) x[i] = (float) (3 * rng.nextGaussian());
            double from = 3.0, to = 1.2;
            float[] got = model.odeStep(null, x, from, to, b, true);

            var values = new HashMap<String, double[]>();
            float[] w = model.ema();
            for (ParamLayout.Entry e : c.layout().entries()) {
                double[] v = new double[e.size()];
                for (int i = 0; i < v.length; i++) v[i] = w[e.offset() + i];
                values.put(e.name(), v);
            }
            double[] xd = new double[x.length];
            for (int i = 0; i < x.length; i++) xd[i] = x[i];
            double[] d1 = denoise(c, values, xd, from, b), mid = new double[x.length], slope = new double[x.length];
            for (int i = 0; i < x.length; i++) { slope[i] = (xd[i] - d1[i]) / from; mid[i] = xd[i] + (to - from) * slope[i]; }
            double[] d2 = denoise(c, values, mid, to, b);
            for (int i = 0; i < x.length; i++) {
                double expected = xd[i] + (to - from) * 0.5 * (slope[i] + (mid[i] - d2[i]) / to);
                assertEquals(expected, got[i], 1e-4 * Math.max(1, Math.abs(expected)), "element " + i);
            }
        }
    }

    static double[] denoise(Compiler.Compiled c, HashMap<String, double[]> values, double[] x, double sigma, int b) {
        values.put("x", x);
        double[] s = new double[b];
        java.util.Arrays.fill(s, sigma);
        values.put("sigma", s);
        return Reference.run(List.of(c.outputs().get("out")), b, values).get(c.outputs().get("out")).data();
    }

    @Test
    void edmPreconditioningHasTheKarrasCoefficients() {
        Spec spec = teacher(10);
        var model = dev.cmc.model.ConsistencyModelGraph.of(spec);
        assertTrue(model.edm());
        var g = new dev.cmc.ir.Graph();
        var sigma = g.input("sigma", dev.cmc.ir.Shape.batch(1));
        var skip = model.cSkip(g, sigma);
        var out = model.cOut(g, sigma);
        double s = 1.7, sd = 0.5;
        var env = Reference.run(List.of(skip, out), 1, java.util.Map.of("sigma", new double[]{s}));
        assertEquals(sd * sd / (s * s + sd * sd), env.get(skip).data()[0], 1e-12);
        assertEquals(s * sd / Math.sqrt(s * s + sd * sd), env.get(out).data()[0], 1e-12);
    }

    @Test
    void theTeacherLearnsAndHeunBeatsEuler() {
        Spec spec = teacher(1500);
        var data = Datasets.load(spec, 1);
        var heldOut = Datasets.builtin("swiss_roll", 2000, 99);
        try (var model = ConsistencyModel.build(spec, new JvmBackend())) {
            new Trainer(model, data, 4, 50).run(spec.train().steps(), (s, t, l, n) -> {});
            double heun = Metrics.slicedWasserstein(heldOut.values(), 2000, model.odeSample(2000, 5, 18, true), 2000, 2, 64, 1);
            double euler = Metrics.slicedWasserstein(heldOut.values(), 2000, model.odeSample(2000, 5, 18, false), 2000, 2, 64, 1);
            double floor = Metrics.slicedWasserstein(heldOut.values(), 2000, Datasets.builtin("swiss_roll", 2000, 123).values(), 2000, 2, 64, 1);
            String report = "Heun-18 %.4f, Euler-18 %.4f, floor %.4f".formatted(heun, euler, floor);
            System.out.println("EdmTeacherTest: " + report);
            assertTrue(heun < 4 * floor, report);
            assertTrue(heun <= euler, report);
        }
    }
}
