package dev.cmc.cli;

import dev.cmc.dsl.Spec;
import dev.cmc.runtime.api.ConsistencyModel;
import dev.cmc.runtime.train.Schedules;
import picocli.CommandLine.Command;
import picocli.CommandLine.Mixin;
import picocli.CommandLine.Option;

import java.io.IOException;
import java.nio.file.Path;
import java.util.List;
import java.util.Map;
import java.util.concurrent.Callable;

@Command(name = "sample", mixinStandardHelpOptions = true, description = "Draw samples from a trained checkpoint (EMA weights).")
final class SampleCommand implements Callable<Integer> {
    @Mixin SpecOptions spec;

    @Mixin TrainedModelOptions trained;

    @Option(names = "--steps", paramLabel = "N", description = "consistency models: network evaluations per sample (default: sample.steps); heun/euler: noise levels (default 18)")
    Integer steps;

    @Option(names = "--sampler", paramLabel = "NAME", description = "cm (consistency sampling), heun or euler (an EDM teacher's ODE); default: heun for train.method = edm, else cm")
    String sampler;

    @Option(names = "--count", paramLabel = "N", description = "how many samples (default: sample.count)")
    Integer count;

    @Option(names = "--out", paramLabel = "FILE", defaultValue = "samples.csv", description = "CSV to write (default samples.csv)")
    Path out;

    @Override
    public Integer call() throws IOException {
        Spec s = spec.load();
        if (steps != null && steps < 1) throw new Main.UserError("--steps " + steps + ": must be at least 1");
        if (count != null && (count < 1 || count > ConsistencyModel.MAX_SAMPLES)) {
            throw new Main.UserError("--count " + count + ": must be 1 to " + ConsistencyModel.MAX_SAMPLES + " (2^24, the rows one draw numbers exactly)");
        }
        try (var model = trained.load(s)) {
            int n = count != null ? count : s.sample().count();
            String how = sampler != null ? sampler : s.train().method().equals("edm") ? "heun" : "cm";
            if (!List.of("cm", "heun", "euler").contains(how)) throw new Main.UserError("--sampler " + how + ": valid samplers are cm, heun and euler");
            if (!how.equals("cm")) {
                if (!s.train().method().equals("edm")) throw new Main.UserError("--sampler " + how + ": the ODE samplers need an EDM teacher (train.method = edm)");
                int levels = steps != null ? steps : 18;
                if (levels < 2) throw new Main.UserError("--steps " + levels + ": heun and euler need at least 2 noise levels");
                float[] x = model.odeSample(n, s.sample().seed(), levels, how.equals("heun"));
                CompileCommand.writeAll(out.toAbsolutePath().getParent(), Map.of(out.getFileName().toString(), csv(x, n, s.model().inputDim())));
                System.out.println("wrote " + n + " samples (" + how + ", " + levels + " levels, " + (how.equals("heun") ? 2 * levels - 1 : levels)
                        + " network evaluations each) to " + out);
                return 0;
            }
            double[] sigmas = steps != null ? Schedules.samplingSigmas(s, steps)
                    : s.sample().sigmas().isEmpty() ? Schedules.samplingSigmas(s, s.sample().steps())
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
