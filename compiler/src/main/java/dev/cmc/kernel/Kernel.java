package dev.cmc.kernel;

import dev.cmc.ir.Shape;

import java.util.List;

/**
 * The kernel IR: what fusion produces and every renderer consumes. Each kernel computes an anchor value
 * over its domain, then runs its epilogue {@link Expr.Let}s on it element by element.
 */
public sealed interface Kernel {
    String name();

    /** The elements the epilogue runs over. */
    Shape domain();

    List<Expr.Let> epilogue();

    /**
     * out = a · b over a shared dimension k. NN: a[B,k] · b[k,n] → [B,n]. TN: a[B,m]ᵀ · b[B,n] → [m,n]. With a
     * {@link LayerNorm} (NN only), a is the normalisation's input and each element is normalised as it is read.
     */
    record Gemm(String name, boolean transposeA, Buf a, Buf b, int k, Shape domain, List<Expr.Let> epilogue, LayerNorm norm) implements Kernel {
        public Gemm(String name, boolean transposeA, Buf a, Buf b, int k, Shape domain, List<Expr.Let> epilogue) {
            this(name, transposeA, a, b, k, domain, epilogue, null);
        }
    }

    /**
     * A LayerNorm folded into the GEMM that consumes it: the GEMM reads A(r, p) as
     * ((A(r, p) − mean(r)) · rstd(r)) · gain(p) + bias(p), rounding after each operation as that order says, which
     * is exactly what the normalisation kernel would have stored; mean and rstd come from that kernel.
     */
    record LayerNorm(RowStats stats, Buf gain, Buf bias) {}

    /** Each row's mean and rstd = 1/√(var + ε), as a {@link Normalize} computes them: [B,1] each. */
    record RowStats(Buf mean, Buf rstd) {}

    /** No anchor: the epilogue alone, over the domain. */
    record Elementwise(String name, Shape domain, List<Expr.Let> epilogue) implements Kernel {}

    /**
     * Row-wise normalisation of x (an expression over [B,n]). Without a gradient, Acc = x̂ = (x − mean)·rstd;
     * with one, Acc = rstd·(g − mean(g) − x̂·mean(g·x̂)), the gradient of x̂ with respect to x. With stats, each
     * row's mean and rstd are stored too (for GEMMs that fold the normalisation in: {@link LayerNorm}).
     */
    record Normalize(String name, Expr x, Expr grad, Shape domain, List<Expr.Let> epilogue, RowStats stats) implements Kernel {
        public Normalize(String name, Expr x, Expr grad, Shape domain, List<Expr.Let> epilogue) {
            this(name, x, grad, domain, epilogue, null);
        }
    }

    /** Acc = sum over columns of x (an expression over [B,n]); the domain is [B,1]. */
    record ReduceCols(String name, Expr x, int cols, Shape domain, List<Expr.Let> epilogue) implements Kernel {}

    /** Acc = sum (or mean) over the batch of x (an expression over [B,n]); the domain is [1,n]. */
    record ReduceBatch(String name, Expr x, boolean mean, Shape domain, List<Expr.Let> epilogue) implements Kernel {}

    /** dst[j, i] = src[i, j]: the transposed weights that input gradients read row by row. */
    record Transpose(String name, Buf src, Buf dst) implements Kernel {
        public Shape domain() { return src.shape(); }
        public List<Expr.Let> epilogue() { return List.of(); }
    }

    /** Sum of squares of the whole gradient, for clipping by global norm. Writes one float to {@code out}. */
    record SumSquares(String name, String array, int count, Buf out) implements Kernel {
        public Shape domain() { return Shape.fixed(1, count); }
        public List<Expr.Let> epilogue() { return List.of(); }
    }

    /**
     * One pass over every parameter: Adam (or RAdam) with decoupled weight decay, then the target EMA and the
     * sampling EMA. Step-dependent scalars come from the {@code scalars} array (see {@link OptimizerScalars}).
     * With gradClip &gt; 0 the gradient is scaled by min(1, gradClip/‖g‖), ‖g‖² from the SumSquares before it.
     */
    record AdamEma(String name, int count, double beta1, double beta2, double gradClip) implements Kernel {
        public Shape domain() { return Shape.fixed(1, count); }
        public List<Expr.Let> epilogue() { return List.of(); }
    }
}
