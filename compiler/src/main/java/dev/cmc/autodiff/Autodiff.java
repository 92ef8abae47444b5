package dev.cmc.autodiff;

import dev.cmc.ir.Graph;
import dev.cmc.ir.Node;
import dev.cmc.ir.Op;
import dev.cmc.ir.Shape;

import java.util.*;

/**
 * Reverse-mode autodiff: walks the forward graph from the loss back to the requested nodes and builds the
 * backward graph, one gradient rule per op. Only nodes on a path from a requested node to the loss get a
 * gradient, so constants such as an EMA target are never differentiated.
 */
public final class Autodiff {
    private final Graph g;
    private final Map<Node, Node> grads = new HashMap<>();

    private Autodiff(Graph g) { this.g = g; }

    /** d loss / d node for each node in wrt; loss must be [1,1]. */
    public static Map<Node, Node> gradients(Graph g, Node loss, Collection<Node> wrt) {
        if (!loss.shape().equals(Shape.scalar())) throw new IllegalArgumentException("loss must be [1,1], got " + loss.shape());
        var ad = new Autodiff(g);
        List<Node> order = Graph.topoOrder(List.of(loss));
        Set<Node> needed = reaching(order, new HashSet<>(wrt));
        ad.grads.put(loss, g.constant(1.0));
        for (int i = order.size() - 1; i >= 0; i--) {
            Node n = order.get(i);
            Node gn = ad.grads.get(n);
            if (gn == null || n.op().isLeaf()) continue;
            for (int k = 0; k < n.inputs().size(); k++) {
                Node in = n.in(k);
                if (!needed.contains(in)) continue;
                ad.accumulate(in, g.label(ad.rule(n, k, gn), "d_" + g.labelOf(in, "t" + in.id())));
            }
        }
        var out = new LinkedHashMap<Node, Node>();
        for (Node w : wrt) {
            Node gw = ad.grads.get(w);
            out.put(w, gw == null ? null : gw);
        }
        return out;
    }

    /** Nodes that depend on some node in wrt: only they need gradients. */
    private static Set<Node> reaching(List<Node> order, Set<Node> wrt) {
        var reach = new HashSet<Node>(wrt);
        for (Node n : order) for (Node in : n.inputs()) if (reach.contains(in)) { reach.add(n); break; }
        return reach;
    }

    private void accumulate(Node n, Node grad) {
        grads.merge(n, grad, g::add);
    }

    /** The gradient rules: d loss / d (input k of n), given gn = d loss / d n. */
    private Node rule(Node n, int k, Node gn) {
        Node a = n.in(0), b = n.inputs().size() > 1 ? n.in(1) : null;
        Node other = k == 0 ? b : a;
        Node self = n.in(k);
        return switch (n.op()) {
            case ADD -> unbroadcast(gn, self.shape());
            case SUB -> unbroadcast(k == 0 ? gn : g.unary(Op.NEG, gn), self.shape());
            case MUL -> unbroadcast(g.mul(gn, other), self.shape());
            case DIV -> k == 0 ? unbroadcast(g.div(gn, b), a.shape())
                               : unbroadcast(g.unary(Op.NEG, g.div(g.mul(gn, n), b)), b.shape());
            case NEG -> g.unary(Op.NEG, gn);
            case EXP -> g.mul(gn, n);
            case LOG -> g.div(gn, a);
            case SIN -> g.mul(gn, g.unary(Op.COS, a));
            case COS -> g.unary(Op.NEG, g.mul(gn, g.unary(Op.SIN, a)));
            case SQRT -> g.div(g.mul(gn, 0.5), n);
            case SQUARE -> g.mul(g.mul(gn, a), 2.0);
            case SILU -> g.mul(gn, g.unary(Op.DSILU, a));
            case GELU -> g.mul(gn, g.unary(Op.DGELU, a));
            case RELU -> g.mul(gn, g.unary(Op.STEP, a));
            case BROADCAST -> unbroadcast(gn, a.shape());
            case MEAN_BATCH -> g.meanGrad(gn);
            case REDUCE_COLS -> g.broadcast(gn, a.shape());
            case REDUCE_BATCH -> g.broadcast(gn, a.shape());
            case MATMUL -> k == 0 ? g.matmulNT(gn, b) : g.matmulTN(a, gn);
            case NORMALIZE -> g.normalizeGrad(a, gn);
            case GATHER -> {
                if (k != 0) throw new UnsupportedOperationException("gather: no gradient with respect to its index");
                if (n.inputs().size() < 4) throw new UnsupportedOperationException("gather without order and starts: its table gets no gradient");
                yield g.segmentSum(gn, n.in(2), n.in(3));
            }
            case DSILU, DGELU, STEP, MEAN_GRAD, MATMUL_NT, MATMUL_TN, NORMALIZE_GRAD, SEGMENT_SUM ->
                    throw new UnsupportedOperationException("no gradient rule for " + n.op() + ": second derivatives are not supported");
            case NOISE -> throw new UnsupportedOperationException("noise has no gradient with respect to its seed");
            case INPUT, PARAM, CONST -> throw new IllegalStateException("leaves have no inputs");
        };
    }

    /**
     * Sums a gradient over the dimensions that broadcasting expanded, back to the operand's shape. A table's
     * fixed rows (a value per distinct σ) are summed as 1ᵀ·G, a GEMM, since the batch reduction runs over B rows.
     */
    private Node unbroadcast(Node grad, Shape to) {
        Node r = grad;
        if (to.cols() == 1 && r.shape().cols() != 1) r = g.reduceCols(r);
        if (to.rows() == 1 && r.shape().rows() != 1) {
            if (r.shape().batched()) r = g.reduceBatch(r);
            else {
                double[] ones = new double[r.shape().rows()];
                java.util.Arrays.fill(ones, 1);
                r = g.matmul(g.constRow(ones), r);
            }
        }
        return r;
    }
}
