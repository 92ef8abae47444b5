package dev.cmc.kernel;

import dev.cmc.ir.Shape;

import java.util.List;

/**
 * The program behind "fraction of peak": one kernel of independent FMA chains and nothing else, which each
 * renderer writes in its own language ({@code renderPeak}) and each runtime loads like any program. A run at
 * batch U does U units of work, each {@link #ITERATIONS} rounds of {@link #CHAINS} independent vector FMAs
 * (independent so that FMA latency hides behind throughput) and writes one float per unit so none is elided.
 */
public final class PeakFma {
    private PeakFma() {}

    public static final int ITERATIONS = 1 << 10, CHAINS = 12;

    public static Program program() {
        Buf out = Buf.whole("out", Shape.batch(1));
        var kernel = new Kernel.Elementwise("k_peak_fma", Shape.batch(1), List.of(new Expr.Let(0, new Expr.Const(0), out)));
        return new Program("peak_fma", List.of(new Program.Array("out", Program.Role.OUTPUT, Shape.batch(1), null)), List.of(kernel));
    }

    /** Floating-point operations of a run of units, with vectors this many lanes wide (an FMA counts two). */
    public static double flops(int units, int lanes) {
        return 2.0 * ITERATIONS * CHAINS * lanes * units;
    }
}
