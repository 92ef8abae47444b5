package dev.cmc.compile;

import dev.cmc.dsl.Spec;
import dev.cmc.dsl.SpecLoader;
import dev.cmc.ir.Node;
import dev.cmc.kernel.Kernel;
import dev.cmc.model.ConsistencyModelGraph;
import dev.cmc.model.ParamLayout;
import dev.cmc.reference.Reference;
import org.junit.jupiter.api.Test;

import java.util.*;

import static org.junit.jupiter.api.Assertions.*;

/** The σ embedding once per distinct σ: the host's grouping, and a grouped step equal to the per-row one. */
class SigmaGroupsTest {
    @Test
    void groupsRowsByDistinctSigma() {
        float[] sigma = {2f, 0.5f, 2f, 80f, 0.5f, 2f};
        var g = SigmaGroups.of(sigma, sigma.length, 5);
        assertEquals(3, g.distinct());
        assertArrayEquals(new float[]{0.5f, 2f, 80f, 0.5f, 0.5f}, g.table(), "ascending, padded with a real σ");
        for (int i = 0; i < sigma.length; i++) assertEquals(sigma[i], g.table()[(int) g.index()[i]], "row " + i);
        assertArrayEquals(new float[]{0, 2, 5, 6, 6, 6}, g.starts(), "padding rows are empty groups");
        assertArrayEquals(new float[]{1, 4, 0, 2, 5, 3}, g.order(), "rows of each group, ascending");
    }

    @Test
    void moreDistinctSigmaThanRowsIsAnError() {
        var e = assertThrows(IllegalArgumentException.class, () -> SigmaGroups.of(new float[]{1, 2, 3}, 3, 2));
        assertTrue(e.getMessage().contains("more than 2 distinct"), e.getMessage());
        assertEquals(3, SigmaGroups.of(new float[]{1, 2, 3, 3, 9}, 4, 3).distinct(), "distinct values of the first 4 entries");
        assertNull(SigmaGroups.inputsIfTheyFit(new float[]{1, 2, 3}, new float[]{1, 1, 1}, 3, 2), "σ_hi does not fit");
        assertNull(SigmaGroups.inputsIfTheyFit(new float[]{1, 1, 1}, new float[]{1, 2, 3}, 3, 2), "σ_lo does not fit");
    }

    /** Embedding per distinct σ pays from half a batch down; EDM's continuous σ never groups. */
    @Test
    void groupsOnlyWhereTheGridIsSmallAgainstTheBatch() {
        Spec ct = SpecLoader.fromText("s.cm", "model m { input_dim = 2; }");
        assertEquals(150, Compiler.sigmaRows(ct, 4096), "CT's finest grid: s1 + 1 = 151 levels");
        assertEquals(0, Compiler.sigmaRows(ct, 256));
        Spec ict = SpecLoader.fromText("s.cm", "model m { input_dim = 2; }\ntrain { method = ict; }");
        assertEquals(1280, Compiler.sigmaRows(ict, 4096));
        assertEquals(0, Compiler.sigmaRows(ict, 2048));
        Spec cd = SpecLoader.fromText("s.cm", "model m { input_dim = 2; }\nschedule { n_steps = 18; }\ntrain { method = cd; teacher = \"t\"; }");
        assertEquals(17, Compiler.sigmaRows(cd, 256));
        assertEquals(0, Compiler.sigmaRows(SpecLoader.fromText("s.cm", "model m { input_dim = 2; }\ntrain { method = edm; }"), 1 << 20));
    }

    /** In float64 a grouped CT and CD step give the per-row step's loss and every gradient, to rounding. */
    @Test
    void groupedStepEqualsPerRowStep() {
        Spec ct = SpecLoader.fromText("ct.cm", "model m { input_dim = 3; hidden_size = 8; num_layers = 2; expansion = 2; }\ntrain { method = ct; huber_c = 0.1; }");
        assertSameStep(ct, null);
        Spec student = SpecLoader.fromText("cd.cm", "model s { input_dim = 3; hidden_size = 6; num_layers = 1; expansion = 2; }\n"
                + "train { method = cd; teacher = \"t.safetensors\"; huber_c = 0.1; }");
        Spec teacher = SpecLoader.fromText("t.cm", "model t { input_dim = 3; hidden_size = 8; num_layers = 1; expansion = 2; }\ntrain { method = edm; }");
        assertSameStep(student, teacher);
    }

    private static void assertSameStep(Spec spec, Spec teacher) {
        int batch = 7, rows = 6;
        var perRow = Compiler.trainStep(spec, teacher, 0);
        var grouped = Compiler.trainStep(spec, teacher, rows);
        assertTrue(grouped.program().kernels().stream().anyMatch(k -> k instanceof Kernel.SegmentSum), "the embedding's gradient is a segment sum");
        var values = new HashMap<String, double[]>();
        var rng = new SplittableRandom(5);
        put(values, perRow.layout(), perRow.layout().initialize(1), "");
        put(values, perRow.layout(), perRow.layout().initialize(2), "target/");
        if (teacher != null) {
            ParamLayout tl = new ConsistencyModelGraph(teacher.model(), true).layout();
            put(values, tl, tl.initialize(3), "teacher/");
        }
        float[] levels = {0.5f, 0.9f, 1.7f, 3.1f, 6f};
        float[] hi = new float[batch], lo = new float[batch];
        for (int i = 0; i < batch; i++) {
            int k = rng.nextInt(levels.length - 1);
            lo[i] = levels[k];
            hi[i] = levels[k + 1];
        }
        values.put("x0", rng.doubles(batch * 3L, -1, 1).toArray());
        values.put("z", rng.doubles(batch * 3L, -1, 1).toArray());
        values.putAll(Compiler.noiseValues(3, 0, 1));   // z + 1·z′: the trainer's z, drawn in the kernel
        values.put("sigma_hi", toDouble(hi));
        values.put("sigma_lo", toDouble(lo));
        values.put("weight", rng.doubles(batch, 0.5, 1.5).toArray());
        var groupedValues = new HashMap<>(values);
        SigmaGroups.inputs(hi, lo, batch, rows).forEach((name, v) -> groupedValues.put(name, toDouble(v)));

        var a = Reference.run(perRow.outputs().values(), batch, values);
        var b = Reference.run(grouped.outputs().values(), batch, groupedValues);
        for (var name : perRow.outputs().keySet()) {
            if (name.equals("online") || name.equals("target") || name.equals("loss") || name.startsWith("grad:")) {
                double[] x = a.get(perRow.outputs().get(name)).data(), y = b.get(grouped.outputs().get(name)).data();
                for (int i = 0; i < x.length; i++) assertEquals(x[i], y[i], 1e-12 * Math.max(1, Math.abs(x[i])), name + "[" + i + "]");
            }
        }
        Node embedGrad = grouped.outputs().get("grad:embed.w");
        assertNotNull(embedGrad);
    }

    private static void put(Map<String, double[]> values, ParamLayout layout, float[] flat, String prefix) {
        for (ParamLayout.Entry e : layout.entries()) {
            double[] v = new double[e.size()];
            for (int i = 0; i < v.length; i++) v[i] = flat[e.offset() + i] + 0.05 * Math.sin(i + e.offset());
            values.put(prefix + e.name(), v);
        }
    }

    private static double[] toDouble(float[] a) {
        double[] d = new double[a.length];
        for (int i = 0; i < a.length; i++) d[i] = a[i];
        return d;
    }
}
