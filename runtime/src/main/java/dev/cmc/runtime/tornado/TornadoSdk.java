package dev.cmc.runtime.tornado;

import java.io.IOException;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.List;
import java.util.concurrent.TimeUnit;
import java.util.stream.Stream;

/**
 * A TornadoVM SDK the user installed: $TORNADOVM_HOME (set in tornado.env) with its tornado-argfile and jars.
 * cmc never links against it; generated programs are compiled against its API jar and run in a child JVM
 * launched with its argfile.
 */
public final class TornadoSdk {
    private final Path home;

    private TornadoSdk(Path home) {
        this.home = home;
    }

    /** The SDK named by -Dtornado.home or $TORNADOVM_HOME; throws with what to do when there is none. */
    public static TornadoSdk find() {
        String why = unavailable();
        if (why != null) throw new IllegalStateException(why);
        return new TornadoSdk(Path.of(homeSetting()));
    }

    private static String homeSetting() {
        String home = System.getProperty("tornado.home");
        return home != null && !home.isBlank() ? home : System.getenv("TORNADOVM_HOME");
    }

    /** Why the tornado backend cannot run here, in one line, or null if the SDK is in place. */
    public static String unavailable() {
        String home = homeSetting();
        if (home == null || home.isBlank()) {
            return "TornadoVM is not installed: set TORNADOVM_HOME in tornado.env to a TornadoVM SDK (built for JDK 25, OpenCL backend)";
        }
        Path h = Path.of(home);
        if (!Files.isRegularFile(h.resolve("tornado-argfile"))) {
            return "TORNADOVM_HOME=" + home + " has no tornado-argfile: point it at an installed TornadoVM SDK (the folder with bin/, share/ and tornado-argfile)";
        }
        if (apiJar(h) == null) return "TORNADOVM_HOME=" + home + " has no share/java/tornado/tornado-api-*.jar: is it a TornadoVM SDK?";
        return null;
    }

    private static Path apiJar(Path home) {
        try (Stream<Path> jars = Files.list(home.resolve("share/java/tornado"))) {
            return jars.filter(p -> p.getFileName().toString().matches("tornado-api-.*\\.jar")).findFirst().orElse(null);
        } catch (IOException e) {
            return null;
        }
    }

    public Path home() { return home; }

    /** The jar generated programs are compiled against. */
    public Path apiJar() { return apiJar(home); }

    /**
     * OpenCL C build options for the kernels TornadoVM generates: IEEE float, as cmc's own OpenCL backend builds.
     * TornadoVM's defaults (-cl-mad-enable -cl-fast-relaxed-math, and in its own compiler mul+add fused into
     * fma, native_ math functions and "fast math" rewrites, all turned off below) trade accuracy for speed, and
     * its results would no longer follow the other backends' step for step.
     */
    static final String OPENCL_FLAGS = "-cl-std=CL1.2 -w";

    /**
     * The command that runs a generated program: this JDK's java with the SDK's argfile; bail-outs turned into
     * errors (TornadoVM would otherwise run a graph it cannot compile as plain Java, silently); room for the
     * bytecode of a whole training step (TornadoVM's default 4 KiB holds about 30 tasks, and a graph that
     * outgrows it bails out without saying why). CMC_TORNADO_OPTS adds JVM options (-Dtornado.debug=True...).
     */
    public List<String> javaCommand(Path classes, String mainClass, String... args) {
        var cmd = new ArrayList<String>(List.of(Path.of(System.getProperty("java.home"), "bin", "java").toString(),
                "@" + home.resolve("tornado-argfile"), "-Dtornado.recover.bailout=False", "-Dtornado.tvm.maxbytecodesize=262144",
                "-Dtornado.opencl.compiler.flags=" + OPENCL_FLAGS, "-Dtornado.enable.fma=False", "-Dtornado.enable.nativeFunctions=False",
                "-Dtornado.enable.mathOptimizations=False", "-Dtornado.enable.fastMathOptimizations=False"));
        String extra = System.getenv("CMC_TORNADO_OPTS");
        if (extra != null && !extra.isBlank()) cmd.addAll(List.of(extra.strip().split("\\s+")));
        cmd.addAll(List.of("-cp", classes.toString(), mainClass));
        cmd.addAll(List.of(args));
        return cmd;
    }

    /** TornadoVM's own device list (its TornadoDeviceQuery), one line per device: "0:0 OPENCL -- [platform] -- name". */
    public List<String> devices() {
        var cmd = List.of(Path.of(System.getProperty("java.home"), "bin", "java").toString(), "@" + home.resolve("tornado-argfile"),
                "-m", "tornado.drivers.common/uk.ac.manchester.tornado.drivers.TornadoDeviceQuery");
        try {
            Process p = new ProcessBuilder(cmd).redirectErrorStream(true).start();
            String out = new String(p.getInputStream().readAllBytes()).replaceAll("\u001B\\[[0-9;]*m", "");
            if (!p.waitFor(60, TimeUnit.SECONDS) || p.exitValue() != 0) return List.of("(TornadoVM's device query failed: " + lastLine(out) + ")");
            var devices = new ArrayList<String>();
            String[] lines = out.split("\n");
            for (int i = 0; i < lines.length; i++) {
                String l = lines[i].strip();
                if (l.startsWith("Tornado device=") && i + 1 < lines.length) {
                    devices.add(l.substring("Tornado device=".length()).replace("(DEFAULT)", "").strip() + " " + lines[i + 1].strip());
                }
            }
            return devices;
        } catch (IOException e) {
            return List.of("(TornadoVM's device query could not start: " + e.getMessage() + ")");
        } catch (InterruptedException e) {
            Thread.currentThread().interrupt();
            return List.of();
        }
    }

    static String lastLine(String text) {
        String[] lines = text.strip().split("\n");
        return lines.length == 0 ? "" : lines[lines.length - 1];
    }
}
