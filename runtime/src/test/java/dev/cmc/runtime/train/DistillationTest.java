package dev.cmc.runtime.train;

import dev.cmc.dsl.Spec;
import dev.cmc.dsl.SpecLoader;
import dev.cmc.runtime.api.ConsistencyModel;
import dev.cmc.runtime.data.Datasets;
import dev.cmc.runtime.jvm.JvmBackend;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

import java.nio.file.Files;
import java.nio.file.Path;

import static org.junit.jupiter.api.Assertions.*;

/** Consistency distillation from an EDM teacher, end to end and small enough for every CI run. */
class DistillationTest {
    static Spec student(Path teacher, String extra) {
        return SpecLoader.fromText("student.cm", """
                model student { input_dim = 2; hidden_size = 64; num_layers = 2; %s }
                schedule { n_steps = 18; }
                train { method = cd; teacher = "%s"; steps = 1500; batch_size = 128; lr = 2e-3; ema_decay = 0.99; seed = 6; }
                data { source = "builtin:swiss_roll"; samples = 5000; }
                """.formatted(extra, teacher.toString().replace("\\", "\\\\")));
    }

    @Test
    void cdLearnsFromItsTeacherWithFarFewerEvaluations(@TempDir Path dir) throws Exception {
        Spec teacherSpec = EdmTeacherTest.teacher(1500);
        Path ckpt = dir.resolve("teacher.safetensors");
        var heldOut = Datasets.builtin("swiss_roll", 2000, 99);
        double heun;
        try (var teacher = ConsistencyModel.build(teacherSpec, new JvmBackend())) {
            new Trainer(teacher, Datasets.load(teacherSpec, 1), 4, 50).run(teacherSpec.train().steps(), (s, t, l, n) -> {});
            Checkpoint.save(teacher, ckpt);
            heun = Metrics.slicedWasserstein(heldOut.values(), 2000, teacher.odeSample(2000, 5, 18, true), 2000, 2, 64, 1);
        }
        Spec spec = student(ckpt, "");
        try (var model = ConsistencyModel.build(spec, new JvmBackend())) {
            Distillation.attachTeacher(model);
            new Trainer(model, Datasets.load(spec, 1), 6, 50).run(spec.train().steps(), (s, t, l, n) -> {});
            double one = Metrics.slicedWasserstein(heldOut.values(), 2000, model.multiStepSample(2000, 5, 1), 2000, 2, 64, 1);
            double two = Metrics.slicedWasserstein(heldOut.values(), 2000, model.multiStepSample(2000, 5, 2), 2000, 2, 64, 1);
            String report = "teacher Heun-18 (35 evaluations) %.4f, CD 1 step %.4f, CD 2 steps %.4f".formatted(heun, one, two);
            System.out.println("DistillationTest: " + report);
            assertTrue(one <= 2.0 * heun, report);
            assertTrue(two <= 1.5 * heun, report);
        }
    }

    @Test
    void aTeacherThatDoesNotFitIsRefusedNamingBothFiles(@TempDir Path dir) throws Exception {
        Spec wide = SpecLoader.fromText("wide.cm", "model w { input_dim = 3; hidden_size = 16; num_layers = 1; }\ntrain { method = edm; }");
        Path ckpt = dir.resolve("wide.safetensors");
        try (var t = ConsistencyModel.build(wide, new JvmBackend(1))) {
            Checkpoint.save(t, ckpt);
        }
        try (var model = ConsistencyModel.build(student(ckpt, ""), new JvmBackend(1))) {
            var e = assertThrows(Distillation.TeacherMismatchException.class, () -> Distillation.attachTeacher(model));
            assertTrue(e.getMessage().contains("student.cm") && e.getMessage().contains("wide.safetensors"), e.getMessage());
            assertTrue(e.getMessage().contains("input_dim 3 in the teacher, 2 in the student"), e.getMessage());
        }
        Spec ct = SpecLoader.fromText("ct.cm", "model c { input_dim = 2; hidden_size = 16; num_layers = 1; }");
        try (var t = ConsistencyModel.build(ct, new JvmBackend(1))) {
            Checkpoint.save(t, ckpt);
        }
        try (var model = ConsistencyModel.build(student(ckpt, ""), new JvmBackend(1))) {
            var e = assertThrows(Distillation.TeacherMismatchException.class, () -> Distillation.attachTeacher(model));
            assertTrue(e.getMessage().contains("method = ct, not edm"), e.getMessage());
        }
        Files.delete(ckpt);
        try (var model = ConsistencyModel.build(student(ckpt, ""), new JvmBackend(1))) {
            var e = assertThrows(Distillation.TeacherMismatchException.class, () -> Distillation.attachTeacher(model));
            assertTrue(e.getMessage().contains("no such checkpoint file"), e.getMessage());
        }
    }
}
