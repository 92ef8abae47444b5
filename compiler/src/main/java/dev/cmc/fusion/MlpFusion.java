package dev.cmc.fusion;

import dev.cmc.kernel.Buf;
import dev.cmc.kernel.Expr;
import dev.cmc.kernel.Kernel;
import dev.cmc.kernel.Kernels;
import dev.cmc.kernel.Program;

import java.util.*;
import java.util.function.Predicate;

/**
 * Kernel IR to kernel IR: each residual MLP block, a LayerNorm, its up-projection and its down-projection, becomes
 * one {@link Kernel.Mlp} where both intermediates are private to the chain: the normalised rows are stored by
 * the LayerNorm alone and read by the up-projection alone, the hidden activation stored by the up-projection
 * alone and read by the down-projection alone. Then neither needs memory: their arrays leave the program. A
 * sampler's blocks qualify, and so do a training step's EMA-target blocks (no gradient reads them); the student's
 * do not, since its backward pass reads both. Which chains a renderer can run as one is its to say ({@code fits}).
 */
public final class MlpFusion {
    private MlpFusion() {}

    public static Program fuse(Program p, Predicate<Kernel.Mlp> fits) {
        List<Kernel> ks = p.kernels();
        var readers = new HashMap<String, List<Integer>>();
        for (int i = 0; i < ks.size(); i++) for (String a : Kernels.reads(ks.get(i))) readers.computeIfAbsent(a, x -> new ArrayList<>()).add(i);
        var replaced = new HashMap<Integer, Kernel>();
        var gone = new HashSet<Integer>();
        var dropped = new HashSet<String>();
        for (int i = 0; i < ks.size(); i++) {
            if (!(ks.get(i) instanceof Kernel.Normalize norm) || norm.grad() != null) continue;
            Buf normalized = privateOutput(p, norm);
            Integer up = normalized == null ? null : onlyReader(readers, ks, normalized);
            if (up == null || !(ks.get(up) instanceof Kernel.Gemm upGemm)) continue;
            Buf hidden = privateOutput(p, upGemm);
            Integer down = hidden == null ? null : onlyReader(readers, ks, hidden);
            if (down == null || !(ks.get(down) instanceof Kernel.Gemm downGemm)) continue;
            var mlp = new Kernel.Mlp(name(downGemm), norm, upGemm, downGemm);
            if (!fits.test(mlp)) continue;
            replaced.put(down, mlp);
            gone.add(i);
            gone.add(up);
            dropped.add(normalized.array());
            dropped.add(hidden.array());
        }
        if (replaced.isEmpty()) return p;
        var kernels = new ArrayList<Kernel>();
        // The block at its down-projection's place: everything it reads is written before that, as before.
        for (int i = 0; i < ks.size(); i++) if (!gone.contains(i)) kernels.add(replaced.getOrDefault(i, ks.get(i)));
        var arrays = new ArrayList<Program.Array>();
        for (Program.Array a : p.arrays()) if (!dropped.contains(a.name())) arrays.add(a);
        return new Program(p.name(), List.copyOf(arrays), List.copyOf(kernels));
    }

    /**
     * The program with each fused block reading its weights transposed ({@link Kernel.Mlp#withTransposedWeights}),
     * each weight transposed by a {@link Kernel.Transpose} just before its block, into the array's "_t" copy at the
     * same offset (as the input gradients' transposed weights are, {@link Fusion}): Hopper's TF32 wgmma reads both
     * operands K-major only, and a weight [K, N] lies N-major. A few microseconds a program for 2 MB a block.
     */
    public static Program withTransposedWeights(Program p) {
        var kernels = new ArrayList<Kernel>();
        var arrays = new ArrayList<>(p.arrays());
        for (Kernel k : p.kernels()) {
            if (!(k instanceof Kernel.Mlp m) || m.transposedWeights()) {
                kernels.add(k);
                continue;
            }
            Buf upT = transposed(m.up(), p, arrays, kernels), downT = transposed(m.down(), p, arrays, kernels);
            kernels.add(m.withTransposedWeights(upT, downT));
        }
        return new Program(p.name(), List.copyOf(arrays), List.copyOf(kernels));
    }

