package dev.cmc.cli;

import dev.cmc.dsl.Spec;
import dev.cmc.runtime.bench.Bench;
import picocli.CommandLine.Command;
import picocli.CommandLine.Mixin;
import picocli.CommandLine.Option;

import java.nio.file.Path;
import java.util.Map;
import java.util.concurrent.Callable;

@Command(name = "bench", mixinStandardHelpOptions = true,
        description = "Time compilation, 1-step sampling and one CT training step of a spec's model on the jvm backend.")
final class BenchCommand implements Callable<Integer> {
    @Mixin SpecOptions spec;

    @Option(names = "--batch", defaultValue = "4096", paramLabel = "N", description = "sampling batch (default 4096)")
    int batch;

    @Option(names = "--train-batch", defaultValue = "256", paramLabel = "N", description = "training batch (default 256)")
    int trainBatch;

    @Option(names = "--seconds", defaultValue = "10", paramLabel = "S", description = "measuring time per case after warm-up (default 10)")
    double seconds;

    @Option(names = "--json", paramLabel = "FILE", description = "also write the results as JSON")
    Path json;

    @Override
    public Integer call() throws Exception {
        if (batch < 1 || trainBatch < 1) throw new Main.UserError("--batch and --train-batch must be at least 1");
        if (seconds <= 0) throw new Main.UserError("--seconds must be positive");
        Spec s = spec.load();
        Bench.Result r = Bench.run(s, batch, trainBatch, seconds, System.out::println);
        System.out.println(r.table());
        if (json != null) {
            CompileCommand.writeAll(json.toAbsolutePath().getParent(), Map.of(json.getFileName().toString(), r.json()));
            System.out.println("wrote " + json);
        }
        return 0;
    }
}
