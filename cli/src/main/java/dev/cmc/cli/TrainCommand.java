package dev.cmc.cli;

import dev.cmc.dsl.Spec;
import dev.cmc.runtime.Backends;
import dev.cmc.runtime.api.ConsistencyModel;
import dev.cmc.runtime.data.Datasets;
import dev.cmc.runtime.train.Checkpoint;
import dev.cmc.runtime.train.Evaluation;
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
import java.util.List;
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
        var chosen = Backends.select(s, backend);
        Path dir = out != null ? out : Path.of("runs", s.name());
        Files.createDirectories(dir);
        Path ckpt = dir.resolve("checkpoint.safetensors");
        Datasets.Data all = Datasets.load(s, s.train().seed());
        // Files: the last tenth is held out for evaluation. Builtins: held-out data is a fresh draw.
        Datasets.Data data = s.data().source().startsWith("builtin:") ? all
                : new Datasets.Data(all.n() - Math.max(1, all.n() / 10), all.dim(), all.values());
        if (data.n() < 1) throw new Main.UserError(s.data().source() + ": too few rows to hold a tenth out for evaluation");
        try (var model = ConsistencyModel.build(s, chosen)) {
            if (resume) {
                if (!Files.exists(ckpt)) throw new Main.UserError("--resume: no checkpoint at " + ckpt + " (train without --resume first)");
                Checkpoint.load(model, ckpt);
                if (model.step() >= s.train().steps()) {
                    System.out.println("checkpoint " + ckpt + " is already at step " + model.step() + " of " + s.train().steps()
                            + "; raise train.steps (--set train.steps=N) to train further");
                }
            }
            System.out.printf("training %s: %,d parameters, %s, %d steps of %d on %s (%d threads)%s%n", s.name(), model.paramCount(),
                    s.train().method(), s.train().steps(), s.train().batchSize(), chosen.name(), Runtime.getRuntime().availableProcessors(),
                    model.step() > 0 ? ", resuming at step " + model.step() : "");
            if (s.train().method().equals("cd") && dev.cmc.runtime.train.Distillation.attachTeacher(model)) {
                System.out.println("starting from the teacher's weights (" + s.train().teacher() + "), as Song et al. initialise CD");
            }
            long t0 = System.nanoTime();
            System.out.print("compiling the training step for " + chosen.name()
                    + (chosen.name().equals("opencl") ? " (a new spec can take a minute; cached afterwards)" : "") + " ...");
            System.out.flush();
            model.prepareTraining(s.train().batchSize());
            System.out.printf(" %.1f s%s%n", (System.nanoTime() - t0) / 1e9, model.trainingSigmaRows() > 0
                    ? " (σ embedded once per grid level: " + model.trainingSigmaRows() + " entries for " + s.train().batchSize() + " rows)" : "");
            var trainer = new Trainer(model, data, s.train().seed(), 10);
            Path lossFile = dir.resolve("loss.csv");
            var losses = new StringBuilder(resume && Files.exists(lossFile) ? Files.readString(lossFile) : "step,loss\n");
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
                    if (every > 0 && step % every == 0) {
                        save(model, ckpt);
                        writeLoss(dir, losses);
                    }
                });
            } catch (Trainer.DivergedException e) {
                writeLoss(dir, losses);
                throw new Trainer.DivergedException(e.getMessage() + "; the last good checkpoint is " + ckpt);
            }
            save(model, ckpt);
            var outputs = new java.util.ArrayList<Path>(List.of(ckpt));
            outputs.addAll(writeLoss(dir, losses));

            System.out.println("evaluating samples against held-out data ...");
            Evaluation.Report report = Evaluation.evaluate(model, all, 2000, 1, 2);
            System.out.print(report.table());
            outputs.addAll(Outputs.writeEvaluation(dir, report, s.model().inputDim()));
            System.out.println("outputs: " + outputs.stream().map(Path::toString).collect(java.util.stream.Collectors.joining(", ")));
        }
        return 0;
    }

    private static List<Path> writeLoss(Path dir, StringBuilder losses) {
        try {
            CompileCommand.writeAll(dir, java.util.Map.of("loss.csv", losses.toString()));
            String[] lines = losses.toString().split("\n");
            double[] x = new double[lines.length - 1], y = new double[lines.length - 1];
            for (int i = 1; i < lines.length; i++) {
                String[] parts = lines[i].split(",");
                x[i - 1] = Double.parseDouble(parts[0]);
                y[i - 1] = Double.parseDouble(parts[1]);
            }
            if (x.length > 1) Plots.lossCurve(dir.resolve("loss.png"), x, y);
            return List.of(dir.resolve("loss.csv"), dir.resolve("loss.png"));
        } catch (IOException e) {
            throw new Main.UserError("cannot write " + dir.resolve("loss.csv") + ": " + e.getMessage());
        }
    }

    private static void save(ConsistencyModel model, Path ckpt) {
        try {
            Checkpoint.save(model, ckpt);
        } catch (IOException e) {
            throw new Main.UserError("cannot write checkpoint " + ckpt + ": " + e.getMessage());
        }
    }
}
