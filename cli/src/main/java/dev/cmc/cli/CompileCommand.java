package dev.cmc.cli;

import dev.cmc.compile.Compiler;
import dev.cmc.dsl.Spec;
import dev.cmc.kernel.Program;
import dev.cmc.runtime.jvm.JvmBackend;
import picocli.CommandLine.Command;
import picocli.CommandLine.Mixin;
import picocli.CommandLine.Option;

import java.io.IOException;
import java.nio.file.*;
import java.util.LinkedHashMap;
import java.util.Map;
import java.util.concurrent.Callable;

@Command(name = "compile", mixinStandardHelpOptions = true,
        description = "Compile a spec to kernels: the sampler f(x, σ) and one training step. With --emit, write the generated source and the task-graph plans.")
final class CompileCommand implements Callable<Integer> {
    @Mixin SpecOptions spec;

    @Option(names = "--emit", paramLabel = "DIR", description = "folder to write generated kernels and plans into")
    Path emit;

    @Option(names = "--target", defaultValue = "jvm", paramLabel = "TARGET", description = "renderer: jvm (default)")
    String target;

    @Option(names = "--print", description = "print the task-graph plans and the generated source to the terminal")
    boolean print;

    @Override
    public Integer call() throws IOException {
        if (!target.equals("jvm")) {
            throw new Main.UserError("--target " + target + ": this build renders jvm only (opencl, cuda and tornado are on the roadmap)");
        }
        Spec s = spec.load();
        var backend = new JvmBackend();
        var files = new LinkedHashMap<String, String>();
        String header = "cmc " + s.fileName() + " (model " + s.name() + ")";
        for (Compiler.Compiled c : new Compiler.Compiled[]{Compiler.sampler(s), Compiler.trainStep(s)}) {
            Program p = c.program();
            files.putAll(backend.render(p, header + ", program " + p.name()));
            files.put(p.name() + ".plan.txt", p.plan());
            System.out.printf("%-28s %3d kernels, %3d arrays%n", p.name(), p.kernels().size(), p.arrays().size());
        }
        if (print) files.forEach((name, text) -> System.out.println("==== " + name + "\n" + text));
        if (emit == null) {
            System.out.println("compiled " + s.fileName() + " (use --emit DIR to write the generated source)");
            return 0;
        }
        writeAll(emit, files);
        System.out.println("wrote " + files.size() + " files to " + emit);
        return 0;
    }

    /** Each file goes to a temporary name first and is renamed into place: no half-written output. */
    static void writeAll(Path dir, Map<String, String> files) throws IOException {
        if (Files.exists(dir) && !Files.isDirectory(dir)) throw new Main.UserError("--emit " + dir + ": exists and is not a folder");
        Files.createDirectories(dir);
        for (var e : files.entrySet()) {
            Path tmp = dir.resolve("." + e.getKey() + ".tmp");
            Files.writeString(tmp, e.getValue());
            Files.move(tmp, dir.resolve(e.getKey()), StandardCopyOption.REPLACE_EXISTING, StandardCopyOption.ATOMIC_MOVE);
        }
    }
}
