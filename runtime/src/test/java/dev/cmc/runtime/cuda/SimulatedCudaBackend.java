package dev.cmc.runtime.cuda;

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

    public SimulatedCudaBackend() { this(PtxRenderer.Matmul.FMA); }

    public SimulatedCudaBackend(PtxRenderer.Matmul matmul) { this(matmul, PtxRenderer.Tiling.NARROW); }

    public SimulatedCudaBackend(PtxRenderer.Matmul matmul, PtxRenderer.Tiling tiling) {
        this.matmul = matmul;
        this.tiling = tiling;
    }

    public PtxRenderer.Matmul matmul() { return matmul; }

    @Override
    public String name() { return "cuda-simulated"; }

    @Override
    public Map<String, String> render(Program program, String header) {
        return Map.of(JavaRenderer.className(program) + ".ptx", PtxRenderer.render(program, header, "sm_90", matmul, tiling));
    }

    @Override
    public Executable load(Program program, int maxBatch) {
        return new Simulated(program, new PtxSimulator(PtxRenderer.render(program, "program " + program.name(), "sm_90", matmul, tiling)), maxBatch,
                (kernel, batch) -> PtxRenderer.launch(kernel, batch, matmul, tiling));
    }

    private static final class Simulated implements Executable {
        private final Program program;
        private final PtxSimulator module;
        private final float[][] arrays;
        private final int maxBatch;
        private final List<Integer> order;
        private final java.util.function.BiFunction<dev.cmc.kernel.Kernel, Integer, PtxRenderer.Launch> launches;

        Simulated(Program program, PtxSimulator module, int maxBatch, java.util.function.BiFunction<dev.cmc.kernel.Kernel, Integer, PtxRenderer.Launch> launches) {
            this.program = program;
            this.launches = launches;
            this.order = StreamPlan.of(program, 4).order();
            this.module = module;
            this.maxBatch = maxBatch;
            arrays = new float[program.arrays().size() + 1][];
            long workspace = 1;
            for (var k : program.kernels()) workspace = Math.max(workspace, PtxRenderer.workspaceFloats(k, maxBatch));
            arrays[arrays.length - 1] = new float[(int) workspace];
            for (int i = 0; i < program.arrays().size(); i++) {
                Program.Array a = program.arrays().get(i);
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
            for (int k : order) {
                var kernel = program.kernels().get(k);
                List<String> args = Indexing.arguments(kernel);
                boolean split = PtxRenderer.splitsK(kernel);
                int[] buffers = new int[args.size() + (split ? 1 : 0)];
                for (int a = 0; a < args.size(); a++) buffers[a] = program.arrayIndex(args.get(a));
                if (split) buffers[args.size()] = arrays.length - 1;   // the workspace, after the program's arrays
                var l = launches.apply(kernel, batch);
                module.launch(PtxRenderer.kernelName(program, k), l.gridX(), l.gridY(), l.gridZ(), l.block(), l.sharedBytes(), arrays, buffers, batch);
            }
        }

        @Override
        public int maxBatch() { return maxBatch; }

        @Override
        public void close() {}
    }
}
