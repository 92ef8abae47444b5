package dev.cmc.kernel;

import java.util.LinkedHashSet;
import java.util.Set;

/** What a kernel reads and writes, by array name: the edges of the task graph. */
public final class Kernels {
    private Kernels() {}

    public static Set<String> writes(Kernel k) {
        var out = new LinkedHashSet<String>();
        for (Expr.Let l : k.epilogue()) if (l.store() != null) out.add(l.store().array());
        switch (k) {
            case Kernel.Transpose t -> out.add(t.dst().array());
            case Kernel.SumSquares s -> out.add(s.out().array());
            case Kernel.AdamEma a -> out.addAll(Set.of("params", "adam_m", "adam_v", "target", "ema"));
            default -> {}
        }
        return out;
    }

    public static Set<String> reads(Kernel k) {
        var out = new LinkedHashSet<String>();
        switch (k) {
            case Kernel.Gemm g -> { out.add(g.a().array()); out.add(g.b().array()); }
            case Kernel.Normalize n -> { collect(n.x(), out); if (n.grad() != null) collect(n.grad(), out); }
            case Kernel.ReduceCols r -> collect(r.x(), out);
            case Kernel.ReduceBatch r -> collect(r.x(), out);
            case Kernel.Transpose t -> out.add(t.src().array());
            case Kernel.SumSquares s -> out.add(s.array());
            case Kernel.AdamEma a -> out.addAll(Set.of("params", "grads", "adam_m", "adam_v", "target", "ema", "scalars"));
            case Kernel.Elementwise e -> {}
        }
        for (Expr.Let l : k.epilogue()) collect(l.value(), out);
        return out;
    }

    public static void collect(Expr e, Set<String> out) {
        switch (e) {
            case Expr.Load l -> out.add(l.buf().array());
            case Expr.Unary u -> collect(u.a(), out);
            case Expr.Binary b -> { collect(b.a(), out); collect(b.b(), out); }
            default -> {}
        }
    }
}
