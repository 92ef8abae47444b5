package dev.cmc.runtime.jvm;

import dev.cmc.kernel.Program;
import dev.cmc.render.GeneratedKernels;
import dev.cmc.render.JavaRenderer;
import dev.cmc.runtime.Backend;
import dev.cmc.runtime.Executable;
import jdk.incubator.vector.FloatVector;

import java.util.Map;

/** The embedded backend: generated Java with the Vector API, compiled in-process, run on every core. */
public final class JvmBackend implements Backend {
    private final int threads;

    public JvmBackend() { this(Runtime.getRuntime().availableProcessors()); }

    public JvmBackend(int threads) { this.threads = threads; }

    public static int lanes() { return FloatVector.SPECIES_PREFERRED.length(); }

    @Override
    public String name() { return "jvm"; }

    @Override
    public Map<String, String> render(Program program, String header) {
        return Map.of(JavaRenderer.className(program) + ".java", JavaRenderer.render(program, lanes(), header));
    }

    @Override
    public JvmExecutable load(Program program, int maxBatch) {
        String source = JavaRenderer.render(program, lanes(), "program " + program.name());
        Class<?> cls = InMemoryJavaCompiler.compile(JavaRenderer.PACKAGE + "." + JavaRenderer.className(program), source);
        try {
            var kernels = (GeneratedKernels) cls.getDeclaredConstructor().newInstance();
            return new JvmExecutable(program, kernels, maxBatch, new Parallel(threads), lanes());
        } catch (ReflectiveOperationException e) {
            throw new IllegalStateException("cannot instantiate generated " + cls.getName(), e);
        }
    }
}
