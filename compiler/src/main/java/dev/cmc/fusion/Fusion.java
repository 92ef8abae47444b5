package dev.cmc.fusion;

import dev.cmc.ir.Graph;
import dev.cmc.ir.Node;
import dev.cmc.ir.Op;
import dev.cmc.ir.Shape;
import dev.cmc.kernel.*;
import dev.cmc.kernel.Expr.Let;

import java.util.*;

/**
 * Tensor IR to kernel IR. Every non-elementwise op is an anchor (a GEMM, a normalisation, a reduction) and
 * becomes one kernel. Each anchor then absorbs the elementwise ops that consume it in the same shape (bias,
 * activation, residual, the skip-parameterised output, the loss), and elementwise ops with one consumer are
 * inlined into it. What is left becomes elementwise kernels, each also taking the later elementwise ops of its
 * shape that read it and would have been kernels of their own, so that a chain of them (noise, the noised
 * point, its scaling) is one launch and one pass over memory. Kernels are ordered by the arrays they share.
 */
public final class Fusion {
    private final Graph graph;
    private final Map<Node, Buf> bound;
    private final Map<String, Program.Array> declared;
    private final List<Node> order;
    private final Map<Node, List<Node>> consumers = new HashMap<>();
    private final Map<Node, Node> owner = new HashMap<>();
    private final Map<Node, List<Node>> absorbed = new LinkedHashMap<>();
    /** The elementwise kernels: each one's first node, which owns itself, and the nodes it took in, in order. */
    private final Map<Node, List<Node>> groups = new LinkedHashMap<>();
    private final Map<Node, Buf> buffers = new HashMap<>();
    private final Set<Node> outputs;
    private final Map<String, Program.Array> arrays = new LinkedHashMap<>();
    private final List<Kernel> kernels = new ArrayList<>();
    private final Map<Node, Kernel.Transpose> transposes = new LinkedHashMap<>();

    private Fusion(Graph graph, Map<Node, Buf> bound, Map<String, Program.Array> declared) {
        this.graph = graph;
        this.bound = bound;
        this.declared = declared;
        this.outputs = new LinkedHashSet<>();
        for (Node n : bound.keySet()) if (!n.op().isLeaf()) outputs.add(n);
        this.order = Graph.topoOrder(outputs);
    }

    /**
     * @param bound where leaves (inputs, parameters) live and where results must be stored
     * @param declared the arrays that {@code bound} names; fusion adds activations, constants and transposes
     */
    public static Program fuse(String name, Graph graph, Map<Node, Buf> bound, Map<String, Program.Array> declared) {
        return new Fusion(graph, bound, declared).run(name);
    }

    private Program run(String name) {
        for (Node n : order) for (Node in : n.inputs()) consumers.computeIfAbsent(in, k -> new ArrayList<>()).add(n);
        for (Node n : order) if (isAnchor(n)) absorb(n);
        for (Node n : order) if (n.op().isElementwise() && !owner.containsKey(n) && materialized(n)) group(n);
        for (Node n : order) {
            if (isAnchor(n)) kernels.add(anchorKernel(n));
            else if (groups.containsKey(n)) kernels.add(elementwiseKernel(n));
        }
        var all = new ArrayList<Kernel>(transposes.values());
        all.addAll(kernels);
        return new Program(name, List.copyOf(arrays.values()), schedule(all));
    }

    // ---- which nodes become kernels, and which are absorbed into them ----

    private static boolean isAnchor(Node n) {
        return !n.op().isLeaf() && !n.op().isElementwise();
    }

    /** Anchors that take their input as an inlined expression rather than a buffer. */
    private static boolean takesExpression(Node anchor) {
        return switch (anchor.op()) {
            case NORMALIZE, NORMALIZE_GRAD, REDUCE_COLS, REDUCE_BATCH, MEAN_BATCH, SEGMENT_SUM -> true;
            default -> false;
        };
    }

    /**
     * Grows the anchor's epilogue with elementwise consumers of the same shape whose other inputs are ready, but
     * for those better computed where they are read ({@link #leftToItsReader}).
     */
    private void absorb(Node anchor) {
        var set = new LinkedHashSet<Node>();
        set.add(anchor);
        boolean grew = true;
        while (grew) {
            grew = false;
            for (Node n : List.copyOf(set)) {
                for (Node c : consumers.getOrDefault(n, List.of())) {
                    if (set.contains(c) || owner.containsKey(c) || !c.op().isElementwise() || !c.shape().equals(anchor.shape())) continue;
                    if (leftToItsReader(c, anchor)) continue;
                    boolean ready = true;
                    for (Node in : c.inputs()) if (!set.contains(in) && dependsOnAny(in, set)) { ready = false; break; }
                    if (ready) { set.add(c); grew = true; }
                }
            }
        }
        var list = new ArrayList<Node>();
        for (Node n : order) if (set.contains(n) && n != anchor) { list.add(n); owner.put(n, anchor); }
        absorbed.put(anchor, list);
    }