    /**
     * The program with each run of consecutive fused blocks (their weights transposed, as {@link #withTransposedWeights}
     * leaves them) as one {@link Kernel.MlpChain}, where each block's output feeds the next one on chip. Block c
     * follows block b in a chain where b's output is a batched activation that c alone reads, as its LayerNorm's
     * input and as its residual, which its down-projection's epilogue adds to the accumulator and the bias:
     * the renderer then starts c's accumulators at that residual, the residual stream never leaving the chip,
     * which is exact only for such a sum. Only Transposes (of other blocks' weights) may lie between them; they
     * move ahead of the chain, which takes its last block's place, where everything it reads is written. The
     * input projection before the first block may start the chain as its stem ({@link #isStem}), the output
     * projection after the last end it as its head ({@link #isHead}); then the chain takes the head's place,
     * and both their weights are transposed by Transposes ahead of it.
     */
    public static Program chain(Program p) {
        List<Kernel> ks = p.kernels();
        var readers = new HashMap<String, List<Integer>>();
        for (int i = 0; i < ks.size(); i++) for (String a : Kernels.reads(ks.get(i))) readers.computeIfAbsent(a, x -> new ArrayList<>()).add(i);
        var kernels = new ArrayList<Kernel>();
        var arrays = new ArrayList<>(p.arrays());
        var dropped = new HashSet<String>();
        var open = new Open();
        for (int i = 0; i < ks.size(); i++) {
            Kernel k = ks.get(i);
            List<Integer> readsOpen = open.blocks.isEmpty() ? List.of() : readers.getOrDefault(open.blocks.getLast().output().array(), List.of());
            if (k instanceof Kernel.Mlp m && m.transposedWeights()) {
                if (!open.blocks.isEmpty() && open.blocks.getLast().up().domain().equals(m.up().domain())
                        && handsOn(p, open.blocks.getLast().output(), m, readsOpen, i)) {
                    dropped.add(open.blocks.getLast().output().array());
                } else {
                    open.close(kernels, null, null);
                    int before = kernels.size() - 1;
                    while (before >= 0 && kernels.get(before) instanceof Kernel.Transpose) before--;
                    if (before >= 0 && kernels.get(before) instanceof Kernel.Gemm g && isStem(p, g, m, readers, i)) {
                        kernels.remove(before);
                        dropped.add(g.output().array());
                        open.stem = g;
                        open.stemT = transposed(g, p, arrays, kernels);
                    }
                }
                open.blocks.add(m);
            } else if (k instanceof Kernel.Transpose t && !open.blocks.isEmpty() && !t.src().array().equals(open.blocks.getLast().output().array())) {
                kernels.add(k);
            } else if (k instanceof Kernel.Gemm g && !open.blocks.isEmpty() && isHead(p, open.blocks.getLast(), g, readsOpen, i)) {
                dropped.add(open.blocks.getLast().output().array());
                open.close(kernels, g, transposed(g, p, arrays, kernels));
            } else {
                open.close(kernels, null, null);
                kernels.add(k);
            }
        }
        open.close(kernels, null, null);
        if (dropped.isEmpty()) return p;
        arrays.removeIf(a -> dropped.contains(a.name()));
        return new Program(p.name(), List.copyOf(arrays), List.copyOf(kernels));
    }

    /** The blocks of the chain being built, and the stem before them, if any. */
    private static final class Open {
        final List<Kernel.Mlp> blocks = new ArrayList<>();
        Kernel.Gemm stem;
        Buf stemT;

        /**
         * The chain into the kernel list, with this head (or none): one block alone as it is, anything more as a
         * chain named for what it reads first and writes last ("k_mlp_block0_h_to_block3_h", "k_mlp_h_in_to_out").
         */
        void close(List<Kernel> kernels, Kernel.Gemm head, Buf headT) {
            if (blocks.size() == 1 && stem == null && head == null) kernels.add(blocks.getFirst());
            if (blocks.size() > 1 || (!blocks.isEmpty() && (stem != null || head != null))) {
                String from = stem != null ? stem.output().array() : blocks.getFirst().name().replaceFirst("^k_mlp_", "");
                String to = head != null ? head.output().array() : blocks.getLast().output().array();
                kernels.add(new Kernel.MlpChain("k_mlp_" + from + "_to_" + to, stem, stemT, List.copyOf(blocks), head, headT));
            }
            blocks.clear();
            stem = null;
            stemT = null;
        }
    }

