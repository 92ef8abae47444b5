package dev.cmc.runtime.tornado;

import dev.cmc.kernel.Program;
import dev.cmc.render.TornadoRenderer;
import dev.cmc.runtime.Executable;
import dev.cmc.runtime.GeneratedSource;

import javax.tools.DiagnosticCollector;
import javax.tools.JavaFileObject;
import javax.tools.ToolProvider;
import java.io.*;
import java.nio.ByteBuffer;
import java.nio.ByteOrder;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.security.MessageDigest;
import java.util.HexFormat;
import java.util.List;
import java.util.concurrent.TimeUnit;

/**
 * A program on TornadoVM: its generated task-graph class compiled with javac -g against the SDK's API jar
 * (without the local-variable table TornadoVM's OpenCL compiler has crashed and fallen back to Java), then
 * run in a child JVM on the SDK's argfile that keeps the arrays and serves writes, reads and runs over a pipe.
 * TornadoVM JIT-compiles the kernels on the first run. A failure in the child arrives as an exception here,
 * with its message and the path of the child's log.
 */
public final class TornadoExecutable implements Executable {
    private static final int CHUNK_FLOATS = 1 << 16;

    private final Program program;
    private final int maxBatch;
    private final Process child;
    private final DataOutputStream out;
    private final DataInputStream in;
    private final Path log;
    private final byte[] bytes = new byte[4 * CHUNK_FLOATS];

    TornadoExecutable(TornadoSdk sdk, Program program, String source, int maxBatch) {
        this.program = program;
        this.maxBatch = maxBatch;
        Path classes = compile(sdk, program, source);
        try {
            log = Files.createTempFile("cmc-tornado-" + program.name() + "-", ".log");
            child = new ProcessBuilder(sdk.javaCommand(classes, TornadoRenderer.qualifiedName(program), Integer.toString(maxBatch)))
                    .redirectError(log.toFile()).start();
        } catch (IOException e) {
            throw new IllegalStateException("could not start TornadoVM's JVM: " + e.getMessage(), e);
        }
        out = new DataOutputStream(new BufferedOutputStream(child.getOutputStream(), 1 << 20));
        in = new DataInputStream(new BufferedInputStream(child.getInputStream(), 1 << 20));
    }

    /** javac -g, once per distinct source (cached under the temp folder by its hash). */
    static Path compile(TornadoSdk sdk, Program program, String source) {
        try {
            String hash = HexFormat.of().formatHex(MessageDigest.getInstance("SHA-256").digest((sdk.apiJar() + source).getBytes(StandardCharsets.UTF_8))).substring(0, 16);
            Path dir = Path.of(System.getProperty("java.io.tmpdir"), "cmc-tornado", hash);
            Path done = dir.resolve("classes.ok");
            if (Files.exists(done)) return dir.resolve("classes");
            Path src = dir.resolve("src").resolve(TornadoRenderer.PACKAGE.replace('.', '/')).resolve(TornadoRenderer.className(program) + ".java");
            Files.createDirectories(src.getParent());
            Files.writeString(src, source);
            var javac = ToolProvider.getSystemJavaCompiler();
            if (javac == null) throw new IllegalStateException("the tornado backend compiles generated Java: run cmc on a JDK (JAVA_HOME in tornado.env), not a JRE");
            var diagnostics = new DiagnosticCollector<JavaFileObject>();
            try (var files = javac.getStandardFileManager(diagnostics, null, StandardCharsets.UTF_8)) {
                var units = files.getJavaFileObjects(src.toFile());
                var options = List.of("-g", "-nowarn", "-cp", sdk.apiJar().toString(), "-d", dir.resolve("classes").toString());
                if (!javac.getTask(null, files, diagnostics, options, null, units).call()) {
                    String where = GeneratedSource.saveForDiagnosis(program.name(), ".java", source);
                    throw new IllegalStateException("javac rejected the TornadoVM program " + program.name() + " (saved at " + where + "):\n"
                            + diagnostics.getDiagnostics().stream().limit(5).map(Object::toString).reduce("", (a, b) -> a + b + "\n"));
                }
            }
            Files.writeString(done, "");
            return dir.resolve("classes");
        } catch (IOException | java.security.NoSuchAlgorithmException e) {
            throw new IllegalStateException("could not compile the TornadoVM program " + program.name() + ": " + e.getMessage(), e);
        }
    }

    @Override
    public void write(String array, float[] src, int count) {
        int i = program.arrayIndex(array);
        try {
            out.write('W');
            out.writeInt(i);
            out.writeInt(count);
            for (int done = 0; done < count; ) {
                int n = Math.min(count - done, CHUNK_FLOATS);
                ByteBuffer.wrap(bytes, 0, 4 * n).order(ByteOrder.LITTLE_ENDIAN).asFloatBuffer().put(src, done, n);
                out.write(bytes, 0, 4 * n);
                done += n;
            }
            out.flush();
            expectOk("writing " + array);
        } catch (IOException e) {
            throw died("writing " + array, e);
        }
    }

    @Override
    public void read(String array, float[] dst, int count) {
        int i = program.arrayIndex(array);
        try {
            out.write('R');
            out.writeInt(i);
            out.writeInt(count);
            out.flush();
            expectOk("reading " + array);
            for (int done = 0; done < count; ) {
                int n = Math.min(count - done, CHUNK_FLOATS);
                in.readFully(bytes, 0, 4 * n);
                ByteBuffer.wrap(bytes, 0, 4 * n).order(ByteOrder.LITTLE_ENDIAN).asFloatBuffer().get(dst, done, n);
                done += n;
            }
        } catch (IOException e) {
            throw died("reading " + array, e);
        }
    }

    @Override
    public void run(int batch) {
        if (batch > maxBatch || batch < 1) throw new IllegalArgumentException("batch " + batch + " outside 1.." + maxBatch);
        try {
            out.write('X');
            out.writeInt(batch);
            out.flush();
            expectOk("running " + program.name());
        } catch (IOException e) {
            throw died("running " + program.name(), e);
        }
    }

    private void expectOk(String what) throws IOException {
        int reply = in.read();
        if (reply == 'K') return;
        if (reply == 'E') throw new IllegalStateException("TornadoVM failed " + what + ": " + in.readUTF().strip() + "\n(TornadoVM's log: " + log + ")");
        throw died(what, null);
    }

    private IllegalStateException died(String what, IOException cause) {
        String tail;
        try {
            child.waitFor(2, TimeUnit.SECONDS);
            List<String> lines = Files.readAllLines(log);
            tail = String.join("\n", lines.subList(Math.max(0, lines.size() - 15), lines.size()));
        } catch (IOException | InterruptedException e) {
            tail = "(no log)";
        }
        return new IllegalStateException("TornadoVM's JVM stopped while " + what + (child.isAlive() ? "" : " (exit " + child.exitValue() + ")")
                + "; the end of its log " + log + ":\n" + tail, cause);
    }

    @Override
    public int maxBatch() { return maxBatch; }

    @Override
    public void close() {
        try {
            out.write('Q');
            out.flush();
            in.read();
        } catch (IOException ignored) {
            // the child is gone already
        }
        try {
            if (!child.waitFor(10, TimeUnit.SECONDS)) child.destroyForcibly();
        } catch (InterruptedException e) {
            child.destroyForcibly();
            Thread.currentThread().interrupt();
        }
    }
}
