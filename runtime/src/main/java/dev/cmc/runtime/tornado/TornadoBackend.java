package dev.cmc.runtime.tornado;

import dev.cmc.kernel.MemoryPlan;
import dev.cmc.kernel.Program;
import dev.cmc.render.TornadoRenderer;
import dev.cmc.runtime.Backend;
import dev.cmc.runtime.Executable;

import java.util.List;
import java.util.Map;

/** Generated TornadoVM task graphs, compiled against the user's SDK and run by TornadoVM in a child JVM. */
public final class TornadoBackend implements Backend {
    private final TornadoSdk sdk;
    private String device;

    public TornadoBackend() {
        this.sdk = TornadoSdk.find();
    }

    @Override
    public String name() { return "tornado"; }

    /** TornadoVM's default device (0:0), as its device query names it. */
    @Override
    public String deviceName() {
        if (device == null) {
            List<String> all = sdk.devices();
            device = "TornadoVM " + (all.isEmpty() ? "(no device)" : all.getFirst());
        }
        return device;
    }

    @Override
    public Map<String, String> render(Program program, String header) {
        return Map.of(TornadoRenderer.className(program) + ".java", TornadoRenderer.render(program, dev.cmc.runtime.jvm.JvmBackend.lanes(), header));
    }

    /** Every array its own: the generated program allocates them, and TornadoVM tracks device copies by Java object. */
    @Override
    public MemoryPlan memoryPlan(Program program) { return MemoryPlan.separate(program); }

    @Override
    public Executable load(Program program, int maxBatch) {
        return new TornadoExecutable(sdk, program, TornadoRenderer.render(program, dev.cmc.runtime.jvm.JvmBackend.lanes(), "program " + program.name()), maxBatch);
    }
}
