package dev.cmc.runtime.opencl;

import dev.cmc.kernel.Program;

import java.io.IOException;
import java.nio.file.Files;
import java.nio.file.Path;
import java.nio.file.StandardCopyOption;

/**
 * Built programs kept on disk, keyed by the SHA-256 of the device and the generated source, so a spec that
 * did not change loads in milliseconds on every platform (not only where the driver caches). A stale or
 * unreadable entry is rebuilt from source; the cache never decides what runs, the source does.
 */
final class ProgramCache {
    private ProgramCache() {}

    static Path dir() {
        String xdg = System.getenv("XDG_CACHE_HOME");
        Path base = xdg != null && !xdg.isBlank() ? Path.of(xdg) : Path.of(System.getProperty("user.home"), ".cache");
        return base.resolve("cmc").resolve("opencl");
    }

    static OpenClExecutable load(OpenClDevices.Device device, Program program, String source, int maxBatch, dev.cmc.render.OpenClRenderer.Style style) {
        // PoCL keeps its own cache (~/.cache/pocl), and asking it for binaries compiles every kernel a second
        // time (it specialises them again at first launch): there a cache of ours costs more than it saves.
        if (device.platformName().contains("Portable Computing Language")) return new OpenClExecutable(device, program, source, null, maxBatch, style);
        Path entry = dir().resolve(OpenClBinaries.sha256(device.platformName() + "\n" + device.name() + "\n" + device.openClC() + "\n" + source) + ".bin");
        if (Files.isRegularFile(entry)) {
            try {
                return new OpenClExecutable(device, program, source, Files.readAllBytes(entry), maxBatch, style);
            } catch (IOException | CL.ClException e) {
                // A corrupt or foreign entry: fall through and rebuild it.
            }
        }
        var exe = new OpenClExecutable(device, program, source, null, maxBatch, style);
        try {
            Files.createDirectories(entry.getParent());
            Path tmp = Files.createTempFile(entry.getParent(), ".entry", ".tmp");
            Files.write(tmp, exe.binary());
            Files.move(tmp, entry, StandardCopyOption.REPLACE_EXISTING, StandardCopyOption.ATOMIC_MOVE);
        } catch (IOException | RuntimeException e) {
            // Caching is an optimisation: a read-only home must not stop a run.
        }
        return exe;
    }
}
