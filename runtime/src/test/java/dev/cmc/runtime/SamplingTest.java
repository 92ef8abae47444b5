package dev.cmc.runtime;

import dev.cmc.compile.Compiler;
import dev.cmc.dsl.Spec;
import dev.cmc.dsl.SpecLoader;
import dev.cmc.kernel.Program;
import dev.cmc.reference.Reference;
import dev.cmc.runtime.api.ConsistencyModel;
import dev.cmc.runtime.jvm.JvmBackend;
import org.junit.jupiter.api.Named;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.params.ParameterizedTest;
import org.junit.jupiter.params.provider.MethodSource;

import java.util.HashMap;
import java.util.List;
import java.util.stream.Stream;

import static org.junit.jupiter.api.Assertions.*;

/**
 * Algorithm 1 as {@link ConsistencyModel#multiStepSample} runs it on a device: noise drawn in the sampler's kernel,
 * each step's output copied back to its input on the device. Checked against the float64 reference step by step.
 */
class SamplingTest {
    private static final Spec SPEC = SpecLoader.fromText("s.cm", "model s { input_dim = 3; hidden_size = 16; num_layers = 1; expansion = 2; }\n"
            + "data { source = \"builtin:none\"; }");
    private static final double[] SIGMAS = {80, 2.5, 0.4};
    private static final int COUNT = 37;

    /**
     * The backends of fp32 accuracy: on a GPU its default 3xTF32 GEMMs too (which a GPU run's parity stage keeps
     * alone), in the PTX simulator the FMA GEMMs alone (it interprets tensor-core modes slowly).
     */
    static Stream<Named<Backend>> backends() {
        return ParityTest.backends().stream().filter(b -> !b.getName().contains("gpu style") && ParityTest.tolerance(b.getPayload()) <= 1e-4
                && !(b.getName().endsWith("simulated") && ParityTest.matmul(b.getPayload()) != dev.cmc.render.PtxRenderer.Matmul.FMA));
    }

    /** Three steps, 37 samples, against x ← f(x + s_k·z_k, σ_k) from x = 0, evaluated in float64 with the same noise. */
    @ParameterizedTest
    @MethodSource("backends")
    void threeStepsMatchTheReference(Backend backend) {
        try (var model = ConsistencyModel.build(SPEC, backend)) {
            float[] got = model.multiStepSample(COUNT, 42, SIGMAS);
            assertTrue(got.length == COUNT * 3);
            ParityTest.assertClose(reference(model.ema(), 42), got, 1e-4, "3-step samples on " + backend.name());
        }
    }

    /** A draw made in chunks of 8 rows is the draw made at once: noise is indexed by the row among all rows. */
    @Test
    void samplesDoNotDependOnTheChunkSize() {
        try (var whole = ConsistencyModel.build(SPEC, new JvmBackend(2)); var chunked = ConsistencyModel.build(SPEC, new EightRows())) {
            float[] a = whole.multiStepSample(COUNT, 7, SIGMAS), b = chunked.multiStepSample(COUNT, 7, SIGMAS);
            ParityTest.assertClose(ParityTest.toDouble(a), b, 1e-6, "37 samples in chunks of 8 against one chunk");
            assertFalse(java.util.Arrays.equals(a, whole.multiStepSample(COUNT, 8, SIGMAS)), "another seed, other samples");
        }
    }

    private static double[] reference(float[] ema, long seed) {
        var c = Compiler.sampler(SPEC);
        var values = new HashMap<String, double[]>();
        ParityTest.putParams(values, c.layout(), ema, "");
        double[] x = new double[COUNT * 3];
        int stream = ConsistencyModel.drawSeed(seed);
        double sigmaMin = SPEC.model().sigmaMin();
        for (int k = 0; k < SIGMAS.length; k++) {
            values.put("x", x);
            values.put("sigma", new double[]{SIGMAS[k]});
            values.putAll(Compiler.noiseValues(stream + k, 0, k == 0 ? SIGMAS[0] : Math.sqrt(SIGMAS[k] * SIGMAS[k] - sigmaMin * sigmaMin)));
            x = Reference.run(List.of(c.outputs().get("out")), COUNT, values).get(c.outputs().get("out")).data();
        }
        return x;
    }

    /** The jvm backend with its samplers loaded for 8 rows, so that 37 samples take five launches a step. */
    private static final class EightRows implements Backend {
        private final JvmBackend jvm = new JvmBackend(2);
        public String name() { return "jvm, 8 rows a launch"; }
        public int samplingRows() { return 8; }
        public java.util.Map<String, String> render(Program program, String header) { return jvm.render(program, header); }
        public Executable load(Program program, int maxBatch) { return jvm.load(program, maxBatch); }
    }
}
