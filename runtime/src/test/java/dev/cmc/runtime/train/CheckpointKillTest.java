package dev.cmc.runtime.train;

import dev.cmc.dsl.Spec;
import dev.cmc.dsl.SpecLoader;
import dev.cmc.runtime.api.ConsistencyModel;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

import java.nio.file.Files;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.Arrays;
import java.util.concurrent.TimeUnit;

import static org.junit.jupiter.api.Assertions.*;

/** Killing a process while it writes checkpoints never leaves a corrupt one: the file is the old or the new. */
class CheckpointKillTest {
    static Spec spec() {
        return SpecLoader.fromText("kill.cm", "model k { input_dim = 64; hidden_size = 256; num_layers = 4; }");
    }

    /** The child: writes checkpoints whose every weight equals the step, as fast as it can. */
    public static void main(String[] args) throws Exception {
        Path ckpt = Path.of(args[0]);
        try (var model = ConsistencyModel.build(spec())) {
            for (long step = 1; ; step++) {
                Arrays.fill(model.params(), step);
                Arrays.fill(model.ema(), step);
                model.setStep(step);
                Checkpoint.save(model, ckpt);
                if (step == 2) Files.writeString(ckpt.resolveSibling("ready"), "");
            }
        }
    }

    @Test
    void killDuringWritesLeavesAValidCheckpoint(@TempDir Path dir) throws Exception {
        Path ckpt = dir.resolve("checkpoint.safetensors");
        String java = ProcessHandle.current().info().command().orElse("java");
        var cmd = new ArrayList<String>();
        cmd.add(java);
        cmd.add("--add-modules");
        cmd.add("jdk.incubator.vector");
        cmd.add("-cp");
        cmd.add(System.getProperty("java.class.path"));
        cmd.add(CheckpointKillTest.class.getName());
        cmd.add(ckpt.toString());
        for (int round = 0; round < 3; round++) {
            Process p = new ProcessBuilder(cmd).redirectErrorStream(true).redirectOutput(dir.resolve("child.log").toFile()).start();
            long deadline = System.nanoTime() + TimeUnit.SECONDS.toNanos(60);
            while (!Files.exists(dir.resolve("ready")) && System.nanoTime() < deadline && p.isAlive()) Thread.sleep(20);
            assertTrue(Files.exists(dir.resolve("ready")), "child never wrote a checkpoint: " + Files.readString(dir.resolve("child.log")));
            Thread.sleep(150 + 170L * round);
            p.destroyForcibly().waitFor();
            Files.deleteIfExists(dir.resolve("ready"));

            try (var model = ConsistencyModel.build(spec())) {
                Checkpoint.load(model, ckpt);
                long step = model.step();
                assertTrue(step >= 2, "step " + step);
                for (float v : model.params()) assertEquals(step, v, "a weight from another write than step " + step);
                for (float v : model.ema()) assertEquals(step, v, "an EMA weight from another write than step " + step);
            }
        }
    }
}
