package dev.cmc.ir;

/**
 * A 2-D static shape. Feature sizes are always baked in; the row count is either fixed (weights,
 * constants) or the batch, which the runtime supplies (rows == BATCH).
 */
public record Shape(int rows, int cols) {
    public static final int BATCH = -1;

    public static Shape batch(int cols) { return new Shape(BATCH, cols); }
    public static Shape fixed(int rows, int cols) { return new Shape(rows, cols); }
    public static Shape scalar() { return new Shape(1, 1); }

    public boolean batched() { return rows == BATCH; }

    /** Elements at a given batch size. */
    public long size(int batch) { return (long) (batched() ? batch : rows) * cols; }

    /** The shape two operands broadcast to, or an error naming both. */
    public static Shape broadcast(Shape a, Shape b) {
        int rows = a.rows == b.rows ? a.rows : a.rows == 1 ? b.rows : b.rows == 1 ? a.rows : 0;
        int cols = a.cols == b.cols ? a.cols : a.cols == 1 ? b.cols : b.cols == 1 ? a.cols : 0;
        if (rows == 0 || cols == 0) throw new IllegalArgumentException("shapes " + a + " and " + b + " do not broadcast");
        return new Shape(rows, cols);
    }

    @Override
    public String toString() {
        return "[" + (batched() ? "B" : Integer.toString(rows)) + "," + cols + "]";
    }
}
