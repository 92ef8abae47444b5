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

    @Option(names = "--target", defaultValue = "jvm", paramLabel = "TARGET", description = "renderer: jvm (default), opencl, cuda (PTX) or tornado (TornadoVM task graphs)")
    String target;

    @Option(names = "--arch", defaultValue = "sm_90", paramLabel = "SM", description = "cuda: the PTX target, sm_80 or sm_90 (default sm_90)")
    String arch;

    @Option(names = "--emit-binary", paramLabel = "FILE",
            description = "opencl: build both programs for the device (target.device, or --device) and save the binaries, for target.kernel_binary")
    Path emitBinary;

    @Option(names = "--device", paramLabel = "N", description = "opencl device index for --emit-binary (default: target.device)")
    Integer device;

    @Option(names = "--print", description = "print the task-graph plans and the generated source to the terminal")
    boolean print;

    @Override
    public Integer call() throws IOException {
        if (!java.util.List.of("jvm", "opencl", "cuda", "tornado").contains(target)) {
            throw new Main.UserError("--target " + target + ": valid targets are jvm, opencl, cuda and tornado");
        }
        if (!arch.equals("sm_80") && !arch.equals("sm_90")) throw new Main.UserError("--arch " + arch + ": valid architectures are sm_80 and sm_90");
        if (emitBinary != null && !target.equals("opencl")) throw new Main.UserError("--emit-binary needs --target opencl");
        var tiling = target.equals("cuda") ? dev.cmc.runtime.cuda.CudaBackend.configuredTiling() : java.util.Optional.<dev.cmc.render.PtxRenderer.Tiling>empty();
        if (tiling.isPresent() && tiling.get().wgmma() && !arch.equals("sm_90")) {
            throw new Main.UserError("--arch " + arch + ": CMC_CUDA_TILES=" + tiling.get().setting + " needs --arch sm_90 (its modules target sm_90a)");
        }
        Spec s = spec.load();
        String precision = s.target().precision();
        if (!precision.equals("fp32") && !target.equals("cuda")) {
            throw new Main.UserError("target.precision = " + precision + " in " + s.fileName() + ": only --target cuda has " + precision
                    + " GEMMs; the " + target + " kernels are fp32 (set precision = fp32, or --target cuda)");
        }
        var matmul = dev.cmc.render.PtxRenderer.Matmul.of(precision, dev.cmc.runtime.cuda.CudaBackend.fp32Matmul());
        // The fused blocks as a program loaded for many rows runs them (a CT step at its batch may keep three kernels).
        boolean fuseMlps = target.equals("cuda") && dev.cmc.runtime.cuda.CudaBackend.resolved(dev.cmc.runtime.cuda.CudaBackend.configuredMlpFusion(), matmul)
                == dev.cmc.runtime.cuda.CudaBackend.MlpFusion.LARGE_BATCHES;
        var backend = target.equals("jvm") ? new JvmBackend() : null;
        var files = new LinkedHashMap<String, String>();
        String header = "cmc " + s.fileName() + " (model " + s.name() + ")";
        // The training step as `cmc train` compiles it: with the teacher's kernels for cd, σ grouped where that pays.
        Spec teacher = s.train().method().equals("cd") ? dev.cmc.runtime.train.Distillation.teacherSpec(s) : null;
        var trainStep = Compiler.trainStep(s, teacher, Compiler.sigmaRows(s, s.train().batchSize()));
        for (Compiler.Compiled c : new Compiler.Compiled[]{Compiler.sampler(s), trainStep}) {
            // As CudaBackend runs it: with CMC_CUDA_MLP=fused, each residual MLP block that fits as one kernel, its
            // shared memory within what the architecture's data-centre GPU allows a block (h = 256 fuses for sm_90 only).
            // Tiled as the GPU would load it: the sampler for its 65,536-row launches, the step for the spec's batch.
            int rows = c == trainStep ? s.train().batchSize() : dev.cmc.runtime.cuda.CudaBackend.SAMPLING_ROWS;
            var t = tiling.orElseGet(() -> dev.cmc.runtime.cuda.CudaBackend.defaultTiling(arch.equals("sm_90") ? 9 : 8, rows, matmul));
            Program p = fuseMlps ? dev.cmc.render.PtxRenderer.fuseMlps(c.program(), matmul, t, dev.cmc.render.PtxRenderer.sharedPerBlock(arch)) : c.program();
            String h = header + ", program " + p.name();
            if (backend != null) files.putAll(backend.render(p, h));
            else if (target.equals("tornado")) files.put(dev.cmc.render.TornadoRenderer.className(p) + ".java", dev.cmc.render.TornadoRenderer.render(p, JvmBackend.lanes(), h));
            else if (target.equals("cuda")) {
                files.put(dev.cmc.render.JavaRenderer.className(p) + "." + (t.wgmma() ? "sm_90a" : arch) + ".ptx", dev.cmc.render.PtxRenderer.render(p, h, arch, matmul, t));
            }
            else files.put(dev.cmc.render.JavaRenderer.className(p) + ".cl", dev.cmc.render.OpenClRenderer.render(p, h));
            files.put(p.name() + ".plan.txt", p.plan());
            if (target.equals("cuda")) files.put(p.name() + ".cuda-graph.txt", dev.cmc.runtime.cuda.StreamPlan.of(p, dev.cmc.runtime.cuda.StreamPlan.configuredStreams()).describe(p));
            System.out.printf("%-28s %3d kernels, %3d arrays%n", p.name(), p.kernels().size(), p.arrays().size());
        }
        if (emitBinary != null) {
            int index = device != null ? device : s.target().device();
            var devices = dev.cmc.runtime.opencl.OpenClDevices.list();
            if (index < 0 || index >= devices.size()) {
                String why = dev.cmc.runtime.opencl.OpenClDevices.unavailable();
                throw new Main.UserError("--emit-binary: no OpenCL device " + index + (why != null ? ": " + why : "; devices are 0.." + (devices.size() - 1)));
            }
            dev.cmc.runtime.opencl.OpenClBinaries.emit(devices.get(index), java.util.List.of(Compiler.sampler(s).program(), trainStep.program()), emitBinary);
            System.out.println("built for " + devices.get(index).name() + "; wrote " + emitBinary);
        }
        if (print) files.forEach((name, text) -> System.out.println("==== " + name + "\n" + text));
        if (emit == null) {
            if (emitBinary == null) System.out.println("compiled " + s.fileName() + " (use --emit DIR to write the generated source)");
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
