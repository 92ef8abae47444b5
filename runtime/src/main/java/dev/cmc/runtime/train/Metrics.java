package dev.cmc.runtime.train;

import java.util.Arrays;
import java.util.SplittableRandom;

/** Distances between sample sets: how close generated samples are to held-out data. */
public final class Metrics {
    private Metrics() {}

    /** Sliced Wasserstein-1: the mean over random unit directions of the 1-D Wasserstein distance of the projections. */
    public static double slicedWasserstein(float[] a, int na, float[] b, int nb, int dim, int projections, long seed) {
        int n = Math.min(na, nb);
        var rng = new SplittableRandom(seed);
        double total = 0;
        double[] pa = new double[n], pb = new double[n], dir = new double[dim];
        for (int p = 0; p < projections; p++) {
            double norm = 0;
            for (int j = 0; j < dim; j++) { dir[j] = rng.nextGaussian(); norm += dir[j] * dir[j]; }
            norm = Math.sqrt(norm);
            for (int i = 0; i < n; i++) {
                double sa = 0, sb = 0;
                for (int j = 0; j < dim; j++) { sa += a[i * dim + j] * dir[j]; sb += b[i * dim + j] * dir[j]; }
                pa[i] = sa / norm;
                pb[i] = sb / norm;
            }
            Arrays.sort(pa);
            Arrays.sort(pb);
            double w = 0;
            for (int i = 0; i < n; i++) w += Math.abs(pa[i] - pb[i]);
            total += w / n;
        }
        return total / projections;
    }

    /** Energy distance 2E‖X−Y‖ − E‖X−X′‖ − E‖Y−Y′‖ over the first n rows of each (zero when the laws agree). */
    public static double energyDistance(float[] a, float[] b, int n, int dim) {
        return 2 * meanDistance(a, b, n, dim, false) - meanDistance(a, a, n, dim, true) - meanDistance(b, b, n, dim, true);
    }

    private static double meanDistance(float[] a, float[] b, int n, int dim, boolean same) {
        double total = 0;
        long pairs = 0;
        for (int i = 0; i < n; i++) {
            for (int j = same ? i + 1 : 0; j < n; j++) {
                double s = 0;
                for (int k = 0; k < dim; k++) {
                    double t = a[i * dim + k] - b[j * dim + k];
                    s += t * t;
                }
                total += Math.sqrt(s);
                pairs++;
            }
        }
        return total / pairs;
    }
}
