package dev.cmc.model;

import dev.cmc.dsl.Spec;
import dev.cmc.ir.Graph;
import dev.cmc.ir.Node;
import dev.cmc.ir.Op;
import dev.cmc.ir.Shape;

/**
 * The seed's network as IR, read top to bottom:
 * <pre>
 *   emb = SiLU(Dense_h([sin(a·freqs), cos(a·freqs)])),  a = log(σ + 1e-10), freqs_i = exp(-ln(10000)·i/(half-1))
 *   h   = Dense_h(c_in·x) + emb
 *   h   = h + Dense_h(act(Dense_{e·h}(LayerNorm(h))))        (num_layers times)
 *   F   = Dense_d(h)
 *   f   = c_skip(σ)·x + c_out(σ)·F
 * </pre>
 * Parameter names are stable ("embed.w", "block0.up.b", ...); a prefix such as "target/" makes a second
 * copy of the same network read another set of weights (the EMA target of consistency training).
 */
public final class ConsistencyModelGraph {
    private final Spec.Model m;
    private final boolean edm;
    /** Embed c_noise = ¼·ln σ, the EDM teacher's, instead of ln(σ + 1e-10). */
    private final boolean edmNoise;

    /** The consistency model f(x, σ) of a spec. */
    public ConsistencyModelGraph(Spec.Model model) {
        this(model, false);
    }

    /**
     * With edm = true, the same trunk as an EDM denoiser D(x, σ) (Karras et al. 2022): c_skip = σ_d²/(σ² + σ_d²),
     * c_out = σ·σ_d/√(σ² + σ_d²), c_in = 1/√(σ² + σ_d²), and the embedding fed c_noise = ¼·ln σ.
     */
    public ConsistencyModelGraph(Spec.Model model, boolean edm) {
        this(model, edm, edm);
    }

    private ConsistencyModelGraph(Spec.Model model, boolean edm, boolean edmNoise) {
        this.m = model;
        this.edm = edm;
        this.edmNoise = edmNoise;
    }

    /**
     * The network a spec trains: an EDM denoiser for train.method = edm (a diffusion teacher), else f. A
     * distilled student (cd) embeds the teacher's c_noise = ¼·ln σ, so that it can start from the teacher's
     * weights, as Song et al. (2023) initialise CD.
     */
    public static ConsistencyModelGraph of(Spec spec) {
        String method = spec.train().method();
        return new ConsistencyModelGraph(spec.model(), method.equals("edm"), method.equals("edm") || method.equals("cd"));
    }

    public boolean edm() { return edm; }

    public Spec.Model spec() { return m; }

    /** The parameters in the order the flat array holds them. */
    public ParamLayout layout() {
        var layout = new ParamLayout();
        int d = m.inputDim(), h = m.hiddenSize(), e = m.expansion() * h;
        dense(layout, "embed", h, h);
        dense(layout, "in", d, h);
        for (int l = 0; l < m.numLayers(); l++) {
            layout.add("block" + l + ".norm.g", Shape.fixed(1, h), ParamLayout.Init.ONES, 0);
            layout.add("block" + l + ".norm.b", Shape.fixed(1, h), ParamLayout.Init.ZEROS, 0);
            dense(layout, "block" + l + ".up", h, e);
            dense(layout, "block" + l + ".down", e, h);
        }
        dense(layout, "out", h, d);
        return layout;
    }

    private static void dense(ParamLayout layout, String name, int in, int out) {
        layout.add(name + ".w", Shape.fixed(in, out), ParamLayout.Init.UNIFORM_FAN_IN, in);
        layout.add(name + ".b", Shape.fixed(1, out), ParamLayout.Init.UNIFORM_FAN_IN, in);
    }

    /**
     * The distinct σ of a batch, so that the σ embedding is computed once per σ and gathered to the rows:
     * sigmas[K,1], index[B,1] (each row's entry of sigmas), and the grouping (order[B,1], starts[K+1,1]) that
     * carries the embedding's gradient back, or null for both where none flows (an EMA target, a teacher).
     */
    public record SigmaTable(Node sigmas, Node index, Node order, Node starts) {}

    /** f(x, σ) for x[B,d] and σ[B,1], reading parameters named {@code prefix + name}. */
    public Node denoise(Graph g, Node x, Node sigma, String prefix) {
        return denoise(g, x, sigma, null, prefix);
    }

