package dev.cmc.runtime.bench;

import dev.cmc.runtime.Backend;

import java.io.IOException;
import java.io.Reader;
import java.io.Writer;
import java.nio.file.Files;
import java.nio.file.Path;
import java.nio.file.StandardCopyOption;
import java.util.Properties;

/**
 * Each device's measured FMA peak, kept in ~/.cache/cmc/peak-gflops.properties (or under $CMC_CACHE, or the
 * system property cmc.cache) so that it is
 * timed once per device and backend, not once per benchmark. A device's peak is the best that any backend's
 * probe reached on it: on this machine's CPU, PoCL's float16 FMAs reach about twice what the JVM's do.
 */
public final class PeakCache {
    private PeakCache() {}

    static Path file() {
        String dir = System.getProperty("cmc.cache", System.getenv("CMC_CACHE"));
        return (dir != null ? Path.of(dir) : Path.of(System.getProperty("user.home"), ".cache", "cmc")).resolve("peak-gflops.properties");
    }

    /** The cached peak for this backend's device, measured and stored first if absent. NaN if unmeasurable. */
    public static synchronized double peakGflops(Backend backend) {
        String key = backend.peakKey() + " | by " + backend.name();
        Properties p = new Properties();
        Path f = file();
        if (Files.exists(f)) {
            try (Reader r = Files.newBufferedReader(f)) { p.load(r); } catch (IOException | IllegalArgumentException e) { p.clear(); }
        }
        if (parse(p.getProperty(key)) > 0) return best(p, backend.peakKey());
        double measured = backend.measurePeakGflops();
        if (Double.isNaN(measured)) return best(p, backend.peakKey());
        p.setProperty(key, Double.toString(measured));
        try {
            Files.createDirectories(f.getParent());
            Path tmp = Files.createTempFile(f.getParent(), "peak", ".tmp");
            try (Writer w = Files.newBufferedWriter(tmp)) { p.store(w, "cmc: measured fp32 FMA peak per device (GFLOP/s); delete to measure again"); }
            Files.move(tmp, f, StandardCopyOption.REPLACE_EXISTING, StandardCopyOption.ATOMIC_MOVE);
        } catch (IOException e) {
            // an unwritable cache only costs a re-measurement next time
        }
        return best(p, backend.peakKey());
    }

    private static double best(Properties p, String device) {
        double best = Double.NaN;
        for (String k : p.stringPropertyNames()) {
            double v = parse(p.getProperty(k));
            if (k.startsWith(device + " | by ") && v > 0 && !(v <= best)) best = v;
        }
        return best;
    }

    private static double parse(String v) {
        try { return v == null ? -1 : Double.parseDouble(v); } catch (NumberFormatException e) { return -1; }
    }
}
