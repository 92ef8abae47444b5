package dev.cmc.reference;

import dev.cmc.ir.Graph;
import dev.cmc.ir.Node;
import dev.cmc.ir.Op;
import dev.cmc.ir.Shape;

import java.util.*;

/**
 * The living spec: a plain float64 interpreter of the tensor IR, one obvious loop per op. Every generated
 * kernel is tested against it, and autodiff is checked with it by finite differences.
 */
public final class Reference {
    private Reference() {}

    /** A dense row-major float64 tensor. */
    public record Tensor(int rows, int cols, double[] data) {
        public double at(int r, int c) { return data[r * cols + c]; }

        /** Reads with broadcasting: a size-1 dimension repeats. */
        double bcast(int r, int c) { return data[(rows == 1 ? 0 : r) * cols + (cols == 1 ? 0 : c)]; }
    }

    /**
     * Evaluates the outputs. {@code values} supplies INPUT and PARAM data by name (row-major); batch sets B.
     * Returns every evaluated node's value, so a test can look at intermediates too.
     */
    public static Map<Node, Tensor> run(Collection<Node> outputs, int batch, Map<String, double[]> values) {
        var env = new HashMap<Node, Tensor>();
        for (Node n : Graph.topoOrder(outputs)) env.put(n, eval(n, batch, values, env));
        return env;
    }

    private static Tensor eval(Node n, int batch, Map<String, double[]> values, Map<Node, Tensor> env) {
        Shape s = n.shape();
        int rows = s.batched() ? batch : s.rows(), cols = s.cols();
        double[] out = new double[rows * cols];
        Tensor a = n.inputs().isEmpty() ? null : env.get(n.in(0));
        Tensor b = n.inputs().size() > 1 ? env.get(n.in(1)) : null;
        switch (n.op()) {
            case INPUT, PARAM -> {
                double[] v = values.get(n.name());
                if (v == null || v.length != out.length) {
                    throw new IllegalArgumentException("value for " + n.name() + " must have " + out.length + " elements, got "
                            + (v == null ? "none" : v.length));
                }
                System.arraycopy(v, 0, out, 0, out.length);
            }
            case CONST -> System.arraycopy(n.values(), 0, out, 0, out.length);
            case MATMUL -> {
                int k = a.cols();
                for (int r = 0; r < rows; r++) for (int c = 0; c < cols; c++) {
                    double acc = 0;
                    for (int p = 0; p < k; p++) acc += a.at(r, p) * b.at(p, c);
                    out[r * cols + c] = acc;
                }
            }
            case MATMUL_NT -> {
                int k = a.cols();
                for (int r = 0; r < rows; r++) for (int c = 0; c < cols; c++) {
                    double acc = 0;
                    for (int p = 0; p < k; p++) acc += a.at(r, p) * b.at(c, p);
                    out[r * cols + c] = acc;
                }
            }
            case MATMUL_TN -> {
                int k = a.rows();
                for (int r = 0; r < rows; r++) for (int c = 0; c < cols; c++) {
                    double acc = 0;
                    for (int p = 0; p < k; p++) acc += a.at(p, r) * b.at(p, c);
                    out[r * cols + c] = acc;
                }
            }
            case NORMALIZE -> {
                for (int r = 0; r < rows; r++) {
                    double[] st = stats(a, r);
                    for (int c = 0; c < cols; c++) out[r * cols + c] = (a.at(r, c) - st[0]) * st[1];
                }
            }
            case NORMALIZE_GRAD -> {
                // dx = rstd · (g − mean(g) − x̂ · mean(g · x̂))
                for (int r = 0; r < rows; r++) {
                    double[] st = stats(a, r);
                    double mg = 0, mgx = 0;
                    for (int c = 0; c < cols; c++) {
                        double xhat = (a.at(r, c) - st[0]) * st[1];
                        mg += b.at(r, c);
                        mgx += b.at(r, c) * xhat;
                    }
                    mg /= cols;
                    mgx /= cols;
                    for (int c = 0; c < cols; c++) {
                        double xhat = (a.at(r, c) - st[0]) * st[1];
                        out[r * cols + c] = st[1] * (b.at(r, c) - mg - xhat * mgx);
                    }
                }
            }
            case REDUCE_COLS -> {
                for (int r = 0; r < rows; r++) {
                    double acc = 0;
                    for (int c = 0; c < a.cols(); c++) acc += a.at(r, c);
                    out[r] = acc;
                }
            }
            case REDUCE_BATCH -> {
                for (int r = 0; r < a.rows(); r++) for (int c = 0; c < cols; c++) out[c] += a.at(r, c);
            }
            case MEAN_BATCH -> {
                double acc = 0;
                for (int r = 0; r < a.rows(); r++) acc += a.at(r, 0);
                out[0] = acc / a.rows();
            }
            case GATHER -> {
                for (int r = 0; r < rows; r++) {
                    int k = (int) b.at(r, 0);
                    for (int c = 0; c < cols; c++) out[r * cols + c] = a.at(k, c);
                }
            }
            case SEGMENT_SUM -> {
                Tensor order = b, starts = env.get(n.in(2));
                for (int k = 0; k < rows; k++) {
                    for (int j = (int) starts.at(k, 0); j < (int) starts.at(k + 1, 0); j++) {
                        int r = (int) order.at(j, 0);
                        for (int c = 0; c < cols; c++) out[k * cols + c] += a.at(r, c);
                    }
                }
            }
            case MEAN_GRAD -> Arrays.fill(out, a.at(0, 0) / rows);
            case NOISE -> {
                int seed = dev.cmc.kernel.Noise.integer(a.at(0, 0)), first = dev.cmc.kernel.Noise.integer(b.at(0, 0));
                for (int r = 0; r < rows; r++) for (int c = 0; c < cols; c++) out[r * cols + c] = dev.cmc.kernel.Noise.gaussian(seed, (first + r) * cols + c);
            }
            case BROADCAST -> {
                for (int r = 0; r < rows; r++) for (int c = 0; c < cols; c++) out[r * cols + c] = a.bcast(r, c);
            }
            default -> {
                if (!n.op().isElementwise()) throw new IllegalStateException("unhandled op " + n.op());
                for (int r = 0; r < rows; r++) for (int c = 0; c < cols; c++) {
                    double x = a.bcast(r, c);
                    out[r * cols + c] = b == null ? unary(n.op(), x) : binary(n.op(), x, b.bcast(r, c));
                }
            }
        }
        return new Tensor(rows, cols, out);
    }

