package dev.cmc.runtime.tornado;

import dev.cmc.compile.Compiler;
import dev.cmc.dsl.Spec;
import dev.cmc.dsl.SpecLoader;
import dev.cmc.kernel.Program;
import dev.cmc.render.TornadoRenderer;
import org.junit.jupiter.api.Assumptions;
import org.junit.jupiter.api.Test;

import java.nio.file.Files;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.List;

import static org.junit.jupiter.api.Assertions.assertTrue;

/**
 * Every TornadoVM program cmc generates compiles with javac -g against the installed SDK's API (where
 * TORNADOVM_HOME names one): samplers and training steps for every method, activation, loss, optimizer and
 * gradient-clipping option, with the local-variable table that TornadoVM's compiler needs.
 */
class TornadoCompileTest {
    static Spec spec(String model, String train) {
        return SpecLoader.fromText("tornado.cm", "model m { " + model + " }\ntrain { " + train + " }\n");
    }

    @Test
    void everyProgramCompilesAgainstTheSdk() throws Exception {
        String why = TornadoSdk.unavailable();
        Assumptions.assumeTrue(why == null, "tornado skipped: " + why);
        var programs = new ArrayList<Program>();
        Spec seed = spec("input_dim = 64; hidden_size = 256; num_layers = 4;", "method = ct;");
        programs.add(Compiler.sampler(seed).program());
        programs.add(Compiler.denoiser(seed).program());
        programs.add(Compiler.trainStep(seed).program());
        // iCT at batch 4,096: σ embedded once per each of 1,280 grid levels; the embedding's weight gradient splits K
        Spec ict = spec("input_dim = 64; hidden_size = 256; num_layers = 4;", "method = ict;");
        programs.add(Compiler.trainStep(ict, null, Compiler.sigmaRows(ict, 4096)).program());
        programs.add(Compiler.trainStep(spec("input_dim = 2; hidden_size = 40; num_layers = 2; activation = gelu; input_scaling = none;",
                "method = ict; loss = l2; optimizer = radam; grad_clip = 1.0; weight_decay = 0.01;")).program());
        programs.add(Compiler.trainStep(spec("input_dim = 3; hidden_size = 24; num_layers = 1; activation = relu; expansion = 3;", "method = edm;")).program());
        Spec teacher = spec("input_dim = 2; hidden_size = 32; num_layers = 2;", "method = edm;");
        programs.add(Compiler.trainStep(spec("input_dim = 2; hidden_size = 32; num_layers = 2;", "method = cd; teacher = \"t.safetensors\";"), teacher).program());
        TornadoSdk sdk = TornadoSdk.find();
        for (Program p : programs) {
            Path classes = TornadoExecutable.compile(sdk, p, TornadoRenderer.render(p, dev.cmc.runtime.jvm.JvmBackend.lanes(), "compile test"));
            Path cls = classes.resolve(TornadoRenderer.qualifiedName(p).replace('.', '/') + ".class");
            assertTrue(Files.isRegularFile(cls), p.name() + ": no " + cls);
            // javac -g: the class carries a LocalVariableTable, without which TornadoVM's compiler has crashed.
            assertTrue(new String(Files.readAllBytes(cls), java.nio.charset.StandardCharsets.ISO_8859_1).contains("LocalVariableTable"),
                    p.name() + " was compiled without -g");
        }
        List<String> devices = sdk.devices();
        assertTrue(!devices.isEmpty() && !devices.getFirst().startsWith("("), "TornadoVM lists no device: " + devices);
    }
}
