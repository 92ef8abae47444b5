package dev.cmc.runtime.cuda;

import dev.cmc.runtime.Notice;
import dev.cmc.runtime.SettingException;

import java.io.IOException;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.nio.file.StandardCopyOption;
import java.security.MessageDigest;
import java.security.NoSuchAlgorithmException;
import java.util.HexFormat;
import java.util.concurrent.atomic.AtomicBoolean;

/**
 * Kernels assembled ahead of time, so that a GPU's minutes are not spent in the driver's JIT (12 to 16 s for the
 * seed's CT step on an H200's host). Each PTX module is named by the SHA-256 of its text:
 * <ul>
 *   <li>CMC_CUDA_SAVE_PTX=DIR: the runtime writes every module it loads to DIR/HASH.ptx;</li>
 *   <li>ptxas assembles each, for the architecture its .target names: {@code ptxas -arch=sm_90 HASH.ptx -o HASH.cubin};</li>
 *   <li>CMC_CUDA_CUBINS=DIR: the runtime loads DIR/HASH.cubin where there is one, instead of the PTX.</li>
 * </ul>
 * A module without a cubin is JIT-compiled as ever, and so is one whose cubin the driver refuses (built for
 * another GPU, or by a newer ptxas than the driver knows), which is said once. `scripts/gpu-check.sh prepare`
 * assembles every module its stages load, on a machine with ptxas and no GPU.
 */
final class Cubins {
    private final Path cubins, savePtx;
    private final AtomicBoolean refusalSaid = new AtomicBoolean();

    private Cubins(Path cubins, Path savePtx) {
        this.cubins = cubins;
        this.savePtx = savePtx;
    }

    /** The folders CMC_CUDA_CUBINS and CMC_CUDA_SAVE_PTX name, if set; a cubin folder that is no folder is an error naming the setting. */
    static Cubins fromEnvironment() {
        String in = System.getenv("CMC_CUDA_CUBINS"), out = System.getenv("CMC_CUDA_SAVE_PTX");
        Path cubins = in == null || in.isBlank() ? null : Path.of(in.strip());
        if (cubins != null && !Files.isDirectory(cubins)) {
            throw new SettingException("CMC_CUDA_CUBINS=" + in + ": no such folder; it names a folder of HASH.cubin files (see CMC_CUDA_SAVE_PTX), or unset it");
        }
        return new Cubins(cubins, out == null || out.isBlank() ? null : Path.of(out.strip()));
    }

    /** The hex SHA-256 of a module's text: its name in both folders. */
    static String key(String ptx) {
        try {
            return HexFormat.of().formatHex(MessageDigest.getInstance("SHA-256").digest(ptx.getBytes(StandardCharsets.US_ASCII)));
        } catch (NoSuchAlgorithmException e) {
            throw new IllegalStateException("the JDK has no SHA-256", e);
        }
    }

    /** Writes the module to the PTX folder, if one is set (a file of that name is already this text); an error names the file. */
    void save(String ptx) {
        if (savePtx == null) return;
        Path file = savePtx.resolve(key(ptx) + ".ptx");
        try {
            if (Files.exists(file)) return;
            Files.createDirectories(savePtx);
            Path part = Files.createTempFile(savePtx, ".part-", ".ptx");
            Files.writeString(part, ptx, StandardCharsets.US_ASCII);
            Files.move(part, file, StandardCopyOption.ATOMIC_MOVE, StandardCopyOption.REPLACE_EXISTING);
        } catch (IOException e) {
            throw new SettingException("CMC_CUDA_SAVE_PTX=" + savePtx + ": cannot write " + file + " (" + e.getMessage() + ")");
        }
    }

    /** The cubin assembled from this module, or null where there is none (or no folder). */
    byte[] find(String ptx) {
        if (cubins == null) return null;
        Path file = cubins.resolve(key(ptx) + ".cubin");
        try {
            return Files.isRegularFile(file) ? Files.readAllBytes(file) : null;
        } catch (IOException e) {
            return null;   // unreadable: the PTX serves
        }
    }

    /** The driver refused a cubin: said once for the executable, whose modules then JIT as PTX. */
    void refused(String why) {
        if (refusalSaid.compareAndSet(false, true)) {
            Notice.say("cmc: cuda: the driver refused a cubin from CMC_CUDA_CUBINS=" + cubins + " (" + why + "); compiling the PTX instead");
        }
    }
}
