package dev.cmc.runtime.cuda;

import dev.cmc.kernel.MemoryPlan;
import dev.cmc.kernel.Program;
import dev.cmc.render.Indexing;
import dev.cmc.render.JavaRenderer;
import dev.cmc.render.PtxRenderer;
import dev.cmc.runtime.Backend;
import dev.cmc.runtime.Executable;

import java.util.List;
import java.util.Map;

/**
 * The cuda backend's PTX, run by {@link PtxSimulator} instead of a GPU: the same module text, the same grids
 * and blocks, the same argument order as {@link CudaExecutable}, the kernels in the order its CUDA graph
 * capture records them ({@link StreamPlan} on 4 streams, not launch order). Lets the parity tests check
 * generated PTX against the float64 reference on machines without a GPU.
 */
public final class SimulatedCudaBackend implements Backend {
    private final PtxRenderer.Matmul matmul;
    private final PtxRenderer.Tiling tiling;
    private boolean fusedMlp;

    public SimulatedCudaBackend() { this(PtxRenderer.Matmul.FMA); }

    public SimulatedCudaBackend(PtxRenderer.Matmul matmul) { this(matmul, PtxRenderer.Tiling.NARROW); }

    public SimulatedCudaBackend(PtxRenderer.Matmul matmul, PtxRenderer.Tiling tiling) {
        this.matmul = matmul;
        this.tiling = tiling;
    }

    public PtxRenderer.Matmul matmul() { return matmul; }

    private boolean timeline;

    /** Kernels that record when they run, as CudaBackend's withTimeline: {@link Simulated#timeline} reads them. */
    public SimulatedCudaBackend withTimeline() {
        this.timeline = true;
        return this;
    }

    /** Residual MLP blocks as one kernel each, where {@link PtxRenderer#fits} (CudaBackend's CMC_CUDA_MLP=fused). */
    public SimulatedCudaBackend withFusedMlp() {
        this.fusedMlp = true;
        return this;
    }

    @Override
    public Program prepare(Program program, int maxBatch) {
        return fusedMlp ? PtxRenderer.fuseMlps(program, matmul, tiling) : program;
    }

    @Override
    public String name() { return "cuda-simulated"; }

    @Override
    public String deviceName() {
        return "PTX simulator (" + matmul.description + (tiling == PtxRenderer.Tiling.NARROW ? "" : ", " + tiling.name().toLowerCase() + " tiles")
                + (fusedMlp ? ", fused MLP blocks" : "") + ")";
    }

    @Override
    public Map<String, String> render(Program program, String header) {
        return Map.of(JavaRenderer.className(program) + ".ptx", PtxRenderer.render(prepare(program, Integer.MAX_VALUE), header, "sm_90", matmul, tiling));
    }

    @Override
    public Executable load(Program program, int maxBatch) {
        Program p = prepare(program, maxBatch);
        return new Simulated(p, new PtxSimulator(PtxRenderer.render(p, "program " + p.name(), "sm_90", matmul, tiling, timeline)), maxBatch);
    }

    final class Simulated implements Executable {
        private final Program program;
        private final PtxSimulator module;
        private final float[][] arrays;
        private final int maxBatch;
        private final List<Integer> order;
        /** Per kernel, the buffer of its split-K workspace (after the program's arrays), as each has its own on a GPU. */
        private final int[] workspaceOf;
        /** The timeline's buffer (after the workspaces), 2 longs a kernel as two floats each, or -1. */
        private final int timelineBuffer;

        Simulated(Program program, PtxSimulator module, int maxBatch) {
            this.program = program;
            this.order = StreamPlan.of(program, 4).order();
            this.module = module;
            this.maxBatch = maxBatch;
            var kernels = program.kernels();
            workspaceOf = new int[kernels.size()];
            int buffers = program.arrays().size();
            for (int k = 0; k < kernels.size(); k++) workspaceOf[k] = PtxRenderer.splitsK(kernels.get(k)) ? buffers++ : -1;
            timelineBuffer = timeline ? buffers++ : -1;
            arrays = new float[buffers][];
            if (timeline) arrays[timelineBuffer] = new float[(int) (PtxRenderer.timelineBytes(kernels.size()) / 4)];
            for (int k = 0; k < kernels.size(); k++) {
                if (workspaceOf[k] >= 0) arrays[workspaceOf[k]] = new float[(int) PtxRenderer.workspaceFloats(kernels.get(k), maxBatch, matmul, tiling)];
            }
            var memory = MemoryPlan.of(program);   // as CudaExecutable shares activations' memory
            for (int i = 0; i < program.arrays().size(); i++) {
                Program.Array a = program.arrays().get(i);
                if (!memory.owns(i)) {
                    arrays[i] = arrays[memory.storage(i)];
                    continue;
                }
                arrays[i] = new float[(int) Math.max(1, a.size(maxBatch))];
                if (a.constValues() != null) for (int j = 0; j < arrays[i].length; j++) arrays[i][j] = (float) a.constValues()[j];
            }
        }

        @Override
        public void write(String array, float[] src, int count) { System.arraycopy(src, 0, arrays[program.arrayIndex(array)], 0, count); }

        @Override
        public void read(String array, float[] dst, int count) { System.arraycopy(arrays[program.arrayIndex(array)], 0, dst, 0, count); }

        @Override
        public void run(int batch) {
            if (batch > maxBatch || batch < 1) throw new IllegalArgumentException("batch " + batch + " outside 1.." + maxBatch);
            if (timelineBuffer >= 0) {
                float[] t = arrays[timelineBuffer];
                int starts = 2 * program.kernels().size();   // floats: n longs
                java.util.Arrays.fill(t, 0, starts, Float.intBitsToFloat(-1));
                java.util.Arrays.fill(t, starts, t.length, 0);
            }
            for (int k : order) {
                var kernel = program.kernels().get(k);
                List<String> args = Indexing.arguments(kernel);
                boolean split = PtxRenderer.splitsK(kernel);
                int[] buffers = new int[args.size() + (split ? 1 : 0) + (timelineBuffer >= 0 ? 1 : 0)];
                for (int a = 0; a < args.size(); a++) buffers[a] = program.arrayIndex(args.get(a));
                if (split) buffers[args.size()] = workspaceOf[k];
                if (timelineBuffer >= 0) buffers[buffers.length - 1] = timelineBuffer;
                var l = PtxRenderer.launch(kernel, batch, matmul, tiling);
                // A GEMM summing its slices across a cluster runs them as one, as the cuda runtime launches it.
                int clusterZ = PtxRenderer.sumsByCluster(kernel, matmul, tiling) ? l.gridZ() : 1;
                module.launch(PtxRenderer.kernelName(program, k), l.gridX(), l.gridY(), l.gridZ(), clusterZ, l.block(), l.sharedBytes(), arrays, buffers, batch);
            }
        }

        /** The order the kernels run in: the CUDA graph capture's. */
        List<Integer> order() { return order; }

        /**
         * The whole timeline as a run left them (starts of all ones, ends and block records zero before each run), as
         * CudaExecutable reads it: the 2n slots, then the block records.
         */
        long[] timeline() {
            float[] t = arrays[timelineBuffer];
            long[] slots = new long[t.length / 2];
            for (int i = 0; i < slots.length; i++) {
                slots[i] = Float.floatToRawIntBits(t[2 * i]) & 0xffffffffL | (long) Float.floatToRawIntBits(t[2 * i + 1]) << 32;
            }
            return slots;
        }

        @Override
        public int maxBatch() { return maxBatch; }

        @Override
        public void close() {}
    }
}
