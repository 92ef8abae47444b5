package dev.cmc.kernel;

import dev.cmc.ir.Op;

/**
 * The body language of fused kernels: scalar expressions evaluated at one element (r, c) of a kernel's
 * domain. A {@link Load} of a buffer whose shape is [B,1], [1,n] or [1,1] broadcasts along the missing axis.
 */
public sealed interface Expr {
    /** The value of a buffer at the current element (broadcast by its shape). */
    record Load(Buf buf) implements Expr {}

    /** table[(int) index[r], c]: a fixed-row table read at the row a [B,1] index buffer names. */
    record Gather(Buf table, Buf index) implements Expr {}

    record Const(double value) implements Expr {}

    /** The anchor's own result at this element: a GEMM's accumulator, a normalised value, a reduction. */
    record Acc() implements Expr {}

    /** An earlier {@link Let} of the same kernel. */
    record Var(int id) implements Expr {}

    /** The runtime batch size. */
    record Rows() implements Expr {}

    /**
     * Standard normal noise at the current element: element (firstRow + r)·cols + c of the draw with this seed
     * ({@link Noise}). seed and firstRow evaluate to integers held as floats.
     */
    record Noise(Expr seed, Expr firstRow, int cols) implements Expr {}

    record Unary(Op op, Expr a) implements Expr {}

    record Binary(Op op, Expr a, Expr b) implements Expr {}

    /** One step of a kernel's epilogue: compute a value, optionally store it. */
    record Let(int id, Expr value, Buf store) {}
}
