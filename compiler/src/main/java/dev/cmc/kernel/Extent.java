package dev.cmc.kernel;

/**
 * How a kernel is split across threads or work-items: {@code size} units of parallel work at a batch size,
 * handed out in multiples of {@code grain}. Renderers and runtimes agree on this.
 */
public record Extent(int size, int grain) {
    /** Rows a GEMM register tile covers; ranges handed to GEMMs are multiples of it. */
    public static final int GEMM_ROWS = 4;

    public static Extent of(Kernel k, int batch, int lanes) {
        return switch (k) {
            case Kernel.Gemm g -> new Extent(rows(g.domain().rows(), batch), GEMM_ROWS);
            case Kernel.ReduceBatch r -> new Extent(r.domain().cols(), r.domain().cols() >= lanes ? lanes : r.domain().cols());
            case Kernel.Transpose t -> new Extent(t.src().shape().rows(), 16);
            case Kernel.SumSquares s -> new Extent(1, 1);
            case Kernel.AdamEma a -> new Extent(a.count(), 4096);
            default -> new Extent(rows(k.domain().rows(), batch), 1);
        };
    }

    private static int rows(int rows, int batch) {
        return rows == dev.cmc.ir.Shape.BATCH ? batch : rows;
    }
}