    /**
     * Whether GEMM g, the last kernel before block m (kernel `at`) but Transposes, can start the chain m starts, as
     * its stem (the network's input projection): an NN GEMM over the batch whose one output is m's input, which m
     * alone reads, as block c reads block b's in {@link #handsOn}; its A a batched array of d columns, a whole
     * number of weight slices deep (4096/h of K: d a multiple of 32 at h = 128, of 16 at 256) and at most h; its
     * weight fixed, at a 16-byte boundary.
     */
    private static boolean isStem(Program p, Kernel.Gemm g, Kernel.Mlp m, Map<String, List<Integer>> readers, int at) {
        Buf out = g.output();
        if (g.transposeA() || !g.domain().batched() || out == null) return false;
        int h = m.domain().cols(), d = g.k();
        if (!g.domain().equals(m.domain()) || !g.a().shape().batched() || g.a().offset() != 0 || g.a().shape().cols() != d) return false;
        if (g.b().shape().batched() || g.b().offset() % 4 != 0 || d % (4096 / h) != 0 || d > h) return false;
        return sumWith(g.epilogue(), null) && handsOn(p, out, m, readers.getOrDefault(out.array(), List.of()), at);
    }

    /**
     * Whether GEMM g (kernel `at`) can end a chain whose last block is b, as its head: an NN GEMM over the batch
     * whose A is b's output, a batched activation that g alone reads (as A only), its weight fixed, at a 16-byte
     * boundary, K = h, and d = 32, 64, 128 or 256 columns, at most h: a weight slice of 4,096 floats is then
     * 4096/d of K deep, a whole number of 16-deep steps that a head's copies take as a block's do (PtxWgmmaMlp).
     */
    private static boolean isHead(Program p, Kernel.Mlp b, Kernel.Gemm g, List<Integer> readers, int at) {
        Buf out = b.output();
        int h = b.domain().cols(), d = g.domain().cols();
        if (out == null || out.offset() != 0 || !out.shape().batched() || p.array(out.array()).role() != Program.Role.ACTIVATION) return false;
        if (!readers.equals(List.of(at)) || g.transposeA() || !g.domain().batched() || !g.a().equals(out) || mentions(g.epilogue(), out) > 0) return false;
        if (g.b().shape().batched() || g.b().offset() % 4 != 0 || g.k() != h || Kernels.writes(g).size() != 1) return false;
        return (d == 32 || d == 64 || d == 128 || d == 256) && d <= h;
    }

    /** Whether out (block b's output, or a stem's) can reach block c (kernel `at`) on chip: see {@link #chain}. */
    private static boolean handsOn(Program p, Buf out, Kernel.Mlp c, List<Integer> readers, int at) {
        if (out == null || out.offset() != 0 || !out.shape().batched() || p.array(out.array()).role() != Program.Role.ACTIVATION) return false;
        if (!readers.equals(List.of(at)) || !c.norm().x().equals(new Expr.Load(out))) return false;
        if (!out.shape().equals(c.domain())) return false;
        if (mentions(c.norm().epilogue(), out) + mentions(c.up().epilogue(), out) > 0) return false;
        return mentions(c.down().epilogue(), out) == 1 && sumWith(c.down().epilogue(), out);
    }

    /**
     * Whether the epilogue's one stored value is a sum whose terms are the accumulator once, a load of residual
     * once (where one is named), and terms that read neither: what lets a kernel start the accumulator at the
     * other terms, or at the residual, instead of adding them after.
     */
    private static boolean sumWith(List<Expr.Let> epilogue, Buf residual) {
        Expr.Let stored = null;
        var values = new HashMap<Integer, Expr>();
        for (Expr.Let l : epilogue) {
            values.put(l.id(), inlined(l.value(), values));
            if (l.store() != null) stored = l;
        }
        if (stored == null) return false;
        var terms = new ArrayList<Expr>();
        addends(values.get(stored.id()), terms);
        int accs = 0, residuals = 0;
        for (Expr t : terms) {
            if (t instanceof Expr.Acc) accs++;
            else if (residual != null && t.equals(new Expr.Load(residual))) residuals++;
            else if (has(t, e -> e instanceof Expr.Acc || (residual != null && e.equals(new Expr.Load(residual))))) return false;
        }
        return accs == 1 && residuals == (residual == null ? 0 : 1);
    }

