package dev.cmc.cli;

import dev.cmc.dsl.Spec;
import dev.cmc.runtime.Backends;
import dev.cmc.runtime.bench.Bench;
import picocli.CommandLine.Command;
import picocli.CommandLine.Mixin;
import picocli.CommandLine.Option;

import java.nio.file.Path;
import java.util.ArrayList;
import java.util.List;
import java.util.Map;
import java.util.concurrent.Callable;

@Command(name = "bench", mixinStandardHelpOptions = true,
        description = "Time compilation, 1-step sampling and one CT training step of a spec's model on each backend.")
final class BenchCommand implements Callable<Integer> {
    @Mixin SpecOptions spec;

    @Option(names = "--backends", split = ",", defaultValue = "all", paramLabel = "B[,B...]",
            description = "jvm, opencl:0, ... or all (default: every backend this machine has)")
    List<String> backends;

    @Option(names = "--batch", defaultValue = "4096", paramLabel = "N", description = "sampling batch (default 4096)")
    int batch;

    @Option(names = "--train-batch", defaultValue = "256", paramLabel = "N", description = "training batch (default 256)")
    int trainBatch;

    @Option(names = "--seconds", defaultValue = "10", paramLabel = "S", description = "measuring time per case, a third of it warm-up (default 10)")
    double seconds;

    @Option(names = "--json", paramLabel = "FILE", description = "also write the results as JSON lines")
    Path json;

    @Option(names = "--profile", description = "also show the slowest kernels of each program (OpenCL: device event times)")
    boolean profile;

    @Override
    public Integer call() throws Exception {
        if (batch < 1 || trainBatch < 1) throw new Main.UserError("--batch and --train-batch must be at least 1");
        if (seconds <= 0) throw new Main.UserError("--seconds must be positive");
        Spec s = spec.load();
        List<String> names = backends.equals(List.of("all")) ? Backends.available().reversed() : backends;
        var results = new ArrayList<Bench.Result>();
        for (String name : names) {
            try {
                var backend = Backends.select(s, name);
                results.add(Bench.run(s, backend, name, batch, trainBatch, seconds, System.out::println));
            } catch (Backends.UnavailableException e) {
                System.out.println("skipped " + name + ": " + e.getMessage());
            }
        }
        for (Bench.Result r : results) {
            System.out.println(r.table());
            if (profile) System.out.print(r.profile(8));
        }
        if (json != null) {
            var text = new StringBuilder();
            for (Bench.Result r : results) text.append(r.json());
            CompileCommand.writeAll(json.toAbsolutePath().getParent(), Map.of(json.getFileName().toString(), text.toString()));
            System.out.println("wrote " + json);
        }
        return 0;
    }
}
