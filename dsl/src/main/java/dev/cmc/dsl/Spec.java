package dev.cmc.dsl;

import java.util.List;
import java.util.Map;

/** A validated spec: every key resolved to its typed value, defaults and auto values filled in. */
public record Spec(String name, String fileName, String source, Model model, Schedule schedule, Train train, Data data,
                   Sample sample, Target target) {

    public record Model(int inputDim, int hiddenSize, int numLayers, double sigmaMin, double sigmaMax, double sigmaData,
                        int expansion, String activation, String inputScaling) {}

    public record Schedule(int nSteps, double rho) {}

    public record Train(String method, long steps, int batchSize, String optimizer, double lr, double beta1, double beta2,
                        double eps, double weightDecay, double gradClip, double emaDecay, double mu0, int s0, int s1,
                        String loss, double huberC, long seed, long checkpointEvery, String teacher) {}

    public record Data(String source, int samples, boolean normalize) {}

    /** {@code sigmas} is empty when sampling uses the default τ list for {@code steps}. */
    public record Sample(int steps, List<Double> sigmas, int count, long seed) {}

    public record Target(String backend, int device, String precision, String kernelBinary) {}

    /** The builtin data sets and their dimensions; their generators live in the runtime. */
    public static final Map<String, Integer> BUILTIN_DATA = Map.of(
            "swiss_roll", 2, "moons", 2, "eight_gaussians", 2, "checkerboard", 2, "pinwheel", 2, "glyphs8x8", 64);

    /** The seed's defaults for a model of this input dimension. */
    public static Spec recommendedDefaults(int inputDim) {
        return SpecLoader.fromText("<defaults>", "model default { input_dim = " + inputDim + "; }\n");
    }
}
