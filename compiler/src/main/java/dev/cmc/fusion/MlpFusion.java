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
