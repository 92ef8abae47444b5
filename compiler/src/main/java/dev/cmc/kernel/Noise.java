package dev.cmc.kernel;

/**
 * Standard normal noise drawn where it is used, in any kernel on any device: a counter-based generator, so
 * that element i of a draw is a pure function of (seed, i) and every backend gives the same numbers up to the
 * rounding of its log and cos. Samplers draw their noise this way rather than copying it from the host.
 * <pre>
 *   key = mix(seed),  h1 = mix(key + 2i),  h2 = mix(key + 2i + 1)           (32-bit unsigned arithmetic)
 *   u1  = ((h1 >>> 8) + 1) / 2²⁴  ∈ (0, 1],   u2 = (h2 >>> 8) / 2²⁴  ∈ [0, 1)
 *   z   = √(max(0, −2 ln u1)) · cos(π (2 u2 − 1))                              (Box–Muller)
 * </pre>
 * mix is Wellons' lowbias32 hash. i counts the elements of the whole draw row by row, from the row the
 * draw starts at, so a draw made in chunks equals one made at once. The cosine's argument lies in [−π, π),
 * where the GPU's cos.approx is accurate; the max(0, ·) keeps an approximate log just below zero at u1 = 1
 * from making a NaN. |z| ≤ √(48 ln 2) ≈ 5.77.
 */
public final class Noise {
    private Noise() {}

    public static final int MIX_1 = 0x7feb352d, MIX_2 = 0x846ca68b;

    /** Seeds (and first rows) are below 2²⁴, so that the float a kernel reads them from holds them exactly. */
    public static final int SEEDS = 1 << 24;

    /** A seed from any 32 bits: their low 24. */
    public static int seed(int bits) { return bits & (SEEDS - 1); }

    /** Wellons' lowbias32: a full-avalanche 32-bit integer hash. */
    public static int mix(int x) {
        x ^= x >>> 16;
        x *= MIX_1;
        x ^= x >>> 15;
        x *= MIX_2;
        x ^= x >>> 16;
        return x;
    }

    /** Element i of the draw with this seed, in double precision: the reference the kernels are checked against. */
    public static double gaussian(int seed, int i) {
        int key = mix(seed);
        double u1 = ((mix(key + 2 * i) >>> 8) + 1) * 0x1p-24;
        double u2 = (mix(key + 2 * i + 1) >>> 8) * 0x1p-24;
        return Math.sqrt(Math.max(0, -2 * Math.log(u1))) * Math.cos(Math.PI * (2 * u2 - 1));
    }

    /** The integer a float seed or first row carries: exact for 0 ≤ v &lt; 2²⁴, as every seed cmc writes is. */
    public static int integer(double v) { return (int) (long) v; }
}
