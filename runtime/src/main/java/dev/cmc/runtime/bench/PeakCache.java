package dev.cmc.runtime.bench;

import dev.cmc.runtime.Backend;
import dev.cmc.runtime.UserCache;

import java.util.Properties;

/**
 * Each device's measured FMA peak, kept in peak-gflops.properties in the {@link UserCache} so that
 * it is timed once per device and backend, not once per benchmark. A device's peak is the best that any backend's
 * probe reached on it: on this machine's CPU, PoCL's float16 FMAs reach about twice what the JVM's do.
 */
public final class PeakCache {
    private PeakCache() {}

    private static final String FILE = "peak-gflops.properties";

    /** The cached peak for this backend's device, measured and stored first if absent. NaN if unmeasurable. */
    public static synchronized double peakGflops(Backend backend) {
        String key = backend.peakKey() + " | by " + backend.name();
        Properties p = UserCache.load(FILE);
        if (parse(p.getProperty(key)) > 0) return best(p, backend.peakKey());
        double measured = backend.measurePeakGflops();
        if (Double.isNaN(measured)) return best(p, backend.peakKey());
        p.setProperty(key, Double.toString(measured));
        UserCache.store(FILE, p, "cmc: measured fp32 FMA peak per device (GFLOP/s); delete to measure again");
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
