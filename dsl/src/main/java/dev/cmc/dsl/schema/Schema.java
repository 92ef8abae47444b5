package dev.cmc.dsl.schema;

import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;

/**
 * Every block and key of the .cm language, its type and its default: the single source of truth for
 * validation, for {@code --set}, and for the reference table in the README.
 */
public final class Schema {
    /** Marks a key whose default is computed from other keys (such as huber_c from input_dim). */
    public static final Object AUTO = new Object() { public String toString() { return "auto"; } };
    /** Marks a key that must be given. */
    public static final Object REQUIRED = new Object() { public String toString() { return "required"; } };

    public record Key(String name, KeyType type, Object defaultValue, String doc) {}

    private static final Map<String, Map<String, Key>> BLOCKS = new LinkedHashMap<>();

    private static final double INF = Double.POSITIVE_INFINITY;
    private static final long MAX = Long.MAX_VALUE;

    static {
        block("model",
            key("input_dim", new KeyType.Int(1, 1 << 20), REQUIRED, "dimension of a data vector"),
            key("hidden_size", new KeyType.Int(4, 1 << 16), 256L, "width h of the trunk (even: half of it is sin, half cos)"),
            key("num_layers", new KeyType.Int(0, 1024), 4L, "residual blocks"),
            key("sigma_min", new KeyType.Real(0, true, INF, true), 0.002, "smallest noise level; f(x, sigma_min) = x"),
            key("sigma_max", new KeyType.Real(0, true, INF, true), 80.0, "largest noise level; sampling starts here"),
            key("sigma_data", new KeyType.Real(0, true, INF, true), 0.5, "standard deviation of the data, for c_skip and c_out"),
            key("expansion", new KeyType.Int(1, 64), 4L, "width of a block's inner layer, as a multiple of h"),
            key("activation", new KeyType.OneOf(List.of("silu", "gelu", "relu")), "silu", "activation inside the blocks"),
            key("input_scaling", new KeyType.OneOf(List.of("edm", "none")), "edm", "edm: c_in = 1/sqrt(sigma^2 + sigma_data^2); none: c_in = 1"));
        block("schedule",
            key("n_steps", new KeyType.Int(2, 1 << 20), 40L, "N, points of the Karras discretisation"),
            key("rho", new KeyType.Real(0, true, INF, true), 7.0, "Karras rho"));
        block("train",
            key("method", new KeyType.OneOf(List.of("ct", "ict", "cd", "edm")), "ct", "consistency training, improved CT, distillation, or an EDM diffusion teacher"),
            key("steps", new KeyType.Int(1, MAX), 2000L, "optimizer steps"),
            key("batch_size", new KeyType.Int(1, 1 << 24), 256L, "samples per step"),
            key("optimizer", new KeyType.OneOf(List.of("adam", "radam")), "adam", "optimizer"),
            key("lr", new KeyType.Real(0, true, INF, true), 4e-4, "learning rate"),
            key("beta1", new KeyType.Real(0, false, 1, true), 0.9, "Adam beta1"),
            key("beta2", new KeyType.Real(0, false, 1, true), 0.999, "Adam beta2"),
            key("eps", new KeyType.Real(0, true, INF, true), 1e-8, "Adam epsilon"),
            key("weight_decay", new KeyType.Real(0, false, INF, true), 0.0, "decoupled weight decay (AdamW style)"),
            key("grad_clip", new KeyType.Real(0, false, INF, true), 0.0, "clip the global gradient norm to this; 0 is off"),
            key("ema_decay", new KeyType.Real(0, false, 1, true), 0.999, "EMA of the weights used for sampling"),
            key("mu0", new KeyType.OrAuto(new KeyType.Real(0, false, 1, true)), AUTO, "target EMA mu0 (auto: 0.9 for ct, 0 for ict)"),
            key("s0", new KeyType.OrAuto(new KeyType.Int(1, 1 << 20)), AUTO, "curriculum start (auto: 2 for ct, 10 for ict)"),
            key("s1", new KeyType.OrAuto(new KeyType.Int(1, 1 << 20)), AUTO, "curriculum end (auto: 150 for ct, 1280 for ict)"),
            key("loss", new KeyType.OneOf(List.of("pseudo_huber", "l2")), "pseudo_huber", "distance d(a, b)"),
            key("huber_c", new KeyType.OrAuto(new KeyType.Real(0, true, INF, true)), AUTO, "pseudo-Huber c (auto: 0.00054*sqrt(input_dim))"),
            key("seed", new KeyType.Int(0, MAX), 0L, "random seed for initialisation, noise and batches"),
            key("checkpoint_every", new KeyType.Int(0, MAX), 500L, "steps between checkpoints; 0 is only at the end"),
            key("teacher", new KeyType.Text(), "", "teacher checkpoint for cd"));
        block("data",
            key("source", new KeyType.Text(), "auto", "\"builtin:NAME\", or a path to a .csv or .npy file (auto: glyphs8x8 for 64-d, swiss_roll for 2-d)"),
            key("samples", new KeyType.Int(1, 1 << 28), 20000L, "how many vectors to draw from a builtin set"),
            key("normalize", new KeyType.Flag(), false, "scale the data to standard deviation sigma_data"));
        block("sample",
            key("steps", new KeyType.Int(1, 1024), 1L, "network evaluations per sample"),
            key("sigmas", new KeyType.OrAuto(new KeyType.Reals()), AUTO, "the tau list of multistep sampling, decreasing"),
            key("count", new KeyType.Int(1, 1 << 24), 1000L, "samples to draw"),
            key("seed", new KeyType.Int(0, MAX), 0L, "random seed for sampling"));
        block("target",
            key("backend", new KeyType.OneOf(List.of("auto", "jvm", "opencl", "cuda", "tornado")), "auto", "where kernels run"),
            key("device", new KeyType.Int(0, 1024), 0L, "device index within the backend"),
            key("precision", new KeyType.OneOf(List.of("fp32", "tf32", "bf16")), "fp32", "arithmetic precision"),
            key("kernel_binary", new KeyType.Text(), "", "opencl: load kernels from this file (cmc compile --emit-binary) instead of compiling"));
    }

    private Schema() {}

    private static void block(String name, Key... keys) {
        var map = new LinkedHashMap<String, Key>();
        for (Key k : keys) map.put(k.name(), k);
        BLOCKS.put(name, map);
    }

    private static Key key(String name, KeyType type, Object def, String doc) {
        return new Key(name, type, def, doc);
    }

    public static Map<String, Map<String, Key>> blocks() {
        return BLOCKS;
    }

    public static Map<String, Key> keys(String block) {
        return BLOCKS.get(block);
    }
}