    /** e with every Var replaced by the value it names. */
    private static Expr inlined(Expr e, Map<Integer, Expr> values) {
        return switch (e) {
            case Expr.Var v -> values.get(v.id());
            case Expr.Unary u -> new Expr.Unary(u.op(), inlined(u.a(), values));
            case Expr.Binary b -> new Expr.Binary(b.op(), inlined(b.a(), values), inlined(b.b(), values));
            default -> e;
        };
    }

    /** The terms of a sum: e's addends, through nested additions. */
    private static void addends(Expr e, List<Expr> out) {
        if (e instanceof Expr.Binary b && b.op() == dev.cmc.ir.Op.ADD) {
            addends(b.a(), out);
            addends(b.b(), out);
        } else {
            out.add(e);
        }
    }

    private static boolean has(Expr e, Predicate<Expr> what) {
        if (what.test(e)) return true;
        return switch (e) {
            case Expr.Unary u -> has(u.a(), what);
            case Expr.Binary b -> has(b.a(), what) || has(b.b(), what);
            case Expr.Noise n -> has(n.seed(), what) || has(n.firstRow(), what);
            default -> false;
        };
    }

    /** How many of the lets' expressions read buf's array (a Load of it, or a Gather from it). */
    private static int mentions(List<Expr.Let> lets, Buf buf) {
        int n = 0;
        for (Expr.Let l : lets) n += count(l.value(), buf.array());
        return n;
    }

    private static int count(Expr e, String array) {
        return switch (e) {
            case Expr.Load l -> l.buf().array().equals(array) ? 1 : 0;
            case Expr.Gather g -> (g.table().array().equals(array) ? 1 : 0) + (g.index().array().equals(array) ? 1 : 0);
            case Expr.Unary u -> count(u.a(), array);
            case Expr.Binary b -> count(b.a(), array) + count(b.b(), array);
            case Expr.Noise n -> count(n.seed(), array) + count(n.firstRow(), array);
            default -> 0;
        };
    }

    /**
     * A Transpose of the GEMM's weight into its array's "_t" copy (declared like the weight's array, if not yet),
     * added to kernels and named after the GEMM (k_matmul_block0_up_mm: k_transpose_block0_up_w); its destination.
     */
    private static Buf transposed(Kernel.Gemm g, Program p, List<Program.Array> arrays, List<Kernel> kernels) {
        Buf w = g.b();
        String name = w.array() + "_t";
        if (arrays.stream().noneMatch(a -> a.name().equals(name))) {
            Program.Array whole = p.array(w.array());
            arrays.add(new Program.Array(name, whole.role() == Program.Role.PARAMS ? Program.Role.PARAMS_T : Program.Role.ACTIVATION, whole.shape(), null));
        }
        Buf dst = new Buf(name, w.offset(), dev.cmc.ir.Shape.fixed(w.shape().cols(), w.shape().rows()));
        kernels.add(new Kernel.Transpose(g.name().replaceFirst("^k_matmul_", "k_transpose_").replaceFirst("_mm$", "_w"), w, dst));
        return dst;
    }

    /** The kernel's one stored value, if it is a whole batched activation (not an output the host reads). */
    private static Buf privateOutput(Program p, Kernel k) {
        Buf out = null;
        for (Expr.Let l : k.epilogue()) {
            if (l.store() == null) continue;
            if (out != null) return null;
            out = l.store();
        }
        if (out == null || out.offset() != 0 || !out.shape().batched() || !out.shape().equals(k.domain())) return null;
        return p.array(out.array()).role() == Program.Role.ACTIVATION ? out : null;
    }

    /** The one kernel that reads buf, if it reads it only as an NN GEMM's A, over the batch. */
    private static Integer onlyReader(Map<String, List<Integer>> readers, List<Kernel> ks, Buf buf) {
        List<Integer> rs = readers.getOrDefault(buf.array(), List.of());
        if (rs.size() != 1 || !(ks.get(rs.getFirst()) instanceof Kernel.Gemm g)) return null;
        if (g.transposeA() || !g.a().equals(buf) || !g.domain().batched()) return null;
        long uses = Kernels.readRanges(g).stream().filter(r -> r.array().equals(buf.array())).count();
        return uses == 1 ? rs.getFirst() : null;
    }

    /** k_mlp_ and the array the block's output goes to ("k_mlp_block0_h"). */
    private static String name(Kernel.Gemm down) {
        for (Expr.Let l : down.epilogue()) if (l.store() != null) return "k_mlp_" + l.store().array();
        return down.name().replaceFirst("^k_matmul_", "k_mlp_");
    }
}
