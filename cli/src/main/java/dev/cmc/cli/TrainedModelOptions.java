package dev.cmc.cli;

import dev.cmc.dsl.Spec;
import dev.cmc.runtime.Backends;
import dev.cmc.runtime.api.ConsistencyModel;
import dev.cmc.runtime.train.Checkpoint;
import picocli.CommandLine.Option;

import java.io.IOException;
import java.nio.file.Path;

/** --checkpoint and --backend, for the commands that use a trained model. */
final class TrainedModelOptions {
    @Option(names = "--backend", paramLabel = "NAME", description = "auto | jvm (default: the spec's target.backend)")
    String backend;

    @Option(names = "--checkpoint", required = true, paramLabel = "FILE", description = "a checkpoint.safetensors written by cmc train")
    Path checkpoint;

    /** The spec's model with the checkpoint's weights, on the chosen backend; the caller closes it. */
    ConsistencyModel load(Spec spec) {
        var model = ConsistencyModel.build(spec, Backends.select(spec, backend));
        try {
            Checkpoint.load(model, checkpoint);
        } catch (IOException e) {
            model.close();
            throw new Main.UserError(e.getMessage());
        }
        return model;
    }
}
