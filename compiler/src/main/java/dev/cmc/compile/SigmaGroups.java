package dev.cmc.compile;

import dev.cmc.ir.Graph;
import dev.cmc.ir.Shape;
import dev.cmc.model.ConsistencyModelGraph.SigmaTable;

import java.util.Arrays;
import java.util.LinkedHashMap;
import java.util.Map;

/**
 * The host's half of embedding σ once per distinct value: a batch's σ grouped into the arrays a training step
 * compiled with {@code sigmaRows} K reads. Consistency training draws σ from a grid of N levels, so a batch of
 * thousands has at most N − 1 distinct values of each of σ_hi and σ_lo.
 *
 * @param table   the distinct values, ascending, then padding up to K rows (a repeat of the first, so every
 *                row embeds a real σ)
 * @param index   each batch row's entry of the table
 * @param order   the batch rows grouped by entry, ascending within a group
 * @param starts  group k is order[starts[k]] … order[starts[k+1] − 1]; padding rows are empty groups
 */
public record SigmaGroups(float[] table, float[] index, float[] order, float[] starts, int distinct) {

    /** Groups the first {@code batch} values of sigma into a table of {@code rows} entries. */
    public static SigmaGroups of(float[] sigma, int batch, int rows) {
        SigmaGroups g = ofAtMost(sigma, batch, rows);
        if (g == null) throw new IllegalArgumentException("more than " + rows + " distinct σ in a batch compiled for " + rows);
        return g;
    }

    /** As {@link #of}, or null when the values hold more than {@code rows} distinct σ. */
    private static SigmaGroups ofAtMost(float[] sigma, int batch, int rows) {
        // Row numbers travel as floats, like every array cmc allocates: exact up to 2^24.
        if (batch > 1 << 24) throw new IllegalArgumentException("batch " + batch + ": σ groups hold row numbers exactly only up to 16,777,216 rows");
        float[] values = Arrays.copyOf(sigma, batch);
        Arrays.sort(values);
        float[] table = new float[rows];
        int distinct = 0;
        for (int i = 0; i < batch; i++) {
            if (distinct > 0 && Float.compare(values[i], table[distinct - 1]) == 0) continue;
            if (distinct == rows) return null;
            table[distinct++] = values[i];
        }
        Arrays.fill(table, distinct, rows, table[0]);
        float[] index = new float[batch];
        int[] count = new int[rows + 1];
        for (int i = 0; i < batch; i++) {
            int k = Arrays.binarySearch(table, 0, distinct, sigma[i]);
            index[i] = k;
            count[k + 1]++;
        }
        float[] starts = new float[rows + 1];
        for (int k = 0; k < rows; k++) {
            count[k + 1] += count[k];
            starts[k + 1] = count[k + 1];
        }
        float[] order = new float[batch];
        for (int i = 0; i < batch; i++) order[count[(int) index[i]]++] = i;
        return new SigmaGroups(table, index, order, starts, distinct);
    }

    /**
     * The inputs a grouped training step reads besides sigma_hi and sigma_lo, by array name. sigmaLo may be
     * null for a step that has only σ_hi.
     */
    public static Map<String, float[]> inputs(float[] sigmaHi, float[] sigmaLo, int batch, int rows) {
        var out = inputsIfTheyFit(sigmaHi, sigmaLo, batch, rows);
        if (out == null) throw new IllegalArgumentException("more than " + rows + " distinct σ in a batch compiled for " + rows);
        return out;
    }

    /** As {@link #inputs}, or null when σ_hi or σ_lo holds more than {@code rows} distinct values. */
    public static Map<String, float[]> inputsIfTheyFit(float[] sigmaHi, float[] sigmaLo, int batch, int rows) {
        var out = new LinkedHashMap<String, float[]>();
        var hi = ofAtMost(sigmaHi, batch, rows);
        var lo = sigmaLo == null ? null : ofAtMost(sigmaLo, batch, rows);
        if (hi == null || sigmaLo != null && lo == null) return null;
        out.put(tableName("hi"), hi.table);
        out.put(indexName("hi"), hi.index);
        out.put("sigma_order_hi", hi.order);
        out.put("sigma_starts_hi", hi.starts);
        if (lo != null) {
            out.put(tableName("lo"), lo.table);
            out.put(indexName("lo"), lo.index);
        }
        return out;
    }

    /** The graph inputs of one side's table; the grouping for the gradient only where it flows. */
    static SigmaTable table(Graph g, String side, int rows, boolean withGradient) {
        return new SigmaTable(g.input(tableName(side), Shape.fixed(rows, 1)), g.input(indexName(side), Shape.batch(1)),
                withGradient ? g.input("sigma_order_" + side, Shape.batch(1)) : null,
                withGradient ? g.input("sigma_starts_" + side, Shape.fixed(rows + 1, 1)) : null);
    }

    private static String tableName(String side) { return "sigma_table_" + side; }

    private static String indexName(String side) { return "sigma_index_" + side; }
}
