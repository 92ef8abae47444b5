package dev.cmc.ir;

/** Every operation of the tensor IR, grouped by how fusion treats it. */
public enum Op {
    // leaves
    INPUT, PARAM, CONST,
    // elementwise, with broadcasting of [B,1], [1,n] and [1,1] operands
    ADD, SUB, MUL, DIV, NEG, EXP, LOG, SIN, COS, SQRT, SQUARE, SILU, GELU, RELU,
    /** d/dx of SILU, GELU and RELU: only ever made by autodiff. */
    DSILU, DGELU, STEP,
    /** Repeats an operand over the rows and/or columns of a larger shape. */
    BROADCAST,
    /** The gradient of MEAN_BATCH: g / B for every row. */
    MEAN_GRAD,
    /**
     * Standard normal noise over the node's own shape, drawn in the kernel that uses it ({@link dev.cmc.kernel.Noise}).
     * Inputs: the seed [1,1] and the row of the whole draw that batch row 0 is, [1,1]; both hold integers as floats.
     */
    NOISE,
    /**
     * Row i of out[B,n] is row index[i] of a table[K,n]: a value computed once per distinct σ, handed to every
     * row that has that σ. Inputs (table, index) and, where a gradient flows, the (order, starts) of its adjoint.
     */
    GATHER,
    // matrix products: A·W, G·Wᵀ (input gradient), Aᵀ·G (weight gradient)
    MATMUL, MATMUL_NT, MATMUL_TN,
    // row-wise: (x - mean) / sqrt(var + eps), and its gradient given x and dxhat
    NORMALIZE, NORMALIZE_GRAD,
    // reductions: over features to [B,1], over the batch to [1,n], mean over the batch of [B,1] to [1,1]
    REDUCE_COLS, REDUCE_BATCH, MEAN_BATCH,
    /** GATHER's adjoint: row k of out[K,n] sums the rows order[starts[k]] … order[starts[k+1] − 1] of x[B,n]. */
    SEGMENT_SUM;

    public boolean isLeaf() { return this == INPUT || this == PARAM || this == CONST; }

    public boolean isElementwise() { return ordinal() >= ADD.ordinal() && ordinal() <= GATHER.ordinal(); }

    public boolean isMatmul() { return this == MATMUL || this == MATMUL_NT || this == MATMUL_TN; }

    public boolean isUnary() { return isElementwise() && arity() == 1; }

    public int arity() {
        return switch (this) {
            case INPUT, PARAM, CONST -> 0;
            case ADD, SUB, MUL, DIV, MATMUL, MATMUL_NT, MATMUL_TN, NORMALIZE_GRAD, GATHER, NOISE -> 2;
            case SEGMENT_SUM -> 3;
            default -> 1;
        };
    }

    /** Epsilon of NORMALIZE, as in PyTorch's LayerNorm. */
    public static final double NORM_EPS = 1e-5;
}
