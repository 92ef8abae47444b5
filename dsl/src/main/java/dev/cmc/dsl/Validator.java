package dev.cmc.dsl;

import dev.cmc.dsl.ast.Block;
import dev.cmc.dsl.ast.Entry;
import dev.cmc.dsl.ast.SpecFile;
import dev.cmc.dsl.ast.Value;
import dev.cmc.dsl.schema.Schema;
import dev.cmc.dsl.schema.Suggest;

import java.util.*;

/**
 * AST to {@link Spec}: unknown, duplicate, missing, mistyped and out-of-range values, then the rules that
 * tie keys together. Collects every problem before reporting, so a user fixes a file in one pass.
 */
public final class Validator {
    private final SpecFile file;
    private final List<Diagnostic> errors = new ArrayList<>();
    /** block -> key -> the entry that set it; only keys that passed their type check. */
    private final Map<String, Map<String, Entry>> set = new LinkedHashMap<>();
    private final Map<String, Block> blocks = new LinkedHashMap<>();

    private Validator(SpecFile file) {
        this.file = file;
    }

    public static Spec validate(SpecFile file) {
        return new Validator(file).run();
    }

    private Spec run() {
        for (Block b : file.blocks()) checkBlock(b);
        if (!blocks.containsKey("model")) {
            errors.add(new Diagnostic(new Position(file.fileName(), 1, 1, 1),
                    "missing block 'model': every spec needs model { input_dim = N; }"));
        }
        // Keys that failed their own check fall back to defaults here, so cross-key rules still run and
        // every problem is reported in one pass.
        Spec spec = build();
        if (!errors.isEmpty()) throw new SpecException(errors, file.source());
        return spec;
    }

    private void checkBlock(Block b) {
        Map<String, Schema.Key> keys = Schema.keys(b.kind());
        if (keys == null) {
            errors.add(new Diagnostic(b.kindPosition(), "unknown block '" + b.kind() + "'"
                    + Suggest.didYouMean(b.kind(), Schema.blocks().keySet())
                    + "; blocks are " + String.join(", ", Schema.blocks().keySet())));
            return;
        }
        if (blocks.containsKey(b.kind())) {
            Position first = blocks.get(b.kind()).kindPosition();
            errors.add(new Diagnostic(b.kindPosition(), "duplicate block '" + b.kind() + "' (first at line " + first.line() + "); merge them into one"));
            return;
        }
        blocks.put(b.kind(), b);
        var seen = new LinkedHashMap<String, Entry>();
        set.put(b.kind(), seen);
        var all = new HashMap<String, Entry>();
        for (Entry e : b.entries()) {
            Schema.Key key = keys.get(e.key());
            if (key == null) {
                errors.add(new Diagnostic(e.keyPosition(), "unknown key '" + e.key() + "' in block '" + b.kind() + "'"
                        + Suggest.didYouMean(e.key(), keys.keySet()) + "; keys are " + String.join(", ", keys.keySet())));
                continue;
            }
            if (all.containsKey(e.key())) {
                errors.add(new Diagnostic(e.keyPosition(), "duplicate key '" + e.key() + "' (first set at line "
                        + all.get(e.key()).keyPosition().line() + ")"));
                continue;
            }
            all.put(e.key(), e);
            String problem = key.type().check(e.value());
            if (problem != null) {
                errors.add(new Diagnostic(e.value().position(), b.kind() + "." + e.key() + ": " + problem));
                continue;
            }
            seen.put(e.key(), e);
        }
        for (Schema.Key key : keys.values()) {
            if (key.defaultValue() == Schema.REQUIRED && !all.containsKey(key.name())) {
                errors.add(new Diagnostic(b.kindPosition(), "missing required key '" + key.name() + "' in block '" + b.kind()
                        + "' (" + key.doc() + ")"));
            }
        }
    }

    // ---- typed access to set-or-default values ----

    private Value given(String block, String key) {
        Map<String, Entry> m = set.get(block);
        Entry e = m == null ? null : m.get(key);
        return e == null ? null : e.value();
    }

