package dev.cmc.cli;

import dev.cmc.dsl.Spec;
import dev.cmc.model.ConsistencyModelGraph;
import picocli.CommandLine.Command;
import picocli.CommandLine.Mixin;

import java.util.concurrent.Callable;

@Command(name = "check", mixinStandardHelpOptions = true, description = "Parse and validate a spec; print its diagnostics or a summary.")
final class CheckCommand implements Callable<Integer> {
    @Mixin SpecOptions spec;

    @Override
    public Integer call() {
        Spec s = spec.load();
        var graph = new ConsistencyModelGraph(s.model());
        var m = s.model();
        System.out.printf("%s: ok: model %s, input_dim %d, hidden %d, %d blocks, %s%n", spec.file, s.name(), m.inputDim(), m.hiddenSize(),
                m.numLayers(), m.activation());
        System.out.printf("parameters: %,d (the seed's estimate d·h + h² + L·8h² + h·d = %,d leaves out biases and norms)%n",
                graph.layout().total(), graph.approximateParamCount());
        System.out.printf("train: %s, %d steps of %d, %s, lr %g; sample: %d step(s); data: %s; backend: %s%n", s.train().method(),
                s.train().steps(), s.train().batchSize(), s.train().optimizer(), s.train().lr(), s.sample().steps(), s.data().source(), s.target().backend());
        return 0;
    }
}