    /**
     * Whether elementwise op c, which reads the anchor, is better left out of the anchor's epilogue and inlined
     * into its one reader: an anchor that takes its input as an expression (a normalisation, a reduction), while
     * the anchor's own value is stored anyway for a reader that is not elementwise, and c's other inputs do not
     * come from the anchor (the reader loads them, or computes them from what it loads). In the epilogue c would
     * be one more store and its inputs more loads, where its reader can compute it from what it reads anyway:
     * the LayerNorm's input gradient was a GEMM storing three [B, 256] arrays (its own, and its products with
     * the gain and with x̂, each read once by a normalisation or a batch sum), 55 µs on an H200 where the
     * down-projection of the same shape storing one took 42.
     */
    private boolean leftToItsReader(Node c, Node anchor) {
        List<Node> readers = consumers.getOrDefault(c, List.of());
        if (readers.size() != 1 || outputs.contains(c) || !isAnchor(readers.getFirst()) || !takesExpression(readers.getFirst())) return false;
        boolean storedAnyway = outputs.contains(anchor) || consumers.getOrDefault(anchor, List.of()).stream().anyMatch(Fusion::isAnchor);
        return storedAnyway && c.inputs().stream().allMatch(in -> in == anchor || !dependsOnAny(in, Set.of(anchor)));
    }

    /**
     * An elementwise kernel from its first node: it takes in, transitively, the elementwise ops of the same shape
     * that read what it computes, would each have been a kernel of their own (they are stored: several read
     * them, or an anchor, or they are results) and whose other inputs do not wait for it ({@link #readyInside}).
     * A gather, which reads its table at other rows than its own, never joins. What the kernel computes is stored
     * only where something outside it reads it.
     */
    private void group(Node root) {
        var set = new LinkedHashSet<Node>(List.of(root));
        boolean grew = true;
        while (grew) {
            grew = false;
            for (Node c : readersThroughInlined(set)) {
                if (set.contains(c) || owner.containsKey(c) || !c.op().isElementwise() || c.op() == Op.GATHER
                        || !c.shape().equals(root.shape()) || !materialized(c)) continue;
                if (c.inputs().stream().allMatch(in -> readyInside(in, set))) { set.add(c); grew = true; }
            }
        }
        // The unstored ops between them (σ·z between z and x + σ·z) are lets of the kernel too, so that nothing
        // outside it reads what it computes through them, and what only they read need not be stored.
        var inside = new HashSet<Node>(set);
        var stack = new ArrayDeque<Node>(set);
        while (!stack.isEmpty()) {
            for (Node in : stack.pop().inputs()) {
                if (!inside.contains(in) && inlined(in) && dependsOnAny(in, set)) { inside.add(in); stack.push(in); }
            }
        }
        var members = new ArrayList<Node>();
        for (Node n : order) if (inside.contains(n)) { members.add(n); owner.put(n, root); }
        groups.put(root, members);
    }

    /** An elementwise op computed where it is read rather than stored (a gather never is, see {@link #materialized}). */
    private boolean inlined(Node n) {
        return n.op().isElementwise() && n.op() != Op.GATHER && !owner.containsKey(n) && !materialized(n);
    }

    /** The nodes that read the set's values, directly or through elementwise ops inlined where they are read. */
    private List<Node> readersThroughInlined(Set<Node> set) {
        var out = new ArrayList<Node>();
        var stack = new ArrayDeque<Node>(set);
        var seen = new HashSet<Node>();
        while (!stack.isEmpty()) {
            for (Node c : consumers.getOrDefault(stack.pop(), List.of())) {
                if (!seen.add(c)) continue;
                out.add(c);
                if (inlined(c)) stack.push(c);
            }
        }
        return out;
    }

    /**
     * Whether an elementwise kernel computing {@code set} can read n where it computes a new member: n is in the
     * set, or is inlined there (an unstored elementwise op, not a gather) from what it can read, or is in memory
     * that nothing in the set has to be computed first for.
     */
    private boolean readyInside(Node n, Set<Node> set) {
        if (set.contains(n)) return true;
        if (inlined(n)) return n.inputs().stream().allMatch(in -> readyInside(in, set));
        return !dependsOnAny(n, set);
    }

