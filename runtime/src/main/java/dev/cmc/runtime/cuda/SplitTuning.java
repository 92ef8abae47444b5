package dev.cmc.runtime.cuda;

import dev.cmc.runtime.OnOffSetting;
import dev.cmc.runtime.UserCache;

import java.util.List;
import java.util.Properties;
import java.util.StringJoiner;
import java.util.function.IntFunction;

/**
 * Split-K slice counts chosen by timing them on the GPU, per program and batch size. How many K slices fill a
 * GPU best depends on what one block's slice costs against the last block's sum of the slices, which a formula
 * ({@link dev.cmc.render.PtxRenderer#splits}) can only guess at: the first run at a batch size times each GEMM
 * at every count {@link dev.cmc.render.PtxRenderer#splitChoices} offers and keeps the fastest. The counts are
 * kept in cuda-splits.properties in the {@link UserCache}, by device, program text and batch, so that a program
 * is timed once per machine and a later run (a resumed training) launches exactly what the first did.
 */
final class SplitTuning {
    /** A count other than the formula's is taken only if it is this much faster, so that timing noise does not flip choices. */
    static final double MARGIN = 0.97;
    private static final String FILE = "cuda-splits.properties";

    private SplitTuning() {}

    /** CMC_CUDA_TUNE: 1 (the default) times slice counts or takes them from the cache, 0 keeps the formula's. */
    static final OnOffSetting SETTING = new OnOffSetting("CMC_CUDA_TUNE", true, "time split-K slice counts on the GPU", "keep the formula's");

    /** The fastest of the choices by their times; the formula's own count unless another beats it by the margin. */
    static int pick(List<Integer> choices, double[] ms, int own) {
        int mine = choices.indexOf(own), best = mine;
        if (mine < 0) throw new IllegalArgumentException("the formula's " + own + " slices are not among " + choices);
        for (int c = 0; c < ms.length; c++) if (ms[c] < ms[best]) best = c;
        return ms[best] < ms[mine] * MARGIN ? choices.get(best) : own;
    }

    /** Slice counts by kernel ("k:s" for each kernel that has a choice, 0 for the rest), as the cache keeps them. */
    static String format(int[] slices) {
        var out = new StringJoiner(",");
        for (int k = 0; k < slices.length; k++) if (slices[k] > 0) out.add(k + ":" + slices[k]);
        return out.toString();
    }

    /**
     * The counts a cache entry holds, or null where there is none or it does not fit the program any more: a
     * kernel index out of range, or a count not among that kernel's choices (choices(k) is empty for a kernel
     * that has none).
     */
    static int[] parse(String value, int kernels, IntFunction<List<Integer>> choices) {
        if (value == null) return null;
        var offered = new java.util.ArrayList<List<Integer>>();
        for (int k = 0; k < kernels; k++) offered.add(choices.apply(k));
        int[] slices = new int[kernels];
        try {
            for (String pair : value.isBlank() ? new String[0] : value.split(",")) {
                String[] ks = pair.split(":");
                int k = Integer.parseInt(ks[0].strip()), s = Integer.parseInt(ks[1].strip());
                if (k < 0 || k >= kernels || !offered.get(k).contains(s)) return null;
                slices[k] = s;
            }
        } catch (RuntimeException e) {
            return null;
        }
        for (int k = 0; k < kernels; k++) if (slices[k] == 0 && offered.get(k).size() > 1) return null;
        return slices;
    }

    static int[] cached(String key, int kernels, IntFunction<List<Integer>> choices) {
        return parse(UserCache.load(FILE).getProperty(key), kernels, choices);
    }

    static synchronized void store(String key, int[] slices) {
        Properties p = UserCache.load(FILE);
        p.setProperty(key, format(slices));
        UserCache.store(FILE, p, "cmc: split-K slice counts timed on each GPU (kernel:slices), by device, program and batch; delete to time again");
    }

    /** Where the counts are kept, for messages. */
    static String where() { return UserCache.file(FILE).toString(); }
}
