package dev.cmc.runtime.train;

import dev.cmc.dsl.Spec;
import dev.cmc.dsl.SpecLoader;
import dev.cmc.runtime.api.ConsistencyModel;
import dev.cmc.runtime.data.Datasets;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

import java.nio.file.Files;
import java.nio.file.Path;
import java.util.List;

import static org.junit.jupiter.api.Assertions.*;

class TrainingTest {
    static Spec small(String method, long steps) {
        return SpecLoader.fromText("small.cm", """
                model small { input_dim = 2; hidden_size = 64; num_layers = 2; }
                train { method = %s; steps = %d; batch_size = 128; lr = 2e-3; ema_decay = 0.99; seed = 3; }
                data { source = "builtin:swiss_roll"; samples = 5000; }
                """.formatted(method, steps));
    }

    /** A smaller version of the README's learning claim, on every CI run. */
    @Test
    void ictLearnsTheSwissRoll() {
        Spec spec = small("ict", 1500);
        var data = Datasets.load(spec, 1);
        var heldOut = Datasets.builtin("swiss_roll", 2000, 99);
        var other = Datasets.builtin("swiss_roll", 2000, 123);
        try (var model = ConsistencyModel.build(spec)) {
            float[] before = model.sample(model.params(), 2000, 5, new double[]{80});
            new Trainer(model, data, 3, 50).run(spec.train().steps(), (s, t, l, n) -> {});
            float[] one = model.multiStepSample(2000, 5, 1);
            float[] two = model.multiStepSample(2000, 5, 2);
            double floor = Metrics.slicedWasserstein(heldOut.values(), 2000, other.values(), 2000, 2, 64, 1);
            double ceiling = Metrics.slicedWasserstein(heldOut.values(), 2000, before, 2000, 2, 64, 1);
            double sw1 = Metrics.slicedWasserstein(heldOut.values(), 2000, one, 2000, 2, 64, 1);
            double sw2 = Metrics.slicedWasserstein(heldOut.values(), 2000, two, 2000, 2, 64, 1);
            String report = "SW 1-step %.4f, 2-step %.4f, floor %.4f, untrained %.4f".formatted(sw1, sw2, floor, ceiling);
            assertTrue(sw1 < ceiling / 5, report);
            assertTrue(sw1 < 6 * floor, report);
            assertTrue(sw2 < 6 * floor, report);
        }
    }

    @Test
    void resumedTrainingIsBitIdentical(@TempDir Path dir) throws Exception {
        for (String method : List.of("ct", "ict")) {
            Spec spec = small(method, 30);
            var data = Datasets.load(spec, 1);
            float[] straight;
            try (var model = ConsistencyModel.build(spec)) {
                new Trainer(model, data, 3, 1).run(30, (s, t, l, n) -> {});
                straight = model.params().clone();
            }
            Path ckpt = dir.resolve(method + ".safetensors");
            try (var first = ConsistencyModel.build(spec)) {
                new Trainer(first, data, 3, 1).run(12, (s, t, l, n) -> {});
                Checkpoint.save(first, ckpt);
            }
            try (var resumed = ConsistencyModel.build(spec)) {
                Checkpoint.load(resumed, ckpt);
                assertEquals(12, resumed.step());
                new Trainer(resumed, data, 3, 1).run(30, (s, t, l, n) -> {});
                assertArrayEquals(straight, resumed.params(), method + ": resumed weights differ from an uninterrupted run");
            }
        }
    }

    @Test
    void aTruncatedCheckpointIsRefusedClearly(@TempDir Path dir) throws Exception {
        Spec spec = small("ct", 10);
        Path ckpt = dir.resolve("c.safetensors");
        try (var model = ConsistencyModel.build(spec)) {
            Checkpoint.save(model, ckpt);
            assertFalse(Files.exists(dir.resolve(".c.safetensors.tmp")), "the temporary file must be renamed away");
            byte[] bytes = Files.readAllBytes(ckpt);
            Files.write(ckpt, java.util.Arrays.copyOf(bytes, bytes.length / 2));
            var e = assertThrows(java.io.IOException.class, () -> Checkpoint.load(model, ckpt));
            assertTrue(e.getMessage().contains(ckpt.toString()), e.getMessage());
        }
    }

    @Test
    void aDivergingLossStopsTrainingWithAClearMessage() {
        Spec spec = SpecLoader.fromText("boom.cm", """
                model boom { input_dim = 2; hidden_size = 16; num_layers = 1; }
                train { method = ct; steps = 200; batch_size = 16; lr = 1e30; }
                data { source = "builtin:moons"; samples = 100; }
                """);
        try (var model = ConsistencyModel.build(spec)) {
            var e = assertThrows(Trainer.DivergedException.class,
                    () -> new Trainer(model, Datasets.load(spec, 1), 1, 1).run(200, (s, t, l, n) -> {}));
            assertTrue(e.getMessage().startsWith("loss became"), e.getMessage());
            assertTrue(e.getMessage().contains("train.lr"), e.getMessage());
        }
    }

    @Test
    void curricula() {
        // CT: N(0) = s0 + 1... the paper's formula gives N(0) = ⌈√(s0²) − 1⌉ + 1 = s0 and N(K) = s1 + 1.
        assertEquals(2, Schedules.ctSteps(0, 1000, 2, 150));
        assertEquals(151, Schedules.ctSteps(1000, 1000, 2, 150));
        assertEquals(Math.exp(2 * Math.log(0.9) / 2), Schedules.ctMu(2, 2, 0.9), 1e-15);
        // iCT: doubles from s0 + 1 to s1 + 1.
        assertEquals(11, Schedules.ictSteps(0, 1000, 10, 1280));
        assertEquals(1281, Schedules.ictSteps(1000, 1000, 10, 1280));
        double[] k = Schedules.karras(40, 0.002, 80, 7);
        assertEquals(0.002, k[0]);
        assertEquals(80, k[39]);
        for (int i = 1; i < 40; i++) assertTrue(k[i] > k[i - 1]);
        double[] w = Schedules.ictIndexWeights(k);
        double sum = 0;
        for (double x : w) { assertTrue(x >= 0); sum += x; }
        assertEquals(1, sum, 1e-12);
    }
}
