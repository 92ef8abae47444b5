package dev.cmc.runtime.train;

import dev.cmc.dsl.Spec;
import dev.cmc.dsl.SpecException;
import dev.cmc.dsl.SpecLoader;
import dev.cmc.model.ConsistencyModelGraph;
import dev.cmc.runtime.api.ConsistencyModel;

import java.io.IOException;
import java.nio.file.Path;

/** Loads the EDM teacher a consistency-distillation spec names, and refuses one that does not fit it. */
public final class Distillation {
    private Distillation() {}

    /** The teacher cannot be used with this student: names both files and what differs. */
    public static final class TeacherMismatchException extends RuntimeException {
        public TeacherMismatchException(String message) { super(message); }
    }

    /**
     * Reads train.teacher's checkpoint (spec from its metadata, EMA weights) and attaches it to the model. A
     * student at step 0 whose trunk matches the teacher's starts from its weights; returns whether it did.
     */
    public static boolean attachTeacher(ConsistencyModel student) {
        Spec s = student.spec();
        Path file = Path.of(s.train().teacher());
        Spec teacher = teacherSpec(s);
        float[] weights;
        try {
            weights = Checkpoint.emaWeights(file, new ConsistencyModelGraph(teacher.model(), true).layout().total());
        } catch (IOException e) {
            throw new TeacherMismatchException(where(s) + ": " + e.getMessage());
        }
        var m = s.model();
        var tm = teacher.model();
        String problem = !teacher.train().method().equals("edm") ? "the teacher was trained with method = " + teacher.train().method() + ", not edm"
                : tm.inputDim() != m.inputDim() ? "input_dim " + tm.inputDim() + " in the teacher, " + m.inputDim() + " in the student"
                : tm.sigmaMin() != m.sigmaMin() ? "sigma_min " + tm.sigmaMin() + " in the teacher, " + m.sigmaMin() + " in the student"
                : tm.sigmaMax() != m.sigmaMax() ? "sigma_max " + tm.sigmaMax() + " in the teacher, " + m.sigmaMax() + " in the student"
                : null;
        if (problem != null) throw new TeacherMismatchException(where(s) + " does not fit " + s.fileName() + ": " + problem);
        student.withTeacher(teacher, weights);
        if (student.step() != 0 || !sameTrunk(m, tm)) return false;
        startFromTeacher(student, weights);
        return true;
    }

    /**
     * The spec inside train.teacher's checkpoint: what a distillation step's teacher kernels are compiled from.
     * An error names the student's file and key, and what is wrong with the checkpoint.
     */
    public static Spec teacherSpec(Spec student) {
        Path file = Path.of(student.train().teacher());
        try {
            return SpecLoader.fromText(file + " [spec in metadata]", Checkpoint.specText(file));
        } catch (IOException e) {
            throw new TeacherMismatchException(where(student) + ": " + e.getMessage());
        } catch (SpecException e) {
            throw new TeacherMismatchException(where(student) + ": the spec inside the teacher checkpoint does not validate: " + e.getMessage());
        }
    }

    private static String where(Spec student) {
        return student.fileName() + " (train.teacher = \"" + student.train().teacher() + "\")";
    }

    /** Whether the teacher's weights fit the student's layout one for one. */
    static boolean sameTrunk(Spec.Model a, Spec.Model b) {
        return a.hiddenSize() == b.hiddenSize() && a.numLayers() == b.numLayers() && a.expansion() == b.expansion()
                && a.activation().equals(b.activation()) && a.inputScaling().equals(b.inputScaling());
    }

    /**
     * A fresh student starts as the teacher (online, target and sampling weights), as Song et al. (2023)
     * initialise CD: the student then only has to learn to jump along trajectories the teacher already knows.
     */
    private static void startFromTeacher(ConsistencyModel student, float[] weights) {
        for (float[] w : new float[][]{student.params(), student.target(), student.ema()}) System.arraycopy(weights, 0, w, 0, w.length);
        student.weightsChanged();
    }
}
