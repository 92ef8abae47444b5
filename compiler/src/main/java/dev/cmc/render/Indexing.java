package dev.cmc.render;

import dev.cmc.ir.Shape;
import dev.cmc.kernel.Buf;
import dev.cmc.kernel.Expr;
import dev.cmc.kernel.Kernel;
import dev.cmc.kernel.Kernels;

import java.util.List;
import java.util.TreeSet;

/** What every renderer agrees on: how an element of a domain is found in a buffer, and a kernel's arguments. */
public final class Indexing {
    private Indexing() {}

    /** Index of element (row, col) of the domain in buf, broadcasting buf's size-1 dimensions. */
    public static String index(Buf b, Shape domain, String row, String col) {
        boolean rowBcast = b.shape().rows() == 1 && domain.rows() != 1;
        boolean colBcast = b.shape().cols() == 1 && domain.cols() != 1;
        String r = rowBcast ? null : (b.shape().cols() == 1 ? "(" + row + ")" : "(" + row + ") * " + b.shape().cols());
        String c = colBcast ? null : col;
        String idx = r == null && c == null ? "0" : r == null ? c : c == null ? r : r + " + " + c;
        if (row.equals("0") && r != null) idx = c == null ? "0" : c;
        return plus(b.offset(), idx);
    }

    /**
     * The row a gather reads its table at, for element (row, col) of the domain: the index buffer's value
     * there, as an int. {@code load} renders an array element in the target language, e.g. "%s[%s]".
     */
    public static String gatherRow(Expr.Gather g, Shape domain, String row, String col, String load) {
        return "(int) " + load.formatted(identifier(g.index().array()), index(g.index(), domain, row, col));
    }

    /** Whether a load of buf at the domain's element is one value for the whole row (broadcast across columns). */
    public static boolean perRow(Buf b, Shape domain) {
        return b.shape().cols() == 1 && domain.cols() != 1;
    }

    /** The arrays a kernel touches, sorted: its arguments, in this order, on every backend. */
    public static List<String> arguments(Kernel k) {
        var names = new TreeSet<String>(Kernels.reads(k));
        names.addAll(Kernels.writes(k));
        return List.copyOf(names);
    }

    public static String identifier(String array) {
        return array.replaceAll("[^A-Za-z0-9_]", "_");
    }

    public static String plus(int offset, String expr) {
        return offset == 0 ? expr : offset + " + " + expr;
    }
}
