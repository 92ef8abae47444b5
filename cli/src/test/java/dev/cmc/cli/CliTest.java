package dev.cmc.cli;

import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

import java.io.ByteArrayOutputStream;
import java.io.PrintStream;
import java.nio.file.Files;
import java.nio.file.Path;

import static org.junit.jupiter.api.Assertions.*;

/** The CLI as a user meets it: exit codes, one-line errors that name the file or flag, no stack traces. */
class CliTest {
    record Run(int code, String out, String err) {}

    static Run cmc(String... args) {
        var out = new ByteArrayOutputStream();
        var err = new ByteArrayOutputStream();
        PrintStream o = System.out, e = System.err;
        System.setOut(new PrintStream(out, true));
        System.setErr(new PrintStream(err, true));
        try {
            int code = Main.run(args);
            return new Run(code, out.toString(), err.toString());
        } finally {
            System.setOut(o);
            System.setErr(e);
        }
    }

    static void assertNoStackTrace(Run r) {
        assertFalse(r.err().contains("\tat ") || r.err().contains("Exception in"), "stack trace in:\n" + r.err());
    }

    static final Path SEED = Path.of("../examples/seed_default.cm");

    @Test
    void checkReportsTheSeedParameterCount() {
        Run r = cmc("check", SEED.toString());
        assertEquals(0, r.code(), r.err());
        assertTrue(r.out().contains("2,203,200"), r.out());
        assertTrue(r.out().contains("2,195,456"), r.out());
    }

    @Test
    void checkOfABadSpecExitsTwoWithLocatedDiagnostics(@TempDir Path dir) throws Exception {
        Path bad = dir.resolve("bad.cm");
        Files.writeString(bad, "model m {\n  input_dim = 2;\n  hiden = 3;\n}\n");
        Run r = cmc("check", bad.toString());
        assertEquals(2, r.code());
        assertTrue(r.err().contains(bad + ":3:3: error: unknown key 'hiden'"), r.err());
        assertTrue(r.err().contains("^^^^^"), r.err());
        assertNoStackTrace(r);
    }

    @Test
    void compileEmitsEveryKernelAndThePlans(@TempDir Path dir) throws Exception {
        Run r = cmc("compile", SEED.toString(), "--emit", dir.toString());
        assertEquals(0, r.code(), r.err());
        String sample = Files.readString(dir.resolve("SeedDefaultSampleKernels.java"));
        String train = Files.readString(dir.resolve("SeedDefaultTrainStepKernels.java"));
        String plan = Files.readString(dir.resolve("seed_default_train_step.plan.txt"));
        assertTrue(sample.contains("k_matmul_block3_down_mm"), "sampler lacks the last block");
        for (String kernel : new String[]{"k_matmul_block0_up_mm", "k_matmul_target_block0_up_mm", "k_matmul_nt_", "k_matmul_tn_",
                "k_normalize_grad_", "k_reduce_cols_sq_dist", "k_adam_ema"}) {
            assertTrue(train.contains(kernel), "train step lacks " + kernel);
            assertTrue(plan.contains(kernel), "plan lacks " + kernel);
        }
        try (var files = Files.list(dir)) {
            assertTrue(files.noneMatch(p -> p.getFileName().toString().endsWith(".tmp")), "temporary files left behind");
        }
    }

