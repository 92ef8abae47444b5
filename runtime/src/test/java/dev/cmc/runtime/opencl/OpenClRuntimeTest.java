package dev.cmc.runtime.opencl;

import dev.cmc.compile.Compiler;
import dev.cmc.dsl.Spec;
import dev.cmc.dsl.SpecLoader;
import dev.cmc.kernel.Program;
import dev.cmc.render.OpenClRenderer;
import org.junit.jupiter.api.Assumptions;
import org.junit.jupiter.api.BeforeEach;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

import java.nio.file.Files;
import java.nio.file.Path;
import java.util.List;
import java.util.SplittableRandom;

import static org.junit.jupiter.api.Assertions.*;

/** The OpenCL runtime's own promises: offline binaries round-trip, and build failures explain themselves. */
class OpenClRuntimeTest {
    @BeforeEach
    void needsOpenCl() {
        String why = OpenClDevices.unavailable();
        Assumptions.assumeTrue(why == null, "OpenCL skipped: " + why);
    }

    static Spec spec(int hidden) {
        return SpecLoader.fromText("bin.cm", "model bin { input_dim = 3; hidden_size = " + hidden + "; num_layers = 1; }");
    }

    static float[] run(OpenClBackend backend, Compiler.Compiled c) {
        float[] x = new float[5 * 3];
        var rng = new SplittableRandom(1);
        for (int i = 0; i < x.length; i++) x[i] = (float) rng.nextGaussian();
        try (var exe = backend.load(c.program(), 5)) {
            float[] p = c.layout().initialize(2);
            exe.write("params", p, p.length);
            exe.write("x", x, x.length);
            exe.write("sigma", new float[]{1.5f}, 1);
            exe.run(5);
            float[] out = new float[x.length];
            exe.read("out", out, out.length);
            return out;
        }
    }

    @Test
    void binariesRoundTripAndRefuseOtherSpecs(@TempDir Path dir) throws Exception {
        var device = OpenClDevices.list().getFirst();
        var c = Compiler.sampler(spec(16));
        Path file = dir.resolve("k.bin");
        OpenClBinaries.emit(device, List.of(c.program(), Compiler.trainStep(spec(16)).program()), file);
        float[] fromSource = run(new OpenClBackend(0), c);
        float[] fromBinary = run(new OpenClBackend(0).withBinaries(file), c);
        assertArrayEquals(fromSource, fromBinary);

        var other = Compiler.sampler(spec(32));
        var e = assertThrows(OpenClBinaries.RefusedException.class, () -> run(new OpenClBackend(0).withBinaries(file), other));
        assertTrue(e.getMessage().contains("built from other kernels"), e.getMessage());

        Files.writeString(dir.resolve("junk.bin"), "not a binary");
        e = assertThrows(OpenClBinaries.RefusedException.class, () -> new OpenClBackend(0).withBinaries(dir.resolve("junk.bin")));
        assertTrue(e.getMessage().contains("not a cmc OpenCL binary"), e.getMessage());
    }

    /** A renderer fault (here: a deliberately broken line) surfaces the build log and where the source is. */
    @Test
    void aBrokenKernelShowsTheBuildLogAndTheSource() throws Exception {
        var device = OpenClDevices.list().getFirst();
        Program p = Compiler.sampler(spec(16)).program();
        String broken = OpenClRenderer.render(p, "test").replaceFirst("const int lo =", "const int lo = undefined_symbol +");
        var e = assertThrows(CL.ClException.class, () -> new OpenClExecutable(device, p, broken, 4));
        assertTrue(e.getMessage().contains("CL_BUILD_PROGRAM_FAILURE"), e.getMessage());
        assertTrue(e.getMessage().contains("undefined_symbol"), "the build log names the fault:\n" + e.getMessage());
        String path = e.getMessage().replaceAll("(?s).*generated source: (\\S+).*", "$1");
        assertTrue(Files.readString(Path.of(path)).contains("undefined_symbol"), "the saved source is the one that failed: " + path);
    }
}
