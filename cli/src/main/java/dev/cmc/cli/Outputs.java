package dev.cmc.cli;

import dev.cmc.runtime.train.Evaluation;

import java.io.IOException;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.List;
import java.util.Map;

/** Writes an evaluation's files (metrics, samples, pictures) into a folder and names them. */
final class Outputs {
    private Outputs() {}

    static List<Path> writeEvaluation(Path dir, Evaluation.Report report, int dim) throws IOException {
        var written = new ArrayList<Path>();
        CompileCommand.writeAll(dir, Map.of("metrics.csv", report.csv()));
        written.add(dir.resolve("metrics.csv"));
        for (var e : report.samples().entrySet()) {
            String name = "samples_" + e.getKey().replaceAll(" .*", "").replace("-", "");
            CompileCommand.writeAll(dir, Map.of(name + ".csv", SampleCommand.csv(e.getValue(), report.count(), dim)));
            written.add(dir.resolve(name + ".csv"));
            Path png = dir.resolve(name + ".png");
            if (dim == 64) {
                Plots.grid(png, e.getValue(), Math.min(64, report.count()), 8);
                written.add(png);
            } else if (dim >= 2) {
                Plots.scatter(png, e.getKey() + " samples over held-out data", report.heldOut().values(), report.count(),
                        e.getValue(), report.count(), dim);
                written.add(png);
            }
        }
        if (dim == 64) {
            Path png = dir.resolve("data.png");
            Plots.grid(png, report.heldOut().values(), Math.min(64, report.heldOut().n()), 8);
            written.add(png);
        }
        return written;
    }
}
