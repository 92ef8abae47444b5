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

    /** out = a · b over a shared dimension k. NN: a[B,k] · b[k,n] → [B,n]. TN: a[B,m]ᵀ · b[B,n] → [m,n]. */
    record Gemm(String name, boolean transposeA, Buf a, Buf b, int k, Shape domain, List<Expr.Let> epilogue) implements Kernel {
        /** What the epilogue stores, where it stores exactly one buffer; else null. */
        public Buf output() {
            Buf out = null;
            int stores = 0;
            for (Expr.Let l : epilogue) if (l.store() != null && stores++ == 0) out = l.store();
            return stores == 1 ? out : null;
        }
    }

    /** No anchor: the epilogue alone, over the domain. */
    record Elementwise(String name, Shape domain, List<Expr.Let> epilogue) implements Kernel {}

    /**
     * Row-wise normalisation of x (an expression over [B,n]). Without a gradient, Acc = x̂ = (x − mean)·rstd;
     * with one, Acc = rstd·(g − mean(g) − x̂·mean(g·x̂)), the gradient of x̂ with respect to x.
     */
    record Normalize(String name, Expr x, Expr grad, Shape domain, List<Expr.Let> epilogue) implements Kernel {}

    /** Acc = sum over columns of x (an expression over [B,n]); the domain is [B,1]. */
    record ReduceCols(String name, Expr x, int cols, Shape domain, List<Expr.Let> epilogue) implements Kernel {}

    /** Acc = sum (or mean) over the batch of x (an expression over [B,n]); the domain is [1,n]. */
    record ReduceBatch(String name, Expr x, boolean mean, Shape domain, List<Expr.Let> epilogue) implements Kernel {}

    /**
     * Acc at (k, c) = Σ x(order[j], c) for j in [starts[k], starts[k+1]): the batch rows of group k, summed in
     * the order given. x is an expression over [B,n]; the domain is [K,n]. Deterministic: no atomics.
     */
    record SegmentSum(String name, Expr x, Buf order, Buf starts, Shape domain, List<Expr.Let> epilogue) implements Kernel {}

    /**
     * A residual MLP block in one kernel: {@code norm} (a LayerNorm, its affine in its epilogue), {@code up} (a GEMM
     * over norm's output, bias and activation in its epilogue) and {@code down} (a GEMM over up's output, bias
     * and residual in its epilogue), run as one. norm's and up's outputs never reach memory: the kernel keeps
     * the normalised rows on chip and makes and consumes up's a column chunk at a time. Made by
     * {@link dev.cmc.fusion.MlpFusion} for a renderer that can (PTX); the others never see one.
     */
    record Mlp(String name, Normalize norm, Gemm up, Gemm down, Buf upT, Buf downT) implements Kernel {
        public Mlp(String name, Normalize norm, Gemm up, Gemm down) { this(name, norm, up, down, null, null); }

        /**
         * The same block reading its weights transposed, [N, K], from copies that Transpose kernels before it make:
         * what a renderer whose tensor cores read both operands K-major (Hopper's TF32 wgmma) asks for.
         */
        public Mlp withTransposedWeights(Buf upT, Buf downT) { return new Mlp(name, norm, up, down, upT, downT); }

        public boolean transposedWeights() { return upT != null; }

        public Shape domain() { return down.domain(); }
        public List<Expr.Let> epilogue() { return down.epilogue(); }
        /** The normalised rows: norm's output, up's A. */
        public Buf normalized() { return up.a(); }
        /** The hidden activation: up's output, down's A. */
        public Buf hidden() { return down.a(); }

        /** The block's output: what its down-projection's epilogue stores (one array, see MlpFusion), or null. */
        public Buf output() { return down.output(); }
    }

    /**
     * Residual MLP blocks in one kernel, each block's output the next one's input, kept on chip: the kernel
     * carries its rows' residual stream from the first block's input to the last block's output, which alone
     * reaches memory. With a {@code stem} (the network's input projection, the first block's input its output)
     * the stream starts there; with a {@code head} (the output projection, the one reader of the last block's
     * output) it goes on through that GEMM, and only the head's result reaches memory. Both read their weights
     * transposed ({@code stemT}, {@code headT}), as the blocks do. Made by {@link dev.cmc.fusion.MlpFusion#chain}
     * for a renderer that can (PTX on wgmma).
     */
    record MlpChain(String name, Gemm stem, Buf stemT, List<Mlp> blocks, Gemm head, Buf headT) implements Kernel {
        public MlpChain(String name, List<Mlp> blocks) { this(name, null, null, blocks, null, null); }

        public Shape domain() { return head != null ? head.domain() : blocks.getLast().domain(); }
        /** The blocks' width h, the residual stream's, which sizes the kernel's tiles (its domain may be the head's). */
        public int width() { return blocks.getFirst().domain().cols(); }
        public List<Expr.Let> epilogue() { return head != null ? head.epilogue() : blocks.getLast().epilogue(); }
    }

    /**
     * dst[j, i] = src[i, j]: the transposed weights that input gradients read row by row; or, with a packing, the
     * same values in the order that a wgmma MLP block's bulk copies move them (PTX only; the others never see one).
     */
    record Transpose(String name, Buf src, Buf dst, Packing packing) implements Kernel {
        public Transpose(String name, Buf src, Buf dst) { this(name, src, dst, null); }

        public Shape domain() { return src.shape(); }
        public List<Expr.Let> epilogue() { return List.of(); }

        /**
         * The transposed weight [N, K] as slices of {@code rows} of its rows by {@code depth} of K, each slice's
         * floats contiguous: a row group's slices along K first, then the next rows'. A slice holds wgmma's
         * K-major core matrices without swizzle: 8 rows by 4 of K, 16 bytes a row, 128 bytes each; depth/4 of them
         * along K for a group of 8 rows, then the next group. With {@code permuted} rows, row w of a group of 8
         * lies at position 2·(w%4) + w/4, the order in which an up-projection's accumulators hold hidden columns.
         */
        public record Packing(int rows, int depth, boolean permuted) {
            /** Where element (n, k) of a transposed weight of kCount columns lies, in floats from its start. */
            public int index(int n, int k, int kCount) {
                int slice = n / rows * (kCount / depth) + k / depth, inRow = n % rows, inK = k % depth;
                int w = inRow % 8, row = permuted ? 2 * (w % 4) + w / 4 : w;
                return slice * rows * depth + ((inRow / 8 * (depth / 4) + inK / 4) * 8 + row) * 4 + inK % 4;
            }
        }
    }

    /** Sum of squares of the whole gradient, for clipping by global norm. Writes one float to {@code out}. */
    record SumSquares(String name, String array, int count, Buf out) implements Kernel {
        public Shape domain() { return Shape.fixed(1, count); }
        public List<Expr.Let> epilogue() { return List.of(); }
    }

    /**
     * One pass over the count parameters from offset in the flat arrays: Adam (or RAdam) with decoupled weight
     * decay, then the target EMA and the sampling EMA. Step-dependent scalars come from the {@code scalars} array
     * (see {@link OptimizerScalars}). With gradClip &gt; 0 the gradient is scaled by min(1, gradClip/‖g‖), ‖g‖²
     * from the SumSquares before it.
     */
    record AdamEma(String name, int offset, int count, double beta1, double beta2, double gradClip) implements Kernel {
        public Shape domain() { return Shape.fixed(1, count); }
        public List<Expr.Let> epilogue() { return List.of(); }
    }
}