    /** mean and 1/√(var + eps) of row r. */
    private static double[] stats(Tensor x, int r) {
        double mean = 0, var = 0;
        for (int c = 0; c < x.cols(); c++) mean += x.at(r, c);
        mean /= x.cols();
        for (int c = 0; c < x.cols(); c++) var += (x.at(r, c) - mean) * (x.at(r, c) - mean);
        var /= x.cols();
        return new double[]{mean, 1.0 / Math.sqrt(var + Op.NORM_EPS)};
    }

    static final double GELU_K = Math.sqrt(2.0 / Math.PI), GELU_A = 0.044715;

    public static double unary(Op op, double x) {
        return switch (op) {
            case NEG -> -x;
            case EXP -> Math.exp(x);
            case LOG -> Math.log(x);
            case SIN -> Math.sin(x);
            case COS -> Math.cos(x);
            case SQRT -> Math.sqrt(x);
            case SQUARE -> x * x;
            case SILU -> x / (1 + Math.exp(-x));
            case DSILU -> { double s = 1 / (1 + Math.exp(-x)); yield s * (1 + x * (1 - s)); }
            // GELU in its tanh form, as PyTorch's approximate='tanh'.
            case GELU -> 0.5 * x * (1 + Math.tanh(GELU_K * (x + GELU_A * x * x * x)));
            case DGELU -> {
                double t = Math.tanh(GELU_K * (x + GELU_A * x * x * x));
                yield 0.5 * (1 + t) + 0.5 * x * (1 - t * t) * GELU_K * (1 + 3 * GELU_A * x * x);
            }
            case RELU -> Math.max(x, 0);
            case STEP -> x > 0 ? 1 : 0;
            default -> throw new IllegalStateException(op + " is not unary");
        };
    }

    public static double binary(Op op, double x, double y) {
        return switch (op) {
            case ADD -> x + y;
            case SUB -> x - y;
            case MUL -> x * y;
            case DIV -> x / y;
            default -> throw new IllegalStateException(op + " is not binary");
        };
    }
}
