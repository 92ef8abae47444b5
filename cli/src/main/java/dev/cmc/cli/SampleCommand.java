package dev.cmc.cli;

import dev.cmc.dsl.Spec;
import dev.cmc.runtime.Backends;
import dev.cmc.runtime.api.ConsistencyModel;
import dev.cmc.runtime.train.Checkpoint;
import dev.cmc.runtime.train.Schedules;
import picocli.CommandLine.Command;
import picocli.CommandLine.Mixin;
import picocli.CommandLine.Option;

import java.io.IOException;
import java.nio.file.Path;
import java.util.Map;
import java.util.concurrent.Callable;

@Command(name = "sample", mixinStandardHelpOptions = true, description = "Draw samples from a trained checkpoint (EMA weights).")
final class SampleCommand implements Callable<Integer> {
    @Mixin SpecOptions spec;

    @Option(names = "--backend", paramLabel = "NAME", description = "auto | jvm (default: the spec's target.backend)")
    String backend;

    @Option(names = "--checkpoint", required = true, paramLabel = "FILE", description = "a checkpoint.safetensors written by cmc train")
    Path checkpoint;

    @Option(names = "--steps", paramLabel = "N", description = "network evaluations per sample (default: sample.steps)")
    Integer steps;

    @Option(names = "--count", paramLabel = "N", description = "how many samples (default: sample.count)")
    Integer count;

    @Option(names = "--out", paramLabel = "FILE", defaultValue = "samples.csv", description = "CSV to write (default samples.csv)")
    Path out;

    @Override
    public Integer call() throws IOException {
        Spec s = spec.load();
        if (steps != null && steps < 1) throw new Main.UserError("--steps " + steps + ": must be at least 1");
        if (count != null && count < 1) throw new Main.UserError("--count " + count + ": must be at least 1");
        try (var model = ConsistencyModel.build(s, Backends.select(s, backend))) {
            try {
                Checkpoint.load(model, checkpoint);
            } catch (IOException e) {
                throw new Main.UserError(e.getMessage());
            }
            int n = count != null ? count : s.sample().count();
            double[] sigmas = steps != null ? Schedules.defaultSamplingSigmas(s, steps)
                    : s.sample().sigmas().isEmpty() ? Schedules.defaultSamplingSigmas(s, s.sample().steps())
                    : s.sample().sigmas().stream().mapToDouble(Double::doubleValue).toArray();
            float[] x = model.multiStepSample(n, s.sample().seed(), sigmas);
            Path dir = out.toAbsolutePath().getParent();
            CompileCommand.writeAll(dir, Map.of(out.getFileName().toString(), csv(x, n, s.model().inputDim())));
            System.out.println("wrote " + n + " samples (" + sigmas.length + " step(s)) to " + out);
        }
        return 0;
    }

    static String csv(float[] x, int n, int d) {
        var sb = new StringBuilder();
        for (int i = 0; i < n; i++) {
            for (int j = 0; j < d; j++) sb.append(j > 0 ? "," : "").append(x[i * d + j]);
            sb.append('\n');
        }
        return sb.toString();
    }
}
