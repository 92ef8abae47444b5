package dev.cmc.runtime.train;

import dev.cmc.dsl.Spec;

import java.util.SplittableRandom;

/**
 * The noise discretisation and the curricula of consistency training, as the papers write them.
 * CT: Song et al. 2023, Appendix C. iCT: Song and Dhariwal 2023, Section 3.
 */
public final class Schedules {
    private Schedules() {}

    /** Karras et al.: t_i = (σ_min^{1/ρ} + (i−1)/(N−1)·(σ_max^{1/ρ} − σ_min^{1/ρ}))^ρ for i = 1..N (increasing). */
    public static double[] karras(int n, double sigmaMin, double sigmaMax, double rho) {
        double[] t = new double[n];
        double a = Math.pow(sigmaMin, 1 / rho), b = Math.pow(sigmaMax, 1 / rho);
        for (int i = 0; i < n; i++) t[i] = Math.pow(a + (n == 1 ? 0 : (double) i / (n - 1)) * (b - a), rho);
        t[0] = sigmaMin;
        t[n - 1] = sigmaMax;
        return t;
    }

    /** CT: N(k) = ⌈√(k/K·((s₁+1)² − s₀²) + s₀²) − 1⌉ + 1. */
    public static int ctSteps(long k, long total, int s0, int s1) {
        double v = Math.sqrt((double) k / total * ((s1 + 1.0) * (s1 + 1.0) - (double) s0 * s0) + (double) s0 * s0);
        return (int) Math.ceil(v - 1) + 1;
    }

    /** CT: μ(k) = exp(s₀·ln μ₀ / N(k)). */
    public static double ctMu(int n, int s0, double mu0) {
        return mu0 <= 0 ? 0 : Math.exp(s0 * Math.log(mu0) / n);
    }

    /** iCT: N(k) = min(s₀·2^⌊k/K′⌋, s₁) + 1 with K′ = ⌊K / (log₂⌊s₁/s₀⌋ + 1)⌋. */
    public static int ictSteps(long k, long total, int s0, int s1) {
        long kPrime = Math.max(1, (long) Math.floor(total / (Math.floor(Math.log((double) s1 / s0) / Math.log(2)) + 1)));
        long doublings = Math.min(k / kPrime, 30);
        return (int) Math.min((long) s0 << doublings, s1) + 1;
    }

    /** iCT's lognormal choice of the index n in 1..N−1 (0-based: 0..N−2), P_mean = −1.1, P_std = 2.0. */
    public static double[] ictIndexWeights(double[] sigmas) {
        double pMean = -1.1, pStd = 2.0;
        double[] w = new double[sigmas.length - 1];
        double total = 0;
        for (int i = 0; i < w.length; i++) {
            w[i] = erf((Math.log(sigmas[i + 1]) - pMean) / (Math.sqrt(2) * pStd)) - erf((Math.log(sigmas[i]) - pMean) / (Math.sqrt(2) * pStd));
            total += w[i];
        }
        for (int i = 0; i < w.length; i++) w[i] /= total;
        return w;
    }

    public static int pick(double[] cumulativeFree, SplittableRandom rng) {
        double u = rng.nextDouble(), acc = 0;
        for (int i = 0; i < cumulativeFree.length; i++) {
            acc += cumulativeFree[i];
            if (u < acc) return i;
        }
        return cumulativeFree.length - 1;
    }

    /** σ of the second step of 2-step sampling for distilled models: Song et al.'s choice, found by search on CIFAR-10. */
    public static final double CD_SECOND_SIGMA = 0.821;

    /** The τ list for sampling in this many steps: the spec's sample.sigmas when it has that many, else the default. */
    public static double[] samplingSigmas(Spec spec, int steps) {
        var given = spec.sample().sigmas();
        if (given.size() == steps) return given.stream().mapToDouble(Double::doubleValue).toArray();
        return defaultSamplingSigmas(spec, steps);
    }

    /**
     * The τ list for multistep sampling when the spec gives none: σ_max, then steps−1 points of the Karras grid;
     * for a distilled (cd) model in two steps, σ_max then 0.821. Measured on glyphs8x8 (sliced Wasserstein,
     * 2,000 samples): CD 0.124 at the grid's 2.52 and 0.098 at 0.821; iCT 0.099 at 2.52 and 0.121 at 0.821.
     */
    public static double[] defaultSamplingSigmas(Spec spec, int steps) {
        var m = spec.model();
        if (steps == 1) return new double[]{m.sigmaMax()};
        if (steps == 2 && spec.train().method().equals("cd") && CD_SECOND_SIGMA > m.sigmaMin() && CD_SECOND_SIGMA < m.sigmaMax()) {
            return new double[]{m.sigmaMax(), CD_SECOND_SIGMA};
        }
        double[] grid = karras(steps + 1, m.sigmaMin(), m.sigmaMax(), spec.schedule().rho());
        double[] tau = new double[steps];
        for (int i = 0; i < steps; i++) tau[i] = grid[steps - i];
        return tau;
    }

    /** Abramowitz–Stegun 7.1.26, |error| < 1.5e-7: ample for choosing noise levels. */
    static double erf(double x) {
        double t = 1 / (1 + 0.3275911 * Math.abs(x));
        double y = 1 - (((((1.061405429 * t - 1.453152027) * t) + 1.421413741) * t - 0.284496736) * t + 0.254829592) * t * Math.exp(-x * x);
        return x >= 0 ? y : -y;
    }
}
