package dev.cmc.kernel;

/**
 * The per-step scalars the fused optimizer kernel reads from the "scalars" array, computed on the host
 * each step (bias corrections, RAdam's rectification, the EMA rates, the clip scale).
 */
public final class OptimizerScalars {
    private OptimizerScalars() {}

    /** p -= STEP · m / (√v · DENOM + EPS), or STEP · m when RECTIFY is 0 (RAdam's early steps). */
    public static final int STEP = 0, DENOM = 1, EPS = 2, DECAY = 3, TARGET_MU = 4, EMA_DECAY = 5, GRAD_SCALE = 6, RECTIFY = 7;
    public static final int COUNT = 8;
    /** Where SumSquares writes the squared gradient norm. */
    public static final int GRAD_NORM_SQ = 8;
    public static final int SIZE = 9;

    /** Fills the scalars for step t (1-based). */
    public static void fill(float[] s, String optimizer, int t, double lr, double beta1, double beta2, double eps,
                            double weightDecay, double mu, double emaDecay, double gradScale) {
        double bc1 = 1 - Math.pow(beta1, t), bc2 = 1 - Math.pow(beta2, t);
        double step = lr / bc1;
        boolean rectify = true;
        if (optimizer.equals("radam")) {
            double rhoInf = 2 / (1 - beta2) - 1;
            double rho = rhoInf - 2 * t * Math.pow(beta2, t) / bc2;
            if (rho > 5) {
                step *= Math.sqrt((rho - 4) * (rho - 2) * rhoInf / ((rhoInf - 4) * (rhoInf - 2) * rho));
            } else rectify = false;
        }
        s[STEP] = (float) step;
        s[DENOM] = (float) (1 / Math.sqrt(bc2));
        s[EPS] = (float) eps;
        s[DECAY] = (float) (lr * weightDecay);
        s[TARGET_MU] = (float) mu;
        s[EMA_DECAY] = (float) emaDecay;
        s[GRAD_SCALE] = (float) gradScale;
        s[RECTIFY] = rectify ? 1f : 0f;
    }
}