    /**
     * A distillation spec compiles with its teacher's kernels, from the spec inside the teacher's checkpoint,
     * and with σ embedded once per grid level (n_steps = 18 against 256 rows); without the checkpoint, a
     * one-line error names the key.
     */
    @Test
    void compileOfADistillationSpecReadsItsTeacher(@TempDir Path dir) throws Exception {
        Path teacherSpec = dir.resolve("teacher.cm"), student = dir.resolve("student.cm"), ckpt = dir.resolve("teacher.safetensors");
        Files.writeString(teacherSpec, "model t { input_dim = 2; hidden_size = 16; num_layers = 1; }\ntrain { method = edm; }\n");
        Files.writeString(student, "model s { input_dim = 2; hidden_size = 16; num_layers = 1; }\nschedule { n_steps = 18; }\n"
                + "train { method = cd; batch_size = 256; teacher = \"" + ckpt.toString().replace("\\", "/") + "\"; }\n");
        Run missing = cmc("compile", student.toString());
        assertEquals(2, missing.code());
        assertTrue(missing.err().contains("train.teacher") && missing.err().contains("no such checkpoint file"), missing.err());
        assertNoStackTrace(missing);

        var spec = dev.cmc.dsl.SpecLoader.fromFile(teacherSpec, java.util.List.of());
        try (var teacher = dev.cmc.runtime.api.ConsistencyModel.build(spec)) {
            dev.cmc.runtime.train.Checkpoint.save(teacher, ckpt);
        }
        Run r = cmc("compile", student.toString(), "--emit", dir.resolve("out").toString());
        assertEquals(0, r.code(), r.err());
        String plan = Files.readString(dir.resolve("out").resolve("s_train_step.plan.txt"));
        assertTrue(plan.contains("k_matmul_teacher_block0_up_mm"), "the step lacks its teacher's kernels");
        assertTrue(plan.contains("k_segment_sum_d_embed_act"), "σ is not embedded once per grid level");
    }

    @Test
    void compileForCudaWritesPtxForTheChosenArchitecture(@TempDir Path dir) throws Exception {
        Run r = cmc("compile", SEED.toString(), "--target", "cuda", "--arch", "sm_80", "--emit", dir.toString());
        assertEquals(0, r.code(), r.err());
        String ptx = Files.readString(dir.resolve("SeedDefaultTrainStepKernels.sm_80.ptx"));
        assertTrue(ptx.contains(".target sm_80") && ptx.contains(".visible .entry k96_adam_ema_embed("), "PTX lacks its target or the optimizer");
        String graph = Files.readString(dir.resolve("seed_default_train_step.cuda-graph.txt"));
        assertTrue(graph.contains("103 kernels captured on 4 streams") && graph.contains("stream 3") && graph.contains("k_adam_ema"), graph);
        assertTrue(graph.contains("63 urgent kernels") && graph.lines().anyMatch(l -> l.contains("k_matmul_target_block0_up_mm") && l.contains(" urgent")), graph);
        Run bad = cmc("compile", SEED.toString(), "--target", "cuda", "--arch", "sm_70");
        assertEquals(2, bad.code());
        assertTrue(bad.err().contains("--arch sm_70") && bad.err().contains("sm_80 and sm_90"), bad.err());
        // sm_90 (the default): the sampler, loaded for 65,536 rows, takes wgmma tiles (its module sm_90a); the step at
        // the seed's batch of 256 keeps 128×64 mma.sync tiles, and so do bf16 GEMMs (below).
        Path hopper = dir.resolve("sm_90");
        assertEquals(0, cmc("compile", SEED.toString(), "--target", "cuda", "--emit", hopper.toString()).code());
        String wgmma = Files.readString(hopper.resolve("SeedDefaultSampleKernels.sm_90a.ptx"));
        assertTrue(wgmma.contains(".target sm_90a") && wgmma.contains("wgmma.mma_async"), "the sampler has no wgmma");
        String narrow = Files.readString(hopper.resolve("SeedDefaultTrainStepKernels.sm_90.ptx"));
        assertTrue(narrow.contains(".target sm_90") && !narrow.contains("wgmma") && narrow.contains("mma.sync"), "the step is not mma.sync");
        assertTrue(cmc("compile", SEED.toString(), "--target", "cuda", "--set", "train.batch_size=4096", "--emit", hopper.toString()).code() == 0
                && Files.readString(hopper.resolve("SeedDefaultTrainStepKernels.sm_90a.ptx")).contains("wgmma.mma_async"), "the step at 4,096 has no wgmma");
        Path bf16 = dir.resolve("bf16");
        Run half = cmc("compile", SEED.toString(), "--target", "cuda", "--set", "target.precision=bf16", "--emit", bf16.toString());
        assertEquals(0, half.code(), half.err());
        String sampler = Files.readString(bf16.resolve("SeedDefaultSampleKernels.sm_90.ptx"));
        assertTrue(sampler.contains("(bf16 tensor-core GEMMs)") && sampler.contains("mma.sync.aligned.m16n8k16.row.col.f32.bf16.bf16.f32"), "no bf16 mma");
        Run cpu = cmc("compile", SEED.toString(), "--target", "opencl", "--set", "target.precision=bf16");
        assertEquals(2, cpu.code());
        assertTrue(cpu.err().contains("target.precision = bf16") && cpu.err().contains("--target cuda"), cpu.err());
        assertNoStackTrace(cpu);
    }

