package dev.cmc.kernel;

import org.junit.jupiter.api.Test;

import static org.junit.jupiter.api.Assertions.*;

/** The counter-based normal generator: its distribution, and the independence of neighbours and of seeds. */
class NoiseTest {
    private static final int N = 400_000;

    @Test
    void drawsAreStandardNormal() {
        double[] z = draw(12_345, N);
        double mean = 0, var = 0;
        for (double v : z) mean += v;
        mean /= N;
        for (double v : z) var += (v - mean) * (v - mean);
        var /= N - 1;
        // Standard errors at N = 400,000: 0.0016 for the mean and 0.0022 for the variance; these bounds are 4 of them.
        assertEquals(0, mean, 0.0064, "mean");
        assertEquals(1, var, 0.009, "variance");
        java.util.Arrays.sort(z);
        double ks = 0;
        for (int i = 0; i < N; i++) {
            double cdf = phi(z[i]);
            ks = Math.max(ks, Math.max(Math.abs(cdf - (double) i / N), Math.abs(cdf - (double) (i + 1) / N)));
        }
        // The Kolmogorov–Smirnov statistic's 0.1% critical value is 1.95/√N = 0.0031.
        assertTrue(ks < 0.0031, "Kolmogorov-Smirnov distance " + ks);
        assertTrue(z[N - 1] <= Math.sqrt(48 * Math.log(2)) + 1e-12 && z[0] >= -Math.sqrt(48 * Math.log(2)) - 1e-12, "tails bounded by u1 >= 2^-24");
    }

    @Test
    void neighboursAndSeedsAreUncorrelated() {
        double[] a = draw(7, N), b = draw(8, N);
        double lag1 = 0, lag2 = 0, seeds = 0;
        for (int i = 0; i + 2 < N; i++) {
            lag1 += a[i] * a[i + 1];
            lag2 += a[i] * a[i + 2];
            seeds += a[i] * b[i];
        }
        // Each is about N(0, 1/N): 4 standard errors are 0.0063.
        assertEquals(0, lag1 / N, 0.0063, "element i against i + 1 (the two columns of a row)");
        assertEquals(0, lag2 / N, 0.0063, "element i against i + 2");
        assertEquals(0, seeds / N, 0.0063, "seed 7 against seed 8");
        assertNotEquals(Noise.gaussian(7, 0), Noise.gaussian(8, 0));
    }

    /** Avalanche: flipping any one input bit flips each output bit with probability about 1/2, so counters i and i + 1 share nothing. */
    @Test
    void mixAvalanches() {
        var rng = new java.util.SplittableRandom(3);
        int trials = 20_000;
        for (int bit = 0; bit < 32; bit++) {
            long flipped = 0;
            for (int t = 0; t < trials; t++) {
                int x = rng.nextInt();
                flipped += Integer.bitCount(Noise.mix(x) ^ Noise.mix(x ^ (1 << bit)));
            }
            double mean = (double) flipped / trials;
            assertEquals(16, mean, 0.25, "output bits flipped by input bit " + bit);
        }
    }

    private static double[] draw(int seed, int n) {
        double[] z = new double[n];
        for (int i = 0; i < n; i++) z[i] = Noise.gaussian(seed, i);
        return z;
    }

    /** The standard normal CDF, by the Abramowitz–Stegun 7.1.26 erf (error below 1.5e-7). */
    private static double phi(double x) {
        double t = 1 / (1 + 0.3275911 * Math.abs(x) / Math.sqrt(2));
        double y = 1 - (((((1.061405429 * t - 1.453152027) * t) + 1.421413741) * t - 0.284496736) * t + 0.254829592) * t * Math.exp(-x * x / 2);
        return x >= 0 ? 0.5 * (1 + y) : 0.5 * (1 - y);
    }
}