    private boolean dependsOnAny(Node n, Set<Node> targets) {
        var seen = new HashSet<Node>();
        var stack = new ArrayDeque<Node>(List.of(n));
        while (!stack.isEmpty()) {
            Node x = stack.pop();
            if (targets.contains(x)) return true;
            if (seen.add(x)) stack.addAll(x.inputs());
        }
        return false;
    }

    /** Does n live in a buffer (rather than being recomputed inline where it is used)? */
    private boolean materialized(Node n) {
        if (n.op() == Op.CONST) return n.shape().cols() > 1 || n.shape().rows() > 1;
        if (n.op().isLeaf() || isAnchor(n) || outputs.contains(n)) return true;
        List<Node> cs = consumers.getOrDefault(n, List.of());
        for (Node c : cs) if (c.op() == Op.GATHER && c.in(0) == n) return true;   // a gather reads its table at other rows
        Node own = owner.get(n);
        if (own != null) {
            for (Node c : cs) if (owner.get(c) != own) return true;
            return false;
        }
        if (cs.size() != 1) return true;
        Node c = cs.getFirst();
        if (isAnchor(c)) return !takesExpression(c);
        // A small operand broadcast into a larger elementwise op is computed once, not once per column.
        return !c.shape().equals(n.shape());
    }

    // ---- buffers ----

    private Buf bufferOf(Node n) {
        Buf b = buffers.get(n);
        if (b != null) return b;
        b = bound.get(n);
        if (b == null && n.op() == Op.CONST) {
            b = Buf.whole("const_" + n.id(), n.shape());
            arrays.put(b.array(), new Program.Array(b.array(), Program.Role.CONST, n.shape(), n.values()));
        } else if (b == null) {
            String name = graph.labelOf(n, "t" + n.id());
            if (arrays.containsKey(name)) name = name + "_" + n.id();
            b = Buf.whole(name, n.shape());
            arrays.put(b.array(), new Program.Array(b.array(), Program.Role.ACTIVATION, n.shape(), null));
        } else {
            declare(b);
        }
        buffers.put(n, b);
        return b;
    }

    private void declare(Buf b) {
        if (arrays.containsKey(b.array())) return;
        Program.Array a = declared.get(b.array());
        if (a == null) throw new IllegalArgumentException("array " + b.array() + " is bound but not declared");
        arrays.put(b.array(), a);
    }

    /**
     * Input gradients read weights transposed, so each weight used by a G·Wᵀ gets a transposed copy. A
     * fixed-row activation (a table computed once per distinct σ) gets one too, for Aᵀ·G as a plain A·B.
     */
    private Buf transposedOf(Node w) {
        Buf src = bufferOf(w);
        return transposes.computeIfAbsent(w, k -> {
            Shape shape = Shape.fixed(src.shape().cols(), src.shape().rows());
            Program.Array whole = declared.get(src.array());
            Buf dst = whole == null ? Buf.whole(src.array() + "_t", shape) : new Buf(src.array() + "_t", src.offset(), shape);
            arrays.putIfAbsent(dst.array(), whole == null ? new Program.Array(dst.array(), Program.Role.ACTIVATION, shape, null)
                    : new Program.Array(dst.array(), Program.Role.PARAMS_T, whole.shape(), null));
            return new Kernel.Transpose("k_transpose_" + graph.labelOf(w, "w" + w.id()), src, dst);
        }).dst();
    }

    // ---- expressions ----

    /** n as seen from inside the kernel of {@code anchor}: an anchor's value, or the first node of an elementwise kernel. */
    private Expr expr(Node n, Node anchor) {
        if (n == anchor) return groups.containsKey(n) ? new Expr.Var(n.id()) : new Expr.Acc();
        if (anchor != null && owner.get(n) == anchor) return new Expr.Var(n.id());
        if (n.op() == Op.CONST && !materialized(n)) return new Expr.Const(n.values()[0]);
        if (materialized(n)) return new Expr.Load(bufferOf(n));
        return inline(n, anchor);
    }

    private Expr inline(Node n, Node anchor) {
        return switch (n.op()) {
            case BROADCAST -> expr(n.in(0), anchor);
            case GATHER -> new Expr.Gather(bufferOf(n.in(0)), bufferOf(n.in(1)));
            case MEAN_GRAD -> new Expr.Binary(Op.DIV, expr(n.in(0), anchor), new Expr.Rows());
            case NOISE -> new Expr.Noise(expr(n.in(0), anchor), expr(n.in(1), anchor), n.shape().cols());
            default -> n.op().arity() == 1 ? new Expr.Unary(n.op(), expr(n.in(0), anchor))
                                           : new Expr.Binary(n.op(), expr(n.in(0), anchor), expr(n.in(1), anchor));
        };
    }

