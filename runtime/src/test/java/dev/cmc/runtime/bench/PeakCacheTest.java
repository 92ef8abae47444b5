package dev.cmc.runtime.bench;

import dev.cmc.kernel.Program;
import dev.cmc.runtime.Backend;
import dev.cmc.runtime.Executable;
import org.junit.jupiter.api.AfterEach;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

import java.nio.file.Path;
import java.util.Map;

import static org.junit.jupiter.api.Assertions.*;

/** A device's peak is measured once per backend, cached on disk, and shared: the best probe on that silicon. */
class PeakCacheTest {
    /** A backend whose probe returns a fixed figure and counts how often it ran. */
    static final class Probe implements Backend {
        final String name, key;
        final double gflops;
        int measured;

        Probe(String name, String key, double gflops) { this.name = name; this.key = key; this.gflops = gflops; }

        public String name() { return name; }
        public String peakKey() { return key; }
        public Map<String, String> render(Program p, String h) { return Map.of(); }
        public Executable load(Program p, int b) { throw new UnsupportedOperationException(); }
        public double measurePeakGflops() { measured++; return gflops; }
    }

    @AfterEach
    void clear() { System.clearProperty("cmc.cache"); }

    @Test
    void measuredOncePerBackendAndTheBestProbeOnADeviceWins(@TempDir Path dir) {
        System.setProperty("cmc.cache", dir.toString());
        var jvm = new Probe("jvm", "cpu | X | 2 threads", 210);
        var cl = new Probe("opencl", "cpu | X | 2 threads", 420);
        var gpu = new Probe("cuda", "cuda | Y", 60000);
        assertEquals(210, PeakCache.peakGflops(jvm));
        assertEquals(420, PeakCache.peakGflops(cl), "same CPU: the better probe is the device's peak");
        assertEquals(420, PeakCache.peakGflops(jvm), "the jvm backend now sees the CPU's peak too");
        assertEquals(60000, PeakCache.peakGflops(gpu), "another device keeps its own");
        assertEquals(1, jvm.measured, "cached after the first measurement");
        assertEquals(1, cl.measured);
        var again = new Probe("jvm", "cpu | X | 2 threads", 999);
        assertEquals(420, PeakCache.peakGflops(again), "read from disk, not measured again");
        assertEquals(0, again.measured);
    }
}
