package dev.cmc.runtime;

import dev.cmc.dsl.Spec;
import dev.cmc.runtime.jvm.JvmBackend;

import java.util.List;

/** Picks the backend a run uses: the flag, else the spec's target.backend; auto takes the best available. */
public final class Backends {
    private Backends() {}

    /** Backends this build can run, best first; jvm is always there. */
    public static List<String> available() {
        return List.of("jvm");
    }

    /** A clear refusal, naming where the choice came from. */
    public static final class UnavailableException extends RuntimeException {
        public UnavailableException(String message) { super(message); }
    }

    public static Backend select(Spec spec, String flag) {
        String where = flag != null ? "--backend " + flag : "target.backend = " + spec.target().backend() + " in " + spec.fileName();
        String name = flag != null ? flag : spec.target().backend();
        if (name.equals("auto")) name = available().getFirst();
        if (!available().contains(name)) {
            boolean known = List.of("opencl", "cuda", "tornado").contains(name);
            throw new UnavailableException(where + ": " + (known ? "this build has no " + name + " backend yet" : "no such backend")
                    + "; available: auto, " + String.join(", ", available()));
        }
        if (!spec.target().precision().equals("fp32")) {
            throw new UnavailableException("target.precision = " + spec.target().precision() + " in " + spec.fileName()
                    + ": the " + name + " backend computes in fp32; set precision = fp32");
        }
        return new JvmBackend();
    }
}