    @Test
    void benchOnEveryBackendSaysWhatItSkippedAndWritesJsonAndPng(@TempDir Path dir) throws Exception {
        Path spec = dir.resolve("tiny.cm");
        Files.writeString(spec, "model tiny { input_dim = 2; hidden_size = 16; num_layers = 1; }\n");
        Run r = cmc("bench", spec.toString(), "--backends", "all", "--batch", "64,256", "--train-batch", "32", "--seconds", "0.3",
                "--json", dir.resolve("b.json").toString(), "--png", dir.resolve("b.png").toString());
        assertEquals(0, r.code(), r.err());
        assertNoStackTrace(r);
        if (dev.cmc.runtime.cuda.CudaDevices.unavailable() != null) assertTrue(r.out().contains("skipped cuda:0: "), r.out());
        boolean tornado = dev.cmc.runtime.tornado.TornadoSdk.unavailable() == null;
        assertTrue(tornado ? r.out().contains("tiny on tornado") : r.out().contains("skipped tornado: "), r.out());
        assertTrue(r.out().contains("tiny on jvm") && r.out().contains("CT training step, batch 32"), r.out());
        String json = Files.readString(dir.resolve("b.json"));
        assertTrue(json.contains("\"backend\":\"jvm\"") && json.contains("\"batch\":256"), json);
        assertTrue(Files.size(dir.resolve("b.png")) > 1000);
        Run cpuTrace = cmc("bench", spec.toString(), "--backends", "jvm", "--trace", dir.resolve("t.json").toString());
        assertEquals(2, cpuTrace.code());
        assertTrue(cpuTrace.err().contains("--trace: kernel timelines are recorded on CUDA GPUs only") && cpuTrace.err().contains("(jvm)"), cpuTrace.err());
        assertFalse(Files.exists(dir.resolve("t.json")), "a trace written for a refused run");
        Run soakTrace = cmc("bench", spec.toString(), "--backends", "jvm", "--soak", "10", "--trace", dir.resolve("t.json").toString());
        assertEquals(2, soakTrace.code());
        assertTrue(soakTrace.err().contains("--trace") && soakTrace.err().contains("not with --soak or --scaling"), soakTrace.err());
        assertNoStackTrace(soakTrace);
        if (tornado) return;
        Run none = cmc("bench", spec.toString(), "--backends", "tornado");
        assertEquals(2, none.code());
        assertTrue(none.err().contains("--backends tornado: none of them is available here"), none.err());
    }

    @Test
    void compileForTornadoWritesTaskGraphPrograms(@TempDir Path dir) throws Exception {
        Run r = cmc("compile", SEED.toString(), "--target", "tornado", "--emit", dir.toString());
        assertEquals(0, r.code(), r.err());
        String java = Files.readString(dir.resolve("SeedDefaultTrainStepTaskGraph.java"));
        assertTrue(java.contains("new TaskGraph(\"cmc\")") && java.contains("DataTransferMode.FIRST_EXECUTION")
                && java.contains("context.allocateFloatLocalArray") && java.contains("@Parallel"), "not a TornadoVM task graph program");
        assertTrue(Files.exists(dir.resolve("SeedDefaultSampleTaskGraph.java")));
    }

