package dev.cmc.runtime;

import dev.cmc.dsl.Spec;
import dev.cmc.runtime.jvm.JvmBackend;
import dev.cmc.runtime.opencl.OpenClBackend;
import dev.cmc.runtime.opencl.OpenClDevices;

import java.util.ArrayList;
import java.util.List;

/**
 * Picks the backend a run uses: the --backend flag (NAME or NAME:DEVICE), else the spec's target.backend and
 * target.device. auto takes an OpenCL GPU; on CPUs it takes the faster backend for the model's size, as
 * measured on this project's 2-core machine: PoCL for large models (seed model: 54k vs 41k samples/s,
 * 30 vs 32 ms a step), the jvm backend for small ones, where OpenCL's per-launch cost dominates
 * (413k-parameter swiss roll: 60 vs 46 steps/s).
 */
public final class Backends {
    private Backends() {}

    /** A clear refusal, naming where the choice came from. */
    public static final class UnavailableException extends RuntimeException {
        public UnavailableException(String message) { super(message); }
    }

    /** Backends this machine can run, best first, as NAME:DEVICE; jvm:0 is always last. */
    public static List<String> available() {
        var out = new ArrayList<String>();
        if (dev.cmc.runtime.cuda.CudaDevices.unavailable() == null) {
            for (var d : dev.cmc.runtime.cuda.CudaDevices.list()) if (d.major() >= 8) out.add("cuda:" + d.index());
        }
        var cl = OpenClDevices.list();
        for (var d : cl) if (d.isGpu()) out.add("opencl:" + d.index());
        for (var d : cl) if (!d.isGpu()) out.add("opencl:" + d.index());
        out.add("jvm:0");
        return out;
    }

    /** Models from this many parameters up run faster on PoCL than on the jvm backend (see above). */
    public static final long OPENCL_CPU_MIN_PARAMS = 1_000_000;

    /** What auto picks here for a model of this many parameters. */
    public static String autoChoice(long params) {
        for (String b : available()) {
            if (b.startsWith("cuda:")) return b;
            if (!b.startsWith("opencl:")) continue;
            var d = OpenClDevices.list().get(Integer.parseInt(b.substring(7)));
            if (d.isGpu() || params >= OPENCL_CPU_MIN_PARAMS) return b;
        }
        return "jvm:0";
    }

    public static Backend select(Spec spec, String flag) {
        String where = flag != null ? "--backend " + flag : "target.backend = " + spec.target().backend() + " in " + spec.fileName();
        String requested = flag != null ? flag : spec.target().backend();
        String name = requested.contains(":") ? requested.substring(0, requested.indexOf(':')) : requested;
        int device = spec.target().device();
        if (requested.contains(":")) {
            try {
                device = Integer.parseInt(requested.substring(requested.indexOf(':') + 1));
            } catch (NumberFormatException e) {
                throw new UnavailableException(where + ": expected NAME or NAME:DEVICE such as opencl:0");
            }
        }
        if (name.equals("auto")) {
            String pick = autoChoice(new dev.cmc.model.ConsistencyModelGraph(spec.model()).layout().total());
            name = pick.substring(0, pick.indexOf(':'));
            device = Integer.parseInt(pick.substring(pick.indexOf(':') + 1));
        }
        String precision = spec.target().precision();
        if (!precision.equals("fp32") && !name.equals("cuda")) {
            throw new UnavailableException("target.precision = " + precision + " in " + spec.fileName() + ": the " + name
                    + " backend computes in fp32; set precision = fp32, or backend = cuda for tf32 or bf16 tensor-core GEMMs");
        }
        return switch (name) {
            case "jvm" -> new JvmBackend();
            case "opencl" -> {
                String why = OpenClDevices.unavailable();
                if (why != null) throw new UnavailableException(where + ": " + why);
                int n = OpenClDevices.list().size();
                if (device < 0 || device >= n) throw new UnavailableException(where + ": no OpenCL device " + device + "; devices are 0.." + (n - 1) + " (cmc devices lists them)");
                var cl = new OpenClBackend(device);
                if (!spec.target().kernelBinary().isEmpty()) {
                    try {
                        cl.withBinaries(java.nio.file.Path.of(spec.target().kernelBinary()));
                    } catch (dev.cmc.runtime.opencl.OpenClBinaries.RefusedException e) {
                        throw new UnavailableException("target.kernel_binary in " + spec.fileName() + ": " + e.getMessage());
                    }
                }
                yield cl;
            }
            case "cuda" -> {
                String why = dev.cmc.runtime.cuda.CudaDevices.unavailable();
                if (why != null) throw new UnavailableException(where + ": " + why + "; available: auto, " + String.join(", ", available()));
                int n = dev.cmc.runtime.cuda.CudaDevices.list().size();
                if (device < 0 || device >= n) throw new UnavailableException(where + ": no CUDA device " + device + "; devices are 0.." + (n - 1) + " (cmc devices lists them)");
                yield new dev.cmc.runtime.cuda.CudaBackend(device).withPrecision(precision);
            }
            case "tornado" -> {
                String why = dev.cmc.runtime.tornado.TornadoSdk.unavailable();
                if (why != null) throw new UnavailableException(where + ": " + why + "; available: auto, " + String.join(", ", available()));
                yield new dev.cmc.runtime.tornado.TornadoBackend();
            }
            default -> throw new UnavailableException(where + ": no such backend; valid: auto, jvm, opencl, cuda, tornado");
        };
    }
}