    /** f(x, σ), with the σ embedding computed once per row of the table and gathered, when there is one. */
    public Node denoise(Graph g, Node x, Node sigma, SigmaTable table, String prefix) {
        int h = m.hiddenSize();
        String p = prefix.replace("/", "_");
        Node embedded = table == null ? sigma : table.sigmas();
        Node emb = g.label(g.unary(Op.SILU, dense(g, prefix + "embed", g.label(sigmaFeatures(g, embedded), p + "sigma_features"), h)), p + "embed.act");
        if (table != null) emb = g.gather(emb, table.index(), table.order(), table.starts());
        Node xin = m.inputScaling().equals("edm") ? g.label(g.mul(g.label(cIn(g, sigma), p + "c_in"), x), p + "x_scaled") : x;
        Node hidden = g.label(g.add(dense(g, prefix + "in", xin, h), emb), p + "h_in");
        for (int l = 0; l < m.numLayers(); l++) {
            String b = prefix + "block" + l;
            String bl = p + "block" + l;
            Node normed = g.label(g.add(g.mul(g.label(g.normalize(hidden), bl + ".xhat"), g.param(b + ".norm.g", Shape.fixed(1, h))),
                    g.param(b + ".norm.b", Shape.fixed(1, h))), bl + ".ln");
            Node inner = g.label(g.unary(activation(), dense(g, b + ".up", normed, m.expansion() * h)), bl + ".act");
            hidden = g.label(g.add(hidden, dense(g, b + ".down", inner, h)), bl + ".h");
        }
        Node out = dense(g, prefix + "out", hidden, m.inputDim());
        Node skip = g.label(g.mul(g.label(cSkip(g, sigma), p + "c_skip"), x), p + "skip");
        return g.label(g.add(skip, g.mul(g.label(cOut(g, sigma), p + "c_out"), out)), p + "f");
    }

    /**
     * [sin(a·freqs), cos(a·freqs)] written as one sin over h columns: sin(a·F_c + P_c), with F = [freqs, freqs]
     * and P = [0…, π/2…], since cos(t) = sin(t + π/2). One elementwise op instead of two and a concat.
     */
    public Node sigmaFeatures(Graph g, Node sigma) {
        int half = m.hiddenSize() / 2;
        double[] f = new double[2 * half], p = new double[2 * half];
        for (int i = 0; i < half; i++) {
            double freq = half > 1 ? Math.exp(-Math.log(10000.0) * i / (half - 1)) : 1.0;
            f[i] = freq;
            f[half + i] = freq;
            p[half + i] = Math.PI / 2;
        }
        Node a = edmNoise ? g.mul(g.unary(Op.LOG, sigma), 0.25) : g.unary(Op.LOG, g.add(sigma, 1e-10));
        return g.unary(Op.SIN, g.add(g.mul(a, g.constRow(f)), g.constRow(p)));
    }

    /** c_in = 1/√(σ² + σ_d²). */
    public Node cIn(Graph g, Node sigma) {
        return g.div(g.constant(1), g.unary(Op.SQRT, g.add(g.unary(Op.SQUARE, sigma), sq(m.sigmaData()))));
    }

    /** c_skip = σ_d² / ((σ − σ_min)² + σ_d²); EDM: σ_d² / (σ² + σ_d²). */
    public Node cSkip(Graph g, Node sigma) {
        Node shifted = edm ? sigma : g.add(sigma, -m.sigmaMin());
        return g.div(g.constant(sq(m.sigmaData())), g.add(g.unary(Op.SQUARE, shifted), sq(m.sigmaData())));
    }

    /** c_out = σ_d (σ − σ_min) / √(σ² + σ_d²); EDM: σ_d σ / √(σ² + σ_d²). */
    public Node cOut(Graph g, Node sigma) {
        Node shifted = edm ? sigma : g.add(sigma, -m.sigmaMin());
        return g.div(g.mul(shifted, m.sigmaData()), g.unary(Op.SQRT, g.add(g.unary(Op.SQUARE, sigma), sq(m.sigmaData()))));
    }

    private Node dense(Graph g, String name, Node x, int out) {
        int in = x.shape().cols();
        String l = name.replace("/", "_");
        Node mm = g.label(g.matmul(x, g.param(name + ".w", Shape.fixed(in, out))), l + ".mm");
        return g.label(g.add(mm, g.param(name + ".b", Shape.fixed(1, out))), l + ".pre");
    }

    private Op activation() {
        return switch (m.activation()) {
            case "gelu" -> Op.GELU;
            case "relu" -> Op.RELU;
            default -> Op.SILU;
        };
    }

    private static double sq(double v) { return v * v; }

    /** The seed's approximate count d·h + h² + L·8h² + h·d (exact only for expansion 4, without biases and norms). */
    public long approximateParamCount() {
        long d = m.inputDim(), h = m.hiddenSize();
        return d * h + h * h + (long) m.numLayers() * 2 * m.expansion() * h * h + h * d;
    }
}
