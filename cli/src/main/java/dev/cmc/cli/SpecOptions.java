package dev.cmc.cli;

import dev.cmc.dsl.Spec;
import dev.cmc.dsl.SpecLoader;
import picocli.CommandLine.Option;
import picocli.CommandLine.Parameters;

import java.nio.file.Path;
import java.util.ArrayList;
import java.util.List;

/** The spec file and its --set overrides, shared by every command that reads a spec. */
final class SpecOptions {
    @Parameters(index = "0", paramLabel = "SPEC", description = "the .cm file")
    Path file;

    @Option(names = "--set", paramLabel = "BLOCK.KEY=VALUE", description = "override a key, e.g. --set train.steps=500")
    List<String> overrides = new ArrayList<>();

    Spec load() {
        return SpecLoader.fromFile(file, overrides);
    }
}
