package dev.cmc.ir;

import java.util.*;

/** Builds IR nodes with checked shapes, and walks them in dependency order. */
public final class Graph {
    private int nextId;
    private final Map<String, Node> params = new LinkedHashMap<>();
    private final Map<String, Node> inputs = new LinkedHashMap<>();
    private final Map<Node, String> labels = new HashMap<>();

    /** Gives a node a readable name, which buffers and kernels made from it carry into generated code. */
    public Node label(Node n, String label) {
        labels.putIfAbsent(n, label);
        return n;
    }

    /** The node's label (or its parameter/input name) as an identifier, else the fallback. */
    public String labelOf(Node n, String fallback) {
        String l = labels.getOrDefault(n, n.name());
        return l == null ? fallback : l.replaceAll("[^A-Za-z0-9_]", "_");
    }

    public boolean hasLabel(Node n) { return labels.containsKey(n) || n.name() != null; }

    public Node input(String name, Shape shape) {
        return inputs.computeIfAbsent(name, n -> node(Op.INPUT, List.of(), shape, n, null));
    }

    public Node param(String name, Shape shape) {
        Node p = params.computeIfAbsent(name, n -> node(Op.PARAM, List.of(), shape, n, null));
        if (!p.shape().equals(shape)) throw new IllegalArgumentException("parameter " + name + " reused with shape " + shape);
        return p;
    }

    public Node constant(double v) { return node(Op.CONST, List.of(), Shape.scalar(), null, new double[]{v}); }

    public Node constRow(double[] values) { return node(Op.CONST, List.of(), Shape.fixed(1, values.length), null, values.clone()); }

    public Collection<Node> params() { return params.values(); }

    public Collection<Node> inputs() { return inputs.values(); }

    // ---- elementwise ----
    public Node add(Node a, Node b) { return binary(Op.ADD, a, b); }
    public Node sub(Node a, Node b) { return binary(Op.SUB, a, b); }
    public Node mul(Node a, Node b) { return binary(Op.MUL, a, b); }
    public Node div(Node a, Node b) { return binary(Op.DIV, a, b); }
    public Node add(Node a, double k) { return add(a, constant(k)); }
    public Node mul(Node a, double k) { return mul(a, constant(k)); }

    public Node unary(Op op, Node a) {
        if (!op.isUnary() || op == Op.BROADCAST || op == Op.MEAN_GRAD) throw new IllegalArgumentException(op + " is not a plain unary op");
        return node(op, List.of(a), a.shape(), null, null);
    }

    public Node binary(Op op, Node a, Node b) {
        return node(op, List.of(a, b), Shape.broadcast(a.shape(), b.shape()), null, null);
    }

    public Node broadcast(Node a, Shape to) {
        if (Shape.broadcast(a.shape(), to).equals(to) && !a.shape().equals(to)) return node(Op.BROADCAST, List.of(a), to, null, null);
        if (a.shape().equals(to)) return a;
        throw new IllegalArgumentException("cannot broadcast " + a.shape() + " to " + to);
    }

    /** Standard normal noise of this shape from a seed [1,1] and the draw's first row [1,1] (see {@link Op#NOISE}). */
    public Node noise(Node seed, Node firstRow, Shape shape) {
        require(seed.shape().equals(Shape.scalar()) && firstRow.shape().equals(Shape.scalar()), "noise's seed " + seed.shape() + " and first row " + firstRow.shape());
        return node(Op.NOISE, List.of(seed, firstRow), shape, null, null);
    }

    public Node meanGrad(Node g) {
        require(g.shape().equals(Shape.scalar()), "mean_grad takes a [1,1] gradient");
        return node(Op.MEAN_GRAD, List.of(g), Shape.batch(1), null, null);
    }

    // ---- matrix products ----
    /** a[B,k] · w[k,n] */
    public Node matmul(Node a, Node w) {
        require(a.shape().cols() == w.shape().rows() && !w.shape().batched(), "matmul " + a.shape() + " x " + w.shape());
        return node(Op.MATMUL, List.of(a, w), new Shape(a.shape().rows(), w.shape().cols()), null, null);
    }

    /** g[B,n] · w[k,n]ᵀ */
    public Node matmulNT(Node g, Node w) {
        require(g.shape().cols() == w.shape().cols(), "matmul_nt " + g.shape() + " x " + w.shape() + "T");
        return node(Op.MATMUL_NT, List.of(g, w), new Shape(g.shape().rows(), w.shape().rows()), null, null);
    }

