package dev.cmc.cli;

import dev.cmc.dsl.Spec;
import dev.cmc.runtime.api.ConsistencyModel;
import dev.cmc.runtime.data.Datasets;
import dev.cmc.runtime.train.Checkpoint;
import dev.cmc.runtime.train.Metrics;
import dev.cmc.runtime.train.Trainer;
import me.tongfei.progressbar.ProgressBar;
import me.tongfei.progressbar.ProgressBarBuilder;
import me.tongfei.progressbar.ProgressBarStyle;
import picocli.CommandLine.Command;
import picocli.CommandLine.Mixin;
import picocli.CommandLine.Option;

import java.io.IOException;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.concurrent.Callable;

@Command(name = "train", mixinStandardHelpOptions = true,
        description = "Train a consistency model (CT or iCT) on the spec's data, then sample it and report how close the samples are.")
final class TrainCommand implements Callable<Integer> {
    @Mixin SpecOptions spec;

    @Option(names = "--out", paramLabel = "DIR", description = "output folder (default runs/<model name>)")
    Path out;

    @Option(names = "--backend", paramLabel = "NAME", description = "auto | jvm (default: the spec's target.backend)")
    String backend;

    @Option(names = "--resume", description = "continue from DIR/checkpoint.safetensors")
    boolean resume;

    @Override
    public Integer call() throws IOException {
        Spec s = spec.load();
        String chosen = backend != null ? backend : s.target().backend();
        if (!chosen.equals("auto") && !chosen.equals("jvm")) {
            throw new Main.UserError("--backend " + chosen + ": not available in this build; valid: auto, jvm");
        }
        Path dir = out != null ? out : Path.of("runs", s.name());
        Files.createDirectories(dir);
        Path ckpt = dir.resolve("checkpoint.safetensors");
        Datasets.Data data = Datasets.load(s, s.train().seed());
        Datasets.Data heldOut = s.data().source().startsWith("builtin:")
                ? Datasets.builtin(s.data().source().substring(8), Math.min(s.data().samples(), 5000), s.train().seed() + 7919) : data;
        try (var model = ConsistencyModel.build(s)) {
            if (resume) Checkpoint.load(model, ckpt);
            float[] untrained = model.sample(model.params(), Math.min(2000, heldOut.n()), s.sample().seed(), new double[]{s.model().sigmaMax()});
            System.out.printf("training %s: %,d parameters, %s, %d steps of %d on jvm (%d threads)%n", s.name(), model.paramCount(),
                    s.train().method(), s.train().steps(), s.train().batchSize(), Runtime.getRuntime().availableProcessors());
            var trainer = new Trainer(model, data, s.train().seed(), 10);
            var losses = new StringBuilder("step,loss\n");
            try (ProgressBar bar = new ProgressBarBuilder().setTaskName("train").setInitialMax(s.train().steps())
                    .setStyle(ProgressBarStyle.ASCII).showSpeed().setUpdateIntervalMillis(500).build()) {
                bar.stepTo(model.step());
                trainer.run(s.train().steps(), (step, total, loss, n) -> {
                    bar.stepTo(step);
                    if (!Float.isNaN(loss)) {
                        bar.setExtraMessage(String.format("loss %.4g N=%d", loss, n));
                        losses.append(step).append(',').append(loss).append('\n');
                    }
                    long every = s.train().checkpointEvery();
                    if (every > 0 && step % every == 0) save(model, ckpt);
                });
            } catch (Trainer.DivergedException e) {
                System.err.println("kept the last checkpoint: " + ckpt);
                throw e;
            }
            save(model, ckpt);
            CompileCommand.writeAll(dir, java.util.Map.of("loss.csv", losses.toString()));

            int d = s.model().inputDim(), n = Math.min(2000, heldOut.n());
            float[] one = model.multiStepSample(n, s.sample().seed(), 1);
            float[] two = model.multiStepSample(n, s.sample().seed(), 2);
            Datasets.Data floorDraw = s.data().source().startsWith("builtin:")
                    ? Datasets.builtin(s.data().source().substring(8), n, s.train().seed() + 104729) : data;
            double floor = Metrics.slicedWasserstein(heldOut.values(), n, floorDraw.values(), n, d, 64, 1);
            double ceiling = Metrics.slicedWasserstein(heldOut.values(), n, untrained, n, d, 64, 1);
            double sw1 = Metrics.slicedWasserstein(heldOut.values(), n, one, n, d, 64, 1);
            double sw2 = Metrics.slicedWasserstein(heldOut.values(), n, two, n, d, 64, 1);
            String metrics = String.format("metric,value%nsliced_wasserstein_1step,%.5f%nsliced_wasserstein_2step,%.5f%n"
                    + "floor_data_vs_data,%.5f%nceiling_untrained,%.5f%n", sw1, sw2, floor, ceiling);
            CompileCommand.writeAll(dir, java.util.Map.of("samples.csv", SampleCommand.csv(one, n, d), "metrics.csv", metrics));
            System.out.printf("sliced Wasserstein to held-out data: 1 step %.4f, 2 steps %.4f (data vs data %.4f, untrained %.4f)%n",
                    sw1, sw2, floor, ceiling);
            System.out.println("outputs: " + ckpt + ", " + dir.resolve("samples.csv") + ", " + dir.resolve("loss.csv") + ", " + dir.resolve("metrics.csv"));
        }
        return 0;
    }

    private static void save(ConsistencyModel model, Path ckpt) {
        try {
            Checkpoint.save(model, ckpt);
        } catch (IOException e) {
            throw new Main.UserError("cannot write checkpoint " + ckpt + ": " + e.getMessage());
        }
    }
}
