package dev.cmc.kernel;

import dev.cmc.ir.Shape;

import java.util.List;

/**
 * A compiled program: the arrays it uses and its kernels in launch order (the task graph's schedule).
 * {@code inputs} and {@code outputs} name the arrays the host fills and reads.
 */
public record Program(String name, List<Array> arrays, List<Kernel> kernels) {

    public enum Role { INPUT, OUTPUT, ACTIVATION, PARAMS, PARAMS_T, GRADS, STATE, CONST }

    /** An allocation. Batched shapes are allocated for the largest batch the runtime will run. */
    public record Array(String name, Role role, Shape shape, double[] constValues) {
        public long size(int batch) { return shape.size(batch); }
    }

    public Array array(String name) {
        for (Array a : arrays) if (a.name().equals(name)) return a;
        throw new IllegalArgumentException("no array " + name + " in " + this.name);
    }

    public int arrayIndex(String name) {
        for (int i = 0; i < arrays.size(); i++) if (arrays.get(i).name().equals(name)) return i;
        throw new IllegalArgumentException("no array " + name + " in " + this.name);
    }

    /**
     * The task graph as text: arrays (with the memory they share, {@link MemoryPlan}), then kernels in order with
     * what each reads and writes and which earlier kernels it must follow ({@link TaskDag}); kernels that follow
     * none of each other may run at once.
     */
    public String plan() {
        var dependencies = TaskDag.dependencies(this);
        var after = TaskDag.reduced(dependencies);
        var memory = MemoryPlan.of(this);
        var out = new StringBuilder("program " + name + "\n\narrays:\n");
        for (int i = 0; i < arrays.size(); i++) {
            Array a = arrays.get(i);
            String shared = memory.owns(i) ? "" : "  in the memory of " + arrays.get(memory.storage(i)).name();
            out.append(String.format("  %-28s %-10s %s%s%n", a.name(), a.role().name().toLowerCase(), a.shape(), shared));
        }
        var separate = MemoryPlan.separate(this);
        out.append(String.format("batched arrays: %,d bytes a row as jvm, OpenCL and cuda share memory (%,d each on its own)%n",
                memory.bytes(this, 2) - memory.bytes(this, 1), separate.bytes(this, 2) - separate.bytes(this, 1)));
        out.append("\nkernels (launch order):\n");
        int i = 0;
        for (Kernel k : kernels) {
            out.append(String.format("  %3d  %-36s %-12s domain %-10s writes %s%n", i++, k.name(),
                    k.getClass().getSimpleName().toLowerCase(), k.domain(), Kernels.writes(k)));
            out.append(String.format("       %-36s reads %s%n", "", Kernels.reads(k)));
            if (!after.get(i - 1).isEmpty()) out.append(String.format("       %-36s after %s%n", "", after.get(i - 1)));
        }
        out.append(String.format("%nlongest chain of dependent kernels: %d of %d%n", TaskDag.criticalPath(dependencies), kernels.size()));
        return out.toString();
    }
}
