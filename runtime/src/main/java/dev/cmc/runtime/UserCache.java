package dev.cmc.runtime;

import java.io.IOException;
import java.io.Reader;
import java.io.Writer;
import java.nio.file.Files;
import java.nio.file.Path;
import java.nio.file.StandardCopyOption;
import java.util.Properties;

/**
 * Where cmc keeps what it measured on this machine (each device's FMA peak, the split-K slice counts timed on a
 * GPU): properties files in ~/.cache/cmc, or $CMC_CACHE, or the system property cmc.cache. Losing one only costs
 * measuring again, so an unreadable file reads as empty and an unwritable one is left as it is.
 */
public final class UserCache {
    private UserCache() {}

    public static Path file(String name) {
        String dir = System.getProperty("cmc.cache", System.getenv("CMC_CACHE"));
        return (dir != null ? Path.of(dir) : Path.of(System.getProperty("user.home"), ".cache", "cmc")).resolve(name);
    }

    public static Properties load(String name) {
        Properties p = new Properties();
        Path f = file(name);
        if (Files.exists(f)) {
            try (Reader r = Files.newBufferedReader(f)) { p.load(r); } catch (IOException | IllegalArgumentException e) { p.clear(); }
        }
        return p;
    }

    /** Written whole to a temporary file and moved over the old one, so that a reader never sees half of it. */
    public static void store(String name, Properties p, String comment) {
        Path f = file(name);
        try {
            Files.createDirectories(f.getParent());
            Path tmp = Files.createTempFile(f.getParent(), name, ".tmp");
            try (Writer w = Files.newBufferedWriter(tmp)) { p.store(w, comment); }
            Files.move(tmp, f, StandardCopyOption.REPLACE_EXISTING, StandardCopyOption.ATOMIC_MOVE);
        } catch (IOException e) {
            // an unwritable cache only costs measuring again next time
        }
    }
}