    private List<Let> epilogue(Node anchor) {
        var lets = new ArrayList<Let>();
        if (needsStore(anchor)) lets.add(new Let(anchor.id(), new Expr.Acc(), bufferOf(anchor)));
        for (Node n : absorbed.getOrDefault(anchor, List.of())) {
            lets.add(new Let(n.id(), inline(n, anchor), materialized(n) ? bufferOf(n) : null));
        }
        return lets;
    }

    /** An anchor's own value is stored when something outside its epilogue reads it. */
    private boolean needsStore(Node anchor) {
        if (outputs.contains(anchor)) return true;
        for (Node c : consumers.getOrDefault(anchor, List.of())) if (owner.get(c) != anchor) return true;
        return false;
    }

    private Kernel anchorKernel(Node n) {
        String name = "k_" + n.op().name().toLowerCase() + "_" + graph.labelOf(n, "t" + n.id());
        List<Let> epi = epilogue(n);
        return switch (n.op()) {
            case MATMUL -> new Kernel.Gemm(name, false, bufferOf(n.in(0)), bufferOf(n.in(1)), n.in(0).shape().cols(), n.shape(), epi);
            case MATMUL_NT -> new Kernel.Gemm(name, false, bufferOf(n.in(0)), transposedOf(n.in(1)), n.in(0).shape().cols(), n.shape(), epi);
            case MATMUL_TN -> n.in(0).shape().batched()
                    ? new Kernel.Gemm(name, true, bufferOf(n.in(0)), bufferOf(n.in(1)), Shape.BATCH, n.shape(), epi)
                    : new Kernel.Gemm(name, false, transposedOf(n.in(0)), bufferOf(n.in(1)), n.in(0).shape().rows(), n.shape(), epi);
            case NORMALIZE -> new Kernel.Normalize(name, expr(n.in(0), null), null, n.shape(), epi);
            case NORMALIZE_GRAD -> new Kernel.Normalize(name, expr(n.in(0), null), expr(n.in(1), null), n.shape(), epi);
            case REDUCE_COLS -> new Kernel.ReduceCols(name, expr(n.in(0), null), n.in(0).shape().cols(), n.shape(), epi);
            case REDUCE_BATCH -> new Kernel.ReduceBatch(name, expr(n.in(0), null), false, n.shape(), epi);
            case MEAN_BATCH -> new Kernel.ReduceBatch(name, expr(n.in(0), null), true, n.shape(), epi);
            case SEGMENT_SUM -> new Kernel.SegmentSum(name, expr(n.in(0), null), bufferOf(n.in(1)), bufferOf(n.in(2)), n.shape(), epi);
            default -> throw new IllegalStateException("not an anchor: " + n);
        };
    }

    /** The elementwise kernel whose first node is root: a let for it and each node it took in, stored where read outside. */
    private Kernel elementwiseKernel(Node root) {
        String name = "k_ew_" + graph.labelOf(root, root.op().name().toLowerCase() + root.id());
        var lets = new ArrayList<Let>();
        for (Node n : groups.get(root)) lets.add(new Let(n.id(), inline(n, root), materialized(n) ? bufferOf(n) : null));
        return new Kernel.Elementwise(name, root.shape(), lets);
    }

    // ---- launch order ----

    /** Kahn's algorithm over read-after-write edges, keeping the graph's order where it is free to. */
    private static List<Kernel> schedule(List<Kernel> ks) {
        var writers = new HashMap<String, List<Integer>>();
        for (int i = 0; i < ks.size(); i++) for (String a : Kernels.writes(ks.get(i))) writers.computeIfAbsent(a, k -> new ArrayList<>()).add(i);
        var deps = new ArrayList<Set<Integer>>();
        for (int i = 0; i < ks.size(); i++) {
            var d = new TreeSet<Integer>();
            for (String a : Kernels.reads(ks.get(i))) for (int w : writers.getOrDefault(a, List.of())) if (w != i) d.add(w);
            deps.add(d);
        }
        var done = new boolean[ks.size()];
        var out = new ArrayList<Kernel>();
        while (out.size() < ks.size()) {
            int pick = -1;
            for (int i = 0; i < ks.size() && pick < 0; i++) {
                if (done[i]) continue;
                boolean ready = true;
                for (int d : deps.get(i)) if (!done[d]) { ready = false; break; }
                if (ready) pick = i;
            }
            if (pick < 0) throw new IllegalStateException("kernel dependencies form a cycle");
            done[pick] = true;
            out.add(ks.get(pick));
        }
        return out;
    }
}
