package dev.cmc.cli;

import dev.cmc.dsl.Spec;
import dev.cmc.runtime.data.Datasets;
import dev.cmc.runtime.train.Evaluation;
import picocli.CommandLine.Command;
import picocli.CommandLine.Mixin;
import picocli.CommandLine.Option;

import java.io.IOException;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.List;
import java.util.concurrent.Callable;

@Command(name = "eval", mixinStandardHelpOptions = true,
        description = "Score a checkpoint's samples against held-out data (sliced Wasserstein, energy distance), beside the data-vs-data floor and the untrained ceiling; write PNGs.")
final class EvalCommand implements Callable<Integer> {
    @Mixin SpecOptions spec;

    @Mixin TrainedModelOptions trained;

    @Option(names = "--steps", split = ",", defaultValue = "1,2", paramLabel = "N[,N...]", description = "sampling steps to score (default 1,2)")
    List<Integer> steps;

    @Option(names = "--count", defaultValue = "2000", paramLabel = "N", description = "samples per case (default 2000)")
    int count;

    @Option(names = "--out", paramLabel = "DIR", description = "folder for metrics.csv, samples and PNGs (default: the checkpoint's folder)")
    Path out;

    @Override
    public Integer call() throws IOException {
        if (count < 2) throw new Main.UserError("--count " + count + ": need at least 2 samples");
        for (int s : steps) if (s < 1) throw new Main.UserError("--steps: " + s + " is not a number of steps (1 or more)");
        Spec s = spec.load();
        Path dir = out != null ? out : trained.checkpoint.toAbsolutePath().getParent();
        Files.createDirectories(dir);
        try (var model = trained.load(s)) {
            var data = Datasets.load(s, s.train().seed());
            var report = Evaluation.evaluate(model, data, count, steps.stream().mapToInt(Integer::intValue).toArray());
            System.out.print(report.table());
            var written = Outputs.writeEvaluation(dir, report, s.model().inputDim());
            System.out.println("outputs: " + String.join(", ", written.stream().map(Path::toString).toList()));
        }
        return 0;
    }
}
