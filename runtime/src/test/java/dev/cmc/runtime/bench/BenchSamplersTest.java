package dev.cmc.runtime.bench;

import dev.cmc.dsl.SpecLoader;
import dev.cmc.kernel.Program;
import dev.cmc.runtime.Backend;
import dev.cmc.runtime.Executable;
import dev.cmc.runtime.jvm.JvmBackend;
import org.junit.jupiter.api.Test;

import java.util.ArrayList;
import java.util.List;
import java.util.Map;

import static org.junit.jupiter.api.Assertions.assertEquals;

/**
 * `cmc bench` times each sampling batch on the program the backend runs at that batch: one sampler for every
 * batch where the backend prepares programs alike at any size, one per kind where it does not (cuda's
 * CMC_CUDA_MLP=fused fuses only programs loaded for large batches), each loaded for the largest batch of
 * its kind. The device memory it reports counts every sampler it loaded.
 */
class BenchSamplersTest {
    /** The jvm backend, with programs loaded for 512 rows or more renamed (as a backend that runs them otherwise), recording its loads. */
    private static final class SizeDependent implements Backend {
        final JvmBackend jvm = new JvmBackend(1);
        final List<String> loads = new ArrayList<>();
        final boolean dependsOnSize;

        SizeDependent(boolean dependsOnSize) { this.dependsOnSize = dependsOnSize; }

        @Override public String name() { return "jvm"; }
        @Override public Map<String, String> render(Program program, String header) { return jvm.render(program, header); }

        @Override
        public Program prepare(Program program, int maxBatch) {
            return dependsOnSize && maxBatch >= 512 ? new Program(program.name() + "_large", program.arrays(), program.kernels()) : program;
        }

        @Override
        public Executable load(Program program, int maxBatch) {
            Program p = prepare(program, maxBatch);
            loads.add(p.name() + "@" + maxBatch);
            return jvm.load(p, maxBatch);
        }
    }

    @Test
    void eachBatchRunsTheProgramItWouldBeLoadedAs() {
        var spec = SpecLoader.fromText("tiny.cm", "model tiny { input_dim = 2; hidden_size = 16; num_layers = 1; }\ndata { source = \"builtin:none\"; }");
        var batches = List.of(1024, 64, 700, 32);

        var same = new SizeDependent(false);
        var one = Bench.run(spec, same, "jvm", batches, 32, 0.01, (what, done, total) -> {});
        assertEquals(List.of("tiny_sample@1024", "tiny_train_step@32"), same.loads, "one sampler for every batch");

        var differing = new SizeDependent(true);
        var two = Bench.run(spec, differing, "jvm", batches, 32, 0.01, (what, done, total) -> {});
        assertEquals(List.of("tiny_sample_large@1024", "tiny_sample@64", "tiny_train_step@32"), differing.loads,
                "the large batches on one sampler, the small ones on another, each loaded for its largest batch");
        assertEquals(batches, two.sampling().stream().map(Bench.Sampling::batch).toList(), "every batch timed, in the order asked");
        var small = differing.prepare(dev.cmc.compile.Compiler.sampler(spec).program(), 64);
        long sampler64 = differing.arrayBytes(small, 64);
        assertEquals(one.deviceBytes() + sampler64, two.deviceBytes(), "the device memory counts both samplers");
    }
}
