package dev.cmc.bench;

import ai.djl.engine.Engine;
import ai.djl.ndarray.NDArray;
import ai.djl.ndarray.NDList;
import ai.djl.ndarray.NDManager;
import ai.djl.ndarray.types.Shape;
import ai.djl.nn.Activation;
import ai.djl.nn.norm.LayerNorm;
import ai.djl.training.GradientCollector;
import ai.djl.training.optimizer.Adam;
import ai.djl.training.tracker.Tracker;
import dev.cmc.dsl.Spec;
import dev.cmc.model.ParamLayout;

import java.util.LinkedHashMap;
import java.util.Map;

/**
 * The peer: the same network and the same CT step written the way a DJL user would write them, run by
 * PyTorch's CPU engine (libtorch through DJL's JNI). Weights come from cmc's flat parameter array, so both
 * sides compute the same function from the same numbers:
 * <pre>
 *   emb = SiLU(Dense([sin(a·freqs), cos(a·freqs)])), a = log(σ + 1e-10)
 *   h   = Dense(c_in(σ)·x) + emb;  h = h + Dense(SiLU(Dense(LayerNorm(h))))  (per block);  F = Dense(h)
 *   f   = c_skip(σ)·x + c_out(σ)·F
 * </pre>
 * The step: online forward and backward, EMA-target forward, pseudo-Huber loss, Adam (DJL's, which calls
 * libtorch's adam update per parameter), then the target EMA and the sampling EMA, as cmc's step does.
 */
public final class TorchPeer implements AutoCloseable {
    private final Spec.Model model;
    private final double huberC;
    private final NDManager manager;
    private final Map<String, NDArray> params = new LinkedHashMap<>(), target = new LinkedHashMap<>(), ema = new LinkedHashMap<>();
    private final NDArray freqs;
    private final Adam adam;

    /** Pins libtorch to {@code threads} intra-op threads and never downloads: the native library comes from the classpath. */
    public static void configure(int threads) {
        System.setProperty("ai.djl.offline", "true");
        System.setProperty("ai.djl.default_engine", "PyTorch");
        System.setProperty("ai.djl.pytorch.num_threads", Integer.toString(threads));
        System.setProperty("ai.djl.pytorch.num_interop_threads", "1");
    }

    public TorchPeer(Spec spec, ParamLayout layout, float[] flat, double lr) {
        if (!spec.model().activation().equals("silu"))
            throw new IllegalArgumentException("the PyTorch peer models SiLU blocks, not " + spec.model().activation());
        this.model = spec.model();
        this.huberC = spec.train().huberC();
        this.manager = Engine.getEngine("PyTorch").newBaseManager();
        for (ParamLayout.Entry e : layout.entries()) {
            float[] v = java.util.Arrays.copyOfRange(flat, e.offset(), e.offset() + e.size());
            Shape shape = e.shape().rows() == 1 ? new Shape(e.shape().cols()) : new Shape(e.shape().rows(), e.shape().cols());
            NDArray p = manager.create(v, shape);
            p.setRequiresGradient(true);
            params.put(e.name(), p);
            target.put(e.name(), manager.create(v, shape));
            ema.put(e.name(), manager.create(v, shape));
        }
        int half = model.hiddenSize() / 2;
        float[] f = new float[half];
        for (int i = 0; i < half; i++) f[i] = (float) Math.exp(-Math.log(10000.0) * i / (half - 1));
        freqs = manager.create(f, new Shape(1, half));
        adam = Adam.builder().optLearningRateTracker(Tracker.fixed((float) lr)).optBeta1(0.9f).optBeta2(0.999f).optEpsilon(1e-8f).build();
    }

    /** f(x, σ) for x[B,d] and σ[B], recording autograd. */
    NDArray forward(Map<String, NDArray> w, NDArray x, NDArray sigma) {
        return forward(w, x, sigma, false);
    }

    /**
     * f(x, σ). Dense layers are torch's linear (the bias fused into the GEMM, as nn.Linear does); with
     * inference = true the activations and residual adds run in place, sparing an allocation each, as a
     * careful user writes a no-grad sampler.
     */
    NDArray forward(Map<String, NDArray> w, NDArray x, NDArray sigma, boolean inference) {
        float sd = (float) model.sigmaData(), smin = (float) model.sigmaMin();
        NDArray s = sigma.reshape(-1, 1);
        NDArray a = s.add(1e-10f).log().matMul(freqs);
        NDArray emb = silu(dense(w, "embed", a.sin().concat(a.cos(), 1)), inference);
        NDArray xin = model.inputScaling().equals("edm") ? x.div(s.square().add(sd * sd).sqrt()) : x;
        NDArray h = dense(w, "in", xin);
        h = inference ? h.addi(emb) : h.add(emb);
        for (int l = 0; l < model.numLayers(); l++) {
            String b = "block" + l;
            NDArray n = LayerNorm.layerNorm(h, new Shape(model.hiddenSize()), w.get(b + ".norm.g"), w.get(b + ".norm.b"), 1e-5f).singletonOrThrow();
            NDArray inner = dense(w, b + ".down", silu(dense(w, b + ".up", n), inference));
            h = inference ? h.addi(inner) : h.add(inner);
        }
        NDArray out = dense(w, "out", h);
        NDArray shifted = s.sub(smin);
        NDArray cSkip = shifted.square().add(sd * sd).pow(-1).mul(sd * sd);
        NDArray cOut = shifted.mul(sd).div(s.square().add(sd * sd).sqrt());
        return cSkip.mul(x).add(cOut.mul(out));
    }