    @Test
    void badDataGetsOneLineNamingTheFile(@TempDir Path dir) throws Exception {
        Path spec = dir.resolve("s.cm");
        Files.writeString(dir.resolve("three.csv"), "1,2,3\n4,5,6\n");
        Files.writeString(dir.resolve("nan.csv"), "1,2\nnan,4\n");
        Files.writeString(dir.resolve("empty.csv"), "");
        Files.createDirectory(dir.resolve("folder.csv"));
        String[][] cases = {
            {"three.csv", "data has dimension 3 but model.input_dim is 2"},
            {"nan.csv", "nan.csv:2: value 1 is nan; data must be finite"},
            {"empty.csv", "empty.csv: no data rows"},
            {"missing.csv", "missing.csv: no such file"},
            {"folder.csv", "folder.csv: is a folder"},
        };
        for (String[] c : cases) {
            Files.writeString(spec, "model m { input_dim = 2; hidden_size = 8; num_layers = 1; }\n"
                    + "train { steps = 2; batch_size = 4; }\ndata { source = \"" + dir.resolve(c[0]) + "\"; }\n");
            Run r = cmc("train", spec.toString(), "--out", dir.resolve("run").toString());
            assertEquals(2, r.code(), c[0] + ": " + r.err());
            assertTrue(r.err().contains(c[1]), c[0] + ": " + r.err());
            assertEquals(1, r.err().strip().lines().count(), "one line for " + c[0] + ":\n" + r.err());
            assertNoStackTrace(r);
        }
    }

    @Test
    void badFlagsGetOneLineAndAPointerToHelp() {
        Run r = cmc("train", SEED.toString(), "--frobnicate");
        assertEquals(2, r.code());
        assertTrue(r.err().startsWith("error: Unknown option: '--frobnicate'"), r.err());
        r = cmc("check", SEED.toString(), "--set", "train.stepz=3");
        assertEquals(2, r.code());
        assertTrue(r.err().contains("--set train.stepz=3: error: unknown key 'stepz'"), r.err());
        r = cmc("sample", SEED.toString(), "--checkpoint", "no/such.safetensors");
        assertEquals(2, r.code());
        assertTrue(r.err().contains("no/such.safetensors"), r.err());
        r = cmc("compile", SEED.toString(), "--target", "fpga");
        assertEquals(2, r.code());
        assertTrue(r.err().contains("--target fpga"), r.err());
    }

    @Test
    void trainSampleEvalEndToEnd(@TempDir Path dir) throws Exception {
        Path spec = dir.resolve("tiny.cm");
        Files.writeString(spec, """
                model tiny { input_dim = 2; hidden_size = 16; num_layers = 1; }
                train { method = ict; steps = 40; batch_size = 32; checkpoint_every = 20; }
                data { source = "builtin:moons"; samples = 500; }
                """);
        Path out = dir.resolve("run");
        Run r = cmc("train", spec.toString(), "--out", out.toString());
        assertEquals(0, r.code(), r.err());
        String last = r.out().strip().lines().reduce((a, b) -> b).orElse("");
        assertTrue(last.startsWith("outputs: ") && last.contains("checkpoint.safetensors"), last);
        for (String f : new String[]{"checkpoint.safetensors", "loss.csv", "loss.png", "metrics.csv", "samples_1step.png", "samples_2step.csv"}) {
            assertTrue(Files.size(out.resolve(f)) > 0, f);
        }
        r = cmc("sample", spec.toString(), "--checkpoint", out.resolve("checkpoint.safetensors").toString(), "--steps", "2",
                "--count", "10", "--out", dir.resolve("s.csv").toString());
        assertEquals(0, r.code(), r.err());
        assertEquals(10, Files.readAllLines(dir.resolve("s.csv")).size());
        r = cmc("eval", spec.toString(), "--checkpoint", out.resolve("checkpoint.safetensors").toString(), "--count", "200");
        assertEquals(0, r.code(), r.err());
        assertTrue(r.out().contains("data vs data (floor)") && r.out().contains("untrained (ceiling)"), r.out());
    }
}
