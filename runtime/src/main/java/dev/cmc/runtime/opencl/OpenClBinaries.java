package dev.cmc.runtime.opencl;

import dev.cmc.kernel.Program;
import dev.cmc.render.OpenClRenderer;

import java.io.*;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.security.MessageDigest;
import java.security.NoSuchAlgorithmException;
import java.util.HexFormat;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;

/**
 * Offline-built OpenCL programs, for toolchains (FPGAs) that cannot compile at run time. One file holds the
 * device binaries of a spec's programs, each with the SHA-256 of the OpenCL C it came from, and the device
 * it was built for. Loading refuses a file built for another device or from another spec's kernels.
 */
public final class OpenClBinaries {
    private static final String MAGIC = "cmc-opencl-binaries 1";

    private OpenClBinaries() {}

    public record Entry(String sourceHash, byte[] binary) {}

    public record Container(String device, Map<String, Entry> programs) {}

    /** A file that cannot be used here, with the reason. */
    public static final class RefusedException extends RuntimeException {
        public RefusedException(String message) { super(message); }
    }

    /** Builds every program on the device and writes their binaries to file (temp file, then rename). */
    public static void emit(OpenClDevices.Device device, List<Program> programs, Path file) throws IOException {
        var out = new ByteArrayOutputStream();
        try (var data = new DataOutputStream(out)) {
            data.writeUTF(MAGIC);
            data.writeUTF(device.name());
            data.writeInt(programs.size());
            for (Program p : programs) {
                var style = new OpenClBackend(device.index()).style();
                String source = OpenClRenderer.render(p, "program " + p.name(), style);
                try (var exe = new OpenClExecutable(device, p, source, null, 1, style)) {
                    byte[] bin = exe.binary();
                    data.writeUTF(p.name());
                    data.writeUTF(sha256(source));
                    data.writeInt(bin.length);
                    data.write(bin);
                }
            }
        }
        Path tmp = file.resolveSibling("." + file.getFileName() + ".tmp");
        Files.write(tmp, out.toByteArray());
        Files.move(tmp, file, java.nio.file.StandardCopyOption.REPLACE_EXISTING, java.nio.file.StandardCopyOption.ATOMIC_MOVE);
    }

    public static Container read(Path file) {
        if (!Files.isRegularFile(file)) throw new RefusedException(file + ": no such kernel binary file");
        try (var in = new DataInputStream(new BufferedInputStream(Files.newInputStream(file)))) {
            if (!MAGIC.equals(in.readUTF())) throw new RefusedException(file + ": not a cmc OpenCL binary (write one with cmc compile --target opencl --emit-binary)");
            String device = in.readUTF();
            int n = in.readInt();
            var programs = new LinkedHashMap<String, Entry>();
            for (int i = 0; i < n; i++) {
                String name = in.readUTF(), hash = in.readUTF();
                byte[] bin = new byte[in.readInt()];
                in.readFully(bin);
                programs.put(name, new Entry(hash, bin));
            }
            return new Container(device, programs);
        } catch (IOException e) {
            throw new RefusedException(file + ": not a cmc OpenCL binary or truncated (" + e.getMessage() + ")");
        }
    }

    /** The binary for this program on this device, or a refusal that says what does not match. */
    static byte[] find(Container c, Path file, OpenClDevices.Device device, Program program, String source) {
        if (!c.device().equals(device.name())) {
            throw new RefusedException(file + ": built for device '" + c.device() + "', but this device is '" + device.name() + "'; rebuild it here");
        }
        Entry e = c.programs().get(program.name());
        if (e == null) {
            throw new RefusedException(file + ": holds programs " + c.programs().keySet() + ", not " + program.name() + ": it was built for another spec");
        }
        if (!e.sourceHash().equals(sha256(source))) {
            throw new RefusedException(file + ": program " + program.name() + " was built from other kernels (the spec changed since); rebuild it with cmc compile --emit-binary");
        }
        return e.binary();
    }

    static String sha256(String text) {
        try {
            return HexFormat.of().formatHex(MessageDigest.getInstance("SHA-256").digest(text.getBytes(StandardCharsets.UTF_8)));
        } catch (NoSuchAlgorithmException e) {
            throw new IllegalStateException(e);
        }
    }
}