    /** torch.nn.functional.linear(x, Wᵀ, b): cmc stores W as [in, out], torch's linear wants [out, in] (a view). */
    private static NDArray dense(Map<String, NDArray> w, String name, NDArray x) {
        return ai.djl.nn.core.Linear.linear(x, w.get(name + ".w").transpose(1, 0), w.get(name + ".b")).singletonOrThrow();
    }

    /** x·sigmoid(x): DJL has no fused SiLU, so two libtorch ops (the second in place when not recording). */
    private static NDArray silu(NDArray x, boolean inference) {
        NDArray sig = Activation.sigmoid(x);
        return inference ? sig.muli(x) : sig.mul(x);
    }

    /**
     * Moves every weight into a step's manager for the step's duration. DJL attaches a new array to the
     * manager of the array it was computed from, so without this every intermediate computed from a weight
     * (a transposed view, an EMA term) would live in the long-lived manager and pile up step after step.
     */
    private void attachWeights(NDManager step) {
        var all = new NDList();
        all.addAll(params.values());
        all.addAll(target.values());
        all.addAll(ema.values());
        all.add(freqs);
        step.tempAttachAll(all);
    }

    /** One-step sampling: f(x, σ) for a batch at one σ; returns the outputs. */
    public float[] sample(float[] x, int batch, float sigma) {
        try (NDManager step = manager.newSubManager()) {
            attachWeights(step);
            NDArray xs = step.create(x, new Shape(batch, model.inputDim()));
            NDArray s = step.full(new Shape(batch), sigma);
            return forward(ema, xs, s, true).toFloatArray();
        }
    }

    /** Like {@link #sample}, without copying the result back (what the benchmark times). */
    public void sampleInPlace(NDArray x, NDArray sigma) {
        try (NDManager step = manager.newSubManager()) {
            step.tempAttachAll(x, sigma);
            attachWeights(step);
            forward(ema, x, sigma, true);
        }
    }

    /** Two steps of Algorithm 1 on resident arrays: f(x, σ), add √(τ² − σ_min²)·noise, f(·, τ). */
    public void twoStepInPlace(NDArray x, NDArray sigma, NDArray noise, NDArray tau, float noiseScale) {
        try (NDManager step = manager.newSubManager()) {
            step.tempAttachAll(x, sigma, noise, tau);
            attachWeights(step);
            NDArray first = forward(ema, x, sigma, true);
            forward(ema, first.addi(noise.mul(noiseScale)), tau, true);
        }
    }

    public NDManager manager() { return manager; }

    /**
     * The CT loss and step: online forward and backward, target forward, pseudo-Huber, Adam, both EMAs, then
     * the gradients zeroed (PyTorch accumulates them). Intermediates live in per-phase managers; Adam runs
     * with the weights in their own manager, so that the moments it creates on its first step persist.
     */
    public float trainStep(NDArray x0, NDArray z, NDArray hi, NDArray lo, NDArray weight, float mu, float emaDecay) {
        try (NDManager step = manager.newSubManager()) {
            step.tempAttachAll(x0, z, hi, lo, weight);
            float loss;
            try (NDManager pass = step.newSubManager()) {
                attachWeights(pass);
                NDArray targetOut = forward(target, x0.add(z.mul(lo.reshape(-1, 1))), lo, true);
                try (GradientCollector gc = Engine.getEngine("PyTorch").newGradientCollector()) {
                    NDArray online = forward(params, x0.add(z.mul(hi.reshape(-1, 1))), hi);
                    NDArray sq = online.sub(targetOut).square().sum(new int[]{1});
                    NDArray dist = sq.add((float) (huberC * huberC)).sqrt().sub((float) huberC);
                    NDArray l = dist.mul(weight).mean();
                    gc.backward(l);
                    loss = l.getFloat();
                }
            }
            for (var e : params.entrySet()) {
                NDArray p = e.getValue();
                try (NDArray g = p.getGradient()) {
                    adam.update(e.getKey(), p, g);
                    g.subi(g);
                }
            }
            try (NDManager averages = step.newSubManager()) {
                attachWeights(averages);
                for (var e : params.entrySet()) {
                    // Detached: an EMA must not join the autograd graph (torch.no_grad in Python).
                    NDArray p = e.getValue().stopGradient();
                    target.get(e.getKey()).muli(mu).addi(p.mul(1 - mu));
                    ema.get(e.getKey()).muli(emaDecay).addi(p.mul(1 - emaDecay));
                }
            }
            return loss;
        }
    }

    @Override
    public void close() {
        manager.close();
    }
}