    private Object raw(String block, String key) {
        Value v = given(block, key);
        if (v == null) return Schema.keys(block).get(key).defaultValue();
        return switch (v) {
            case Value.Num n -> n.integral() ? (Object) (long) n.value() : (Object) n.value();
            case Value.Str s -> s.value();
            case Value.Ident i -> i.name();
            case Value.Bool b -> b.value();
            case Value.Auto a -> Schema.keys(block).get(key).type() instanceof dev.cmc.dsl.schema.KeyType.OneOf ? "auto" : Schema.AUTO;
            case Value.ListOf l -> l.items().stream().map(x -> ((Value.Num) x).value()).toList();
        };
    }

    private long i(String block, String key) {
        Object o = raw(block, key);
        return o instanceof Long l ? l : 0;
    }

    private double d(String block, String key) {
        Object o = raw(block, key);
        return o instanceof Number n ? n.doubleValue() : Double.NaN;
    }

    private String s(String block, String key) {
        return String.valueOf(raw(block, key));
    }

    private boolean isAuto(String block, String key) {
        return raw(block, key) == Schema.AUTO;
    }

    /** Where to point a cross-key error: the value if given, else the block header, else the file start. */
    private Position at(String block, String key) {
        Value v = given(block, key);
        if (v != null) return v.position();
        Block b = blocks.get(block);
        return b != null ? b.kindPosition() : new Position(file.fileName(), 1, 1, 1);
    }

    private Spec build() {
        var model = new Spec.Model((int) i("model", "input_dim"), (int) i("model", "hidden_size"), (int) i("model", "num_layers"),
                d("model", "sigma_min"), d("model", "sigma_max"), d("model", "sigma_data"), (int) i("model", "expansion"),
                s("model", "activation"), s("model", "input_scaling"));
        if (!(model.sigmaMin() < model.sigmaMax())) {
            errors.add(new Diagnostic(at("model", "sigma_min"), "sigma_min (" + model.sigmaMin() + ") must be less than sigma_max (" + model.sigmaMax() + ")"));
        }
        if (model.hiddenSize() % 2 != 0) {
            errors.add(new Diagnostic(at("model", "hidden_size"), "hidden_size must be even (half of the sigma embedding is sin, half cos), got " + model.hiddenSize()));
        }
        var schedule = new Spec.Schedule((int) i("schedule", "n_steps"), d("schedule", "rho"));

        String method = s("train", "method");
        boolean ict = method.equals("ict");
        // auto μ₀: 0.9 for CT (Song et al.), 0 for iCT, 0.95 for CD (the paper's ImageNet-64 setting).
        double mu0 = isAuto("train", "mu0") ? (ict ? 0.0 : method.equals("cd") ? 0.95 : 0.9) : d("train", "mu0");
        int s0 = isAuto("train", "s0") ? (ict ? 10 : 2) : (int) i("train", "s0");
        int s1 = isAuto("train", "s1") ? (ict ? 1280 : 150) : (int) i("train", "s1");
        if (s1 < s0) errors.add(new Diagnostic(at("train", "s1"), "s1 (" + s1 + ") must be at least s0 (" + s0 + ")"));
        double huberC = isAuto("train", "huber_c") ? 0.00054 * Math.sqrt(model.inputDim()) : d("train", "huber_c");
        String teacher = s("train", "teacher");
        if (method.equals("cd") && teacher.isEmpty()) {
            errors.add(new Diagnostic(at("train", "method"), "method = cd needs a teacher: add teacher = \"teacher.safetensors\"; to the train block"));
        }
        var train = new Spec.Train(method, i("train", "steps"), (int) i("train", "batch_size"), s("train", "optimizer"),
                d("train", "lr"), d("train", "beta1"), d("train", "beta2"), d("train", "eps"), d("train", "weight_decay"),
                d("train", "grad_clip"), d("train", "ema_decay"), mu0, s0, s1, s("train", "loss"), huberC,
                i("train", "seed"), i("train", "checkpoint_every"), teacher);

        // Without a data block, pick the builtin set of the model's dimension (glyphs8x8 for the seed's 64).
        String source = given("data", "source") != null ? s("data", "source")
                : model.inputDim() == 64 ? "builtin:glyphs8x8" : model.inputDim() == 2 ? "builtin:swiss_roll" : "builtin:none";
        var data = new Spec.Data(source, (int) i("data", "samples"), (Boolean) raw("data", "normalize"));
        checkData(data, model);

        List<Double> sigmas = isAuto("sample", "sigmas") ? List.of() : castList(raw("sample", "sigmas"));
        int steps = (int) i("sample", "steps");
        if (!sigmas.isEmpty()) {
            checkSigmas(sigmas, model);
            if (given("sample", "steps") != null && steps != sigmas.size()) {
                errors.add(new Diagnostic(at("sample", "steps"), "sample.steps = " + steps + " but sample.sigmas lists "
                        + sigmas.size() + " values; give one of them, or make them agree"));
            }
            steps = sigmas.size();
        }
        var sample = new Spec.Sample(steps, sigmas, (int) i("sample", "count"), i("sample", "seed"));
        var target = new Spec.Target(s("target", "backend"), (int) i("target", "device"), s("target", "precision"), s("target", "kernel_binary"));
        if (!target.kernelBinary().isEmpty() && !List.of("opencl", "auto").contains(target.backend())) {
            errors.add(new Diagnostic(at("target", "kernel_binary"), "kernel_binary is for backend = opencl, but backend is " + target.backend()));
        }

        String name = blocks.containsKey("model") && blocks.get("model").label() != null ? blocks.get("model").label() : baseName(file.fileName());
        return new Spec(name, file.fileName(), file.source(), model, schedule, train, data, sample, target);
    }

