package dev.cmc.runtime.cuda;

import dev.cmc.runtime.OnOffSetting;
import dev.cmc.runtime.UserCache;

import java.util.List;
import java.util.Properties;
import java.util.StringJoiner;
import java.util.function.IntFunction;

/**
 * How each GEMM is launched, chosen by timing it on the GPU, per program and batch size: its split-K slice count,
 * and with CMC_CUDA_TUNE_TILES=1 its tile among the default tiling's variants. How many K slices fill a GPU best
 * depends on what one block's slice costs against the last block's sum of the slices, which a formula
 * ({@link dev.cmc.render.PtxRenderer#splits}) can only guess at; whether a GEMM gains from stages refilled sooner
 * or from its slices summed across a cluster depends on its shape and the GPU alike. The first run at a batch size
 * times each GEMM at every choice ({@link dev.cmc.render.PtxRenderer#splitChoices} in each tiling on offer) and
 * keeps the fastest. The choices are kept in cuda-splits.properties in the {@link UserCache}, by device, program
 * text and batch, so that a program is timed once per machine and a later run (a resumed training) launches
 * exactly what the first did.
 */
final class GemmTuning {
    /** A choice other than the formula's is taken only if it is this much faster, so that timing noise does not flip choices. */
    static final double MARGIN = 0.97;
    private static final String FILE = "cuda-splits.properties",
            HEADER = "cmc: each GEMM's launch timed on each GPU (kernel:slices, or kernel:slices@tiling), by device, program and batch; delete to time again";

    private GemmTuning() {}

    /** CMC_CUDA_TUNE: 1 (the default) times slice counts or takes them from the cache, 0 keeps the formula's. */
    static final OnOffSetting SETTING = new OnOffSetting("CMC_CUDA_TUNE", true, "time split-K slice counts on the GPU", "keep the formula's");

    /**
     * CMC_CUDA_TUNE_TILES=1 also times each GEMM in the tiles of the default tiling's variants
     * ({@link dev.cmc.render.PtxRenderer.Tiling#variants}); off by default until a GPU run has timed them.
     */
    static final OnOffSetting TILES = new OnOffSetting("CMC_CUDA_TUNE_TILES", false, "time each GEMM's tile variants too",
            "keep the default tiling's tiles");

    /** The fastest of the choices by their times; the formula's own unless another beats it by the margin. */
    static <T> T pick(List<T> choices, double[] ms, T own) {
        int mine = choices.indexOf(own), best = mine;
        if (mine < 0) throw new IllegalArgumentException("the formula's " + own + " is not among " + choices);
        for (int c = 0; c < ms.length; c++) if (ms[c] < ms[best]) best = c;
        return ms[best] < ms[mine] * MARGIN ? choices.get(best) : own;
    }

    /** The choices by kernel ("k:choice" for each kernel that has one, null for the rest), as the cache keeps them. */
    static String format(String[] chosen) {
        var out = new StringJoiner(",");
        for (int k = 0; k < chosen.length; k++) if (chosen[k] != null) out.add(k + ":" + chosen[k]);
        return out.toString();
    }

    /**
     * The choices a cache entry holds (null for a kernel without), or null where there is none or it does not fit
     * the program any more: a kernel index out of range, or a choice not among that kernel's (choices(k) is empty
     * for a kernel that has none), or a kernel with a choice left without one.
     */
    static String[] parse(String value, int kernels, IntFunction<List<String>> choices) {
        if (value == null) return null;
        var offered = new java.util.ArrayList<List<String>>();
        for (int k = 0; k < kernels; k++) offered.add(choices.apply(k));
        String[] chosen = new String[kernels];
        try {
            for (String pair : value.isBlank() ? new String[0] : value.split(",")) {
                String[] kc = pair.split(":");
                int k = Integer.parseInt(kc[0].strip());
                if (kc.length != 2 || k < 0 || k >= kernels || !offered.get(k).contains(kc[1].strip())) return null;
                chosen[k] = kc[1].strip();
            }
        } catch (RuntimeException e) {
            return null;
        }
        for (int k = 0; k < kernels; k++) if (chosen[k] == null && offered.get(k).size() > 1) return null;
        return chosen;
    }

    static String[] cached(String key, int kernels, IntFunction<List<String>> choices) {
        return parse(UserCache.load(FILE).getProperty(key), kernels, choices);
    }

    static synchronized void store(String key, String[] chosen) {
        Properties p = UserCache.load(FILE);
        p.setProperty(key, format(chosen));
        UserCache.store(FILE, p, HEADER);
    }

    /** Drops an entry, so that the next load times its program at that batch again. */
    static synchronized void forget(String key) {
        Properties p = UserCache.load(FILE);
        if (p.remove(key) != null) UserCache.store(FILE, p, HEADER);
    }

    /** Where the choices are kept, for messages. */
    static String where() { return UserCache.file(FILE).toString(); }
}