    /** a[B,k]ᵀ · g[B,n] */
    public Node matmulTN(Node a, Node g) {
        require(a.shape().rows() == g.shape().rows(), "matmul_tn " + a.shape() + "T x " + g.shape());
        return node(Op.MATMUL_TN, List.of(a, g), Shape.fixed(a.shape().cols(), g.shape().cols()), null, null);
    }

    // ---- row-wise and reductions ----
    public Node normalize(Node x) { return node(Op.NORMALIZE, List.of(x), x.shape(), null, null); }

    public Node normalizeGrad(Node x, Node g) { return node(Op.NORMALIZE_GRAD, List.of(x, g), x.shape(), null, null); }

    public Node reduceCols(Node x) { return node(Op.REDUCE_COLS, List.of(x), new Shape(x.shape().rows(), 1), null, null); }

    public Node reduceBatch(Node x) { return node(Op.REDUCE_BATCH, List.of(x), Shape.fixed(1, x.shape().cols()), null, null); }

    /**
     * out[i] = table[index[i]] for table[K,n] and index[B,1] (row numbers held as floats). order[B,1] and
     * starts[K+1,1] group the batch rows by table row, which the gradient with respect to the table needs:
     * rows order[starts[k]] … order[starts[k+1] − 1] are those with index k. Pass null for both when no
     * gradient flows through the table.
     */
    public Node gather(Node table, Node index, Node order, Node starts) {
        require(!table.shape().batched() && index.shape().equals(Shape.batch(1)), "gather " + table.shape() + " by " + index.shape());
        if ((order == null) != (starts == null)) throw new IllegalArgumentException("gather: order and starts come together");
        if (order == null) return node(Op.GATHER, List.of(table, index), Shape.batch(table.shape().cols()), null, null);
        require(order.shape().equals(Shape.batch(1)) && starts.shape().equals(Shape.fixed(table.shape().rows() + 1, 1)),
                "gather's adjoint map " + order.shape() + ", " + starts.shape() + " for a table of " + table.shape().rows() + " rows");
        return node(Op.GATHER, List.of(table, index, order, starts), Shape.batch(table.shape().cols()), null, null);
    }

    /** Sums the rows of x[B,n] group by group, as {@link #gather}'s order and starts give them: [K,n]. */
    public Node segmentSum(Node x, Node order, Node starts) {
        require(x.shape().batched(), "segment_sum of " + x.shape());
        return node(Op.SEGMENT_SUM, List.of(x, order, starts), Shape.fixed(starts.shape().rows() - 1, x.shape().cols()), null, null);
    }

    public Node meanBatch(Node x) {
        require(x.shape().equals(Shape.batch(1)), "mean_batch takes [B,1], got " + x.shape());
        return node(Op.MEAN_BATCH, List.of(x), Shape.scalar(), null, null);
    }

    /** A node of any op with these inputs, for passes that rebuild nodes generically. */
    public Node make(Op op, List<Node> in, Shape shape) { return node(op, in, shape, null, null); }

    private Node node(Op op, List<Node> in, Shape shape, String name, double[] values) {
        return new Node(nextId++, op, List.copyOf(in), shape, name, values);
    }

    private static void require(boolean ok, String what) {
        if (!ok) throw new IllegalArgumentException("shape mismatch: " + what);
    }

    /** Every node the outputs depend on, each after its inputs. */
    public static List<Node> topoOrder(Collection<Node> outputs) {
        var order = new ArrayList<Node>();
        var seen = new HashSet<Node>();
        var stack = new ArrayDeque<Object[]>();
        for (Node out : outputs) {
            stack.push(new Object[]{out, 0});
            while (!stack.isEmpty()) {
                Object[] top = stack.peek();
                Node n = (Node) top[0];
                int i = (int) top[1];
                if (i == 0 && seen.contains(n)) { stack.pop(); continue; }
                if (i < n.inputs().size()) {
                    top[1] = i + 1;
                    Node child = n.in(i);
                    if (!seen.contains(child)) stack.push(new Object[]{child, 0});
                } else {
                    stack.pop();
                    if (seen.add(n)) order.add(n);
                }
            }
        }
        return order;
    }
}