    private void checkData(Spec.Data data, Spec.Model model) {
        String src = data.source();
        if (src.startsWith("builtin:")) {
            String name = src.substring("builtin:".length());
            Integer dim = Spec.BUILTIN_DATA.get(name);
            if (dim == null) {
                if (!name.equals("none")) {
                    errors.add(new Diagnostic(at("data", "source"), "unknown builtin data set '" + name + "'"
                            + Suggest.didYouMean(name, Spec.BUILTIN_DATA.keySet()) + "; builtins are "
                            + String.join(", ", new TreeSet<>(Spec.BUILTIN_DATA.keySet()))));
                }
            } else if (dim != model.inputDim() && given("model", "input_dim") != null) {
                errors.add(new Diagnostic(at("model", "input_dim"), "input_dim = " + model.inputDim() + " but data set '" + name
                        + "' has dimension " + dim));
            }
        } else if (!(src.endsWith(".csv") || src.endsWith(".npy"))) {
            errors.add(new Diagnostic(at("data", "source"), "data.source must be \"builtin:NAME\" or a path ending in .csv or .npy, got \"" + src + "\""));
        }
    }

    private void checkSigmas(List<Double> sigmas, Spec.Model model) {
        Position p = at("sample", "sigmas");
        for (int k = 0; k < sigmas.size(); k++) {
            double s = sigmas.get(k);
            if (s < model.sigmaMin() || s > model.sigmaMax()) {
                errors.add(new Diagnostic(p, "sample.sigmas[" + k + "] = " + s + " is outside [sigma_min, sigma_max] = ["
                        + model.sigmaMin() + ", " + model.sigmaMax() + "]"));
                return;
            }
            if (k > 0 && !(s < sigmas.get(k - 1))) {
                errors.add(new Diagnostic(p, "sample.sigmas must be strictly decreasing, but item " + k + " (" + s
                        + ") is not below item " + (k - 1) + " (" + sigmas.get(k - 1) + ")"));
                return;
            }
        }
    }

    @SuppressWarnings("unchecked")
    private static List<Double> castList(Object o) {
        return (List<Double>) o;
    }

    private static String baseName(String fileName) {
        String base = fileName.substring(fileName.lastIndexOf('/') + 1);
        return base.endsWith(".cm") ? base.substring(0, base.length() - 3) : base;
    }
}
