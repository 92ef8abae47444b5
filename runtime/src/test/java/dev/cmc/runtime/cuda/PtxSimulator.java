package dev.cmc.runtime.cuda;

import java.util.*;

/**
 * Runs the PTX that {@link dev.cmc.render.PtxRenderer} writes, on the CPU, so that every generated kernel can
 * be checked against the float64 reference on a machine without a GPU. It knows exactly the instructions the
 * renderer emits (an unknown one is an error, so the two cannot drift apart silently), runs each block's
 * threads until they meet at a bar.sync or a warp shuffle, checks every global and shared access against the
 * buffer it falls in, and computes like the hardware up to the approximate instructions (ex2, lg2, sin, cos,
 * div.full), which it evaluates exactly. Shared memory is one window, as on the GPU (wgmma's descriptors hold
 * 18-bit shared addresses): each variable at its own 128-byte-aligned offset, with unused guard bytes between
 * them that no access may touch, and a module's dynamic (.extern) shared array last, as large as the launch says.
 */
final class PtxSimulator {
    private static final long GLOBAL = 1L << 40, SHARED = 1L << 60;
    /** A cluster's shared window (mapa.shared::cluster): block rank r's shared byte b at CLUSTER_SHARED + r·2^24 + b. */
    private static final long CLUSTER_SHARED = 1L << 56;

    /**
     * %globaltimer: a count that each read advances, so that whatever reads it later (a later block, a later kernel:
     * they run one after another here) reads more, as the GPU's nanosecond timer would.
     */
    private static final java.util.concurrent.atomic.AtomicLong CLOCK = new java.util.concurrent.atomic.AtomicLong();

    /** Global buffers: float arrays addressed as base(i) + 4·index. */
    static long base(int buffer) { return GLOBAL + ((long) buffer << 36); }

    private enum Kind { REG, IMM, SPECIAL, SYMBOL, ADDR }

    private record Operand(Kind kind, int reg, long imm, String name) {}

    /**
     * An instruction: its opcode (interned, so that the interpreter's switch compares it by identity), operands,
     * guard predicate and branch target; whether it is a warpgroup collective (a wgmma but its fence) and whether
     * it touches global memory, worked out once rather than at every execution.
     */
    private record Instr(String op, Operand[] args, int guard, boolean negate, int target, String text, boolean collective, boolean global) {
        Instr(String op, Operand[] args, int guard, boolean negate, int target, String text) {
            this(op.intern(), args, guard, negate, target, text, op.startsWith("wgmma.") && !op.equals("wgmma.fence.sync.aligned"),
                    (op.contains(".global") || op.startsWith("cp.async.c") || op.startsWith("cp.async.bulk")) && !op.startsWith("cvta"));
        }
    }

    /** A shared variable: its byte offset in the block's shared window and its size in floats. */
    private record SharedVar(String name, int floats, int offset) {
        long base() { return SHARED + offset; }
    }

    /** Bytes between shared variables that no access may touch, so that overrunning one is an error. */
    private static final int SHARED_GUARD = 256;

    private static int sharedEnd(List<SharedVar> vars) {
        int end = 0;
        for (SharedVar v : vars) end = Math.max(end, v.offset() + 4 * v.floats());
        return (end + SHARED_GUARD + 127) / 128 * 128;
    }

    /** One .entry: its parameters, shared variables, registers and instructions. */
    static final class Entry {
        final String name;
        final List<String> params = new ArrayList<>();
        final List<SharedVar> shared = new ArrayList<>();
        final Map<String, Integer> regs = new HashMap<>();
        final List<Instr> code = new ArrayList<>();
        /** Whether the kernel waits for the grids before it (griddepcontrol.wait): then no thread may touch global memory before its wait. */
        boolean awaitsGrids;

        Entry(String name) { this.name = name; }

        int reg(String r) { return regs.computeIfAbsent(r, k -> regs.size()); }
    }

    private final Map<String, Entry> entries = new LinkedHashMap<>();
    /** The module's dynamic shared array (.extern .shared), or null. */
    private String dynamicShared;

    /**
     * Shared-memory loads counted by the wavefronts (passes through the 32 banks) a warp needs for them, when
     * {@link #countBankConflicts} is on: per "entry: instruction", the worst seen and the least possible (1 for
     * 32-bit loads, 2 for 64-bit, 4 for 128-bit and for ldmatrix.x4). Lanes reading the same word share it.
     */
    final Map<String, int[]> sharedLoadWavefronts = new TreeMap<>();
    boolean countBankConflicts;

    PtxSimulator(String ptx) {
        Entry e = null;
        Map<String, Integer> labels = new HashMap<>();
        List<String[]> pendingBranches = new ArrayList<>();
        for (String raw : ptx.split("\n")) {
            String line = raw.contains("//") ? raw.substring(0, raw.indexOf("//")) : raw;
            line = line.strip();
            if (line.isEmpty() || line.startsWith(".version") || line.startsWith(".target") || line.startsWith(".address_size")
                    || line.startsWith(".maxntid") || line.startsWith(".maxnreg") || line.startsWith(".pragma") || line.equals("{") || line.equals(")") || line.startsWith(".reg")) continue;
            if (line.startsWith(".visible .entry")) {
                e = new Entry(line.substring(16, line.indexOf('(')).strip());
                entries.put(e.name, e);
                labels.clear();
                continue;
            }
            if (line.startsWith(".param")) {
                e.params.add(line.replaceAll("[,)]", "").split("\\s+")[2]);
                continue;
            }
            if (line.startsWith(".extern .shared")) {
                String decl = line.substring(line.lastIndexOf(' ') + 1);
                dynamicShared = decl.substring(0, decl.indexOf('['));
                continue;
            }
            if (line.startsWith(".shared")) {
                String decl = line.substring(line.lastIndexOf(' ') + 1).replace(";", "");
                String name = decl.substring(0, decl.indexOf('['));
                int n = Integer.parseInt(decl.substring(decl.indexOf('[') + 1, decl.indexOf(']')));
                e.shared.add(new SharedVar(name, n, e.shared.isEmpty() ? 0 : sharedEnd(e.shared)));
                continue;
            }
            if (line.equals("}")) {
                resolve(e, labels);
                continue;
            }
            if (line.endsWith(":")) {
                labels.put(line.substring(0, line.length() - 1), e.code.size());
                continue;
            }
            e.code.add(parse(e, line));
            if (line.startsWith("griddepcontrol.wait")) e.awaitsGrids = true;
        }
    }

    private static void resolve(Entry e, Map<String, Integer> labels) {
        for (int i = 0; i < e.code.size(); i++) {
            Instr in = e.code.get(i);
            if (in.op.equals("bra")) {
                Integer t = labels.get(in.args[0].name);
                if (t == null) throw new IllegalStateException(e.name + ": no label " + in.args[0].name);
                e.code.set(i, new Instr(in.op, in.args, in.guard, in.negate, t, in.text));
            }
        }
    }

    private static Instr parse(Entry e, String line) {
        String text = line;
        int guard = -1;
        boolean negate = false;
        if (line.startsWith("@")) {
            String g = line.substring(1, line.indexOf(' '));
            negate = g.startsWith("!");
            guard = e.reg(negate ? g.substring(1) : g);
            line = line.substring(line.indexOf(' ') + 1).strip();
        }
        line = line.endsWith(";") ? line.substring(0, line.length() - 1) : line;
        int space = line.indexOf(' ');
        String op = space < 0 ? line : line.substring(0, space);
        String rest = space < 0 ? "" : line.substring(space + 1);
        List<Operand> args = new ArrayList<>();
        for (String a : rest.isEmpty() ? new String[0] : rest.split(",\\s*")) args.add(operand(e, a.strip()));
        return new Instr(op, args.toArray(Operand[]::new), guard, negate, -1, text);
    }

    private static Operand operand(Entry e, String a) {
        a = a.replace("{", "").replace("}", "").strip();   // mma's vector operands are read as a flat list
        if (a.startsWith("[")) {
            String inner = a.substring(1, a.length() - 1);
            int plus = inner.indexOf('+');
            String r = plus < 0 ? inner : inner.substring(0, plus);
            long off = plus < 0 ? 0 : Long.parseLong(inner.substring(plus + 1));
            return r.startsWith("%") ? new Operand(Kind.ADDR, e.reg(r), off, null) : new Operand(Kind.SYMBOL, -1, off, r);
        }
        if (a.startsWith("%tid") || a.startsWith("%ctaid") || a.startsWith("%nctaid") || a.startsWith("%cluster_") || a.equals("%globaltimer") || a.equals("%smid")) {
            return new Operand(Kind.SPECIAL, -1, 0, a);
        }
        if (a.startsWith("%")) return new Operand(Kind.REG, e.reg(a), 0, null);
        if (a.startsWith("0f")) return new Operand(Kind.IMM, -1, Long.parseLong(a.substring(2), 16), null);
        if (a.startsWith("0x")) return new Operand(Kind.IMM, -1, Long.parseLong(a.substring(2), 16), null);
        if (a.matches("-?\\d+")) return new Operand(Kind.IMM, -1, Long.parseLong(a), null);
        return new Operand(Kind.SYMBOL, -1, 0, a);
    }

    /**
     * Runs an entry over a grid of blocks of the given threads, with sharedBytes of dynamic shared memory.
     * bufferOfParam: a buffer index per pointer parameter; rows: the last parameter.
     */
    void launch(String name, int gridX, int gridY, int gridZ, int block, int sharedBytes, float[][] buffers, int[] bufferOfParam, int rows) {
        launch(name, gridX, gridY, gridZ, 1, block, sharedBytes, buffers, bufferOfParam, rows);
    }

    /**
     * The same as clusters of (1, 1, clusterZ) blocks: a cluster's blocks run together, each up to its next cluster
     * barrier (barrier.cluster.wait), which releases them once every thread of every block of the cluster is at one;
     * each reads the others' shared memory through the cluster's window (mapa, ld.shared::cluster).
     */
    void launch(String name, int gridX, int gridY, int gridZ, int clusterZ, int block, int sharedBytes, float[][] buffers, int[] bufferOfParam, int rows) {
        Entry e = entries.get(name);
        if (e == null) throw new IllegalArgumentException("no entry " + name + " in the module");
        if (gridZ % clusterZ != 0) throw new IllegalArgumentException(name + ": a grid " + gridZ + " deep in clusters " + clusterZ + " deep");
        List<SharedVar> shared = new ArrayList<>(e.shared);
        if (sharedBytes > 0) {
            if (dynamicShared == null) throw new IllegalStateException(name + ": launched with dynamic shared memory, but the module declares none");
            shared.add(new SharedVar(dynamicShared, sharedBytes / 4, shared.isEmpty() ? 0 : sharedEnd(shared)));
        }
        for (int bz0 = 0; bz0 < gridZ; bz0 += clusterZ) {
            for (int by = 0; by < gridY; by++) {
                for (int bx = 0; bx < gridX; bx++) {
                    var cluster = new ArrayList<Block>();
                    for (int bz = bz0; bz < bz0 + clusterZ; bz++) cluster.add(new Block(e, shared, bx, by, bz, gridX, gridY, gridZ, block, buffers, bufferOfParam, rows));
                    for (Block b : cluster) b.cluster = cluster;
                    runCluster(cluster);
                    if (countBankConflicts) for (Block b : cluster) b.wavefronts(sharedLoadWavefronts);
                }
            }
        }
    }

    /** A cluster's blocks, each run up to its next cluster barrier, then all released together, until all have ended. */
    private static void runCluster(List<Block> cluster) {
        while (true) {
            for (Block b : cluster) b.run();
            boolean allDone = cluster.stream().allMatch(Block::done), anyDone = cluster.stream().anyMatch(Block::done);
            if (allDone) return;
            if (anyDone) throw cluster.getFirst().stuck("a block of the cluster ended while the others wait at a cluster barrier");
            for (Block b : cluster) b.leaveClusterBarrier();
        }
    }

    Set<String> entryNames() { return entries.keySet(); }

    /** One block: its threads' registers and program counters, its shared memory. */
    private static final class Block {
        private static final int RUN = 0, BAR = 1, SHFL = 2, DONE = 3, WAIT = 4, CLUSTER = 5;
        private static final String MMA = "mma.sync.aligned.m16n8k8.row.col.f32.tf32.tf32.f32";
        private static final String MMA_BF16 = "mma.sync.aligned.m16n8k16.row.col.f32.bf16.bf16.f32";
        private static final String LDMATRIX = "ldmatrix.sync.aligned.m8n8.x4.shared.b16";
        private static final String WGMMA = "wgmma.mma_async.sync.aligned.";
        private static final int WARPGROUP = 128;
        /** Per warpgroup (by its first thread): its wgmma commit groups not yet retired, the last one still open. */
        final Map<Integer, List<List<Runnable>>> wgmmaGroups = new HashMap<>();
        /** Per thread and register: how many issued, unretired wgmma use it (no other instruction may touch it). */
        final int[][] locked;
        /** The shared bytes [from, to) that issued, unretired wgmma may still read: no write may touch them. */
        final List<long[]> wgmmaReads = new ArrayList<>();
        final Entry e;
        /** The blocks of its cluster, itself among them, by rank: itself alone unless launched in clusters. */
        List<Block> cluster = List.of(this);
        /** Per thread: whether it has arrived at the cluster barrier (barrier.cluster.arrive) that it has yet to wait at. */
        final boolean[] clusterArrived;
        final List<SharedVar> vars;
        final int bx, by, bz, gridX, gridY, gridZ, n, rows;
        final float[][] buffers;
        final int[] bufferOfParam;
        final float[] shared;
        final long[][] regs;
        final int[] pc, state;
        /** Per thread: whether it has passed griddepcontrol.wait, before which global memory may still be the grid before's. */
        final boolean[] awaited;
        /**
         * Each thread's cp.async copies not yet landed, by commit group (the last one still open). They land,
         * oldest group first, only when a cp.async.wait_group lets no more be pending, so that reading a stage
         * before waiting for it reads stale data, as it may on the hardware.
         */
        final List<List<List<Runnable>>> pending = new ArrayList<>();
        /**
         * The block's mbarriers, by shared address: a phase completes once its expected arrivals have come and the
         * bytes that arrivals said to expect (expect_tx) have landed. A bulk copy reads global memory when issued but
         * lands in shared memory only when a thread tests the barrier it completes on, so that reading a stage
         * without waiting for its fill reads stale data, as it may on the hardware.
         */
        final Map<Long, MBarrier> mbarriers = new HashMap<>();

        private static final class MBarrier {
            final int count;
            int arrived, completed;
            long tx;
            final List<Runnable> landing = new ArrayList<>();

            MBarrier(int count) { this.count = count; }

            /** Lands the bulk copies in flight, then completes the phase if every arrival and byte is in. */
            void settle() {
                landing.forEach(Runnable::run);
                landing.clear();
                if (arrived == count && tx == 0) {
                    completed++;
                    arrived = 0;
                }
            }
        }
        /** Shared loads by (warp, instruction, how many times its lanes have run it): each lane's byte address. */
        final Map<List<Integer>, long[]> sharedLoads = new HashMap<>();
        final Map<Integer, int[]> visits = new HashMap<>();

        Block(Entry e, List<SharedVar> vars, int bx, int by, int bz, int gridX, int gridY, int gridZ, int n, float[][] buffers, int[] bufferOfParam, int rows) {
            this.e = e;
            this.vars = vars;
            this.bx = bx;
            this.by = by;
            this.bz = bz;
            this.gridX = gridX;
            this.gridY = gridY;
            this.gridZ = gridZ;
            this.n = n;
            this.rows = rows;
            this.buffers = buffers;
            this.bufferOfParam = bufferOfParam;
            shared = new float[sharedEnd(vars) / 4];
            regs = new long[n][e.regs.size() + 1];
            locked = new int[n][e.regs.size() + 1];
            pc = new int[n];
            awaited = new boolean[n];
            clusterArrived = new boolean[n];
            state = new int[n];
            for (int t = 0; t < n; t++) pending.add(new ArrayList<>(List.of(new ArrayList<>())));
        }

        void run() {
            while (true) {
                boolean ran = false;   // whether some thread got past an instruction, or to a barrier
                for (int t = 0; t < n; t++) if (state[t] == WAIT) state[t] = RUN;   // tests its mbarrier again
                for (int t = 0; t < n; t++) {
                    if (state[t] != RUN) continue;
                    int before = pc[t];
                    step(t);
                    ran |= pc[t] != before || state[t] != WAIT;
                }
                boolean allDone = true, anyBar = false, anyWait = false, parked = true, anyCluster = false;
                for (int t = 0; t < n; t++) {
                    allDone &= state[t] == DONE;
                    anyBar |= state[t] == BAR;
                    anyWait |= state[t] == WAIT;
                    anyCluster |= state[t] == CLUSTER;
                    parked &= state[t] == DONE || state[t] == CLUSTER;
                }
                if (allDone) return;
                if (anyCluster && parked) {
                    for (int t = 0; t < n; t++) if (state[t] == DONE) throw stuck("barrier.cluster.wait reached by only some threads");
                    return;   // every thread at the cluster barrier: the cluster releases them
                }
                boolean progressed = false;
                for (int w = 0; w < n; w += 32) progressed |= shuffle(w);
                // One warpgroup's wgmma collective a round, the first ready: it runs on ahead of the others up to
                // its next barrier, so that a warpgroup touching what another's unretired wgmma still reads is caught.
                for (int w = 0; w < n && !progressed; w += WARPGROUP) progressed = warpgroup(w);
                if (anyWait) {
                    if (!progressed && !ran) throw stuck("threads wait on mbarrier phases that nothing will complete");
                    continue;
                }
                if (!progressed && anyBar) {
                    for (int t = 0; t < n; t++) if (state[t] != BAR && state[t] != DONE) throw stuck("bar.sync reached by only some threads");
                    for (int t = 0; t < n; t++) if (state[t] == BAR) { state[t] = RUN; pc[t]++; }
                    progressed = true;
                }
                if (!progressed) throw stuck("threads wait for each other");
            }
        }

        boolean done() {
            for (int t = 0; t < n; t++) if (state[t] != DONE) return false;
            return true;
        }

        /** The cluster's barrier complete: every thread of this block past its barrier.cluster.wait. */
        void leaveClusterBarrier() {
            for (int t = 0; t < n; t++) {
                if (state[t] != CLUSTER) throw stuck("threads wait for each other across the cluster");
                state[t] = RUN;
                pc[t]++;
            }
        }

        /**
         * The float of the cluster's shared window at addr: block rank r's shared memory (see {@link #CLUSTER_SHARED}),
         * which must lie inside one of its shared variables.
         */
        private float loadCluster(long addr, String text) {
            long at = addr - CLUSTER_SHARED;
            int rank = (int) (at >>> 24);
            if (at < 0 || rank >= cluster.size()) throw new IllegalStateException(e.name + ": a cluster shared address of no block of the cluster (rank " + rank + " of " + cluster.size() + ") at: " + text);
            Block b = cluster.get(rank);
            if (b.done()) throw new IllegalStateException(e.name + ": shared memory of a block of the cluster read after that block ended at: " + text);
            return b.shared[b.sharedIndex(SHARED + (at & 0xffffff), text)];
        }

        IllegalStateException stuck(String why) {
            return new IllegalStateException(e.name + " block (" + bx + ", " + by + "): " + why);
        }

        /**
         * The instruction at which all live threads from..from+count wait for each other, or -1 if some still run
         * (or none lives); threads waiting at different ones are an error.
         */
        private int collectiveAt(int from, int count, String mismatch) {
            int at = -1;
            for (int t = from; t < Math.min(n, from + count); t++) {
                if (state[t] == DONE) continue;
                if (state[t] != SHFL) return -1;
                if (at >= 0 && pc[t] != at) throw stuck(mismatch);
                at = pc[t];
            }
            return at;
        }

        /** A warp whose live lanes all wait at the same shfl exchanges values; returns whether it did. */
        private boolean shuffle(int w) {
            int at = collectiveAt(w, 32, "lanes of a warp at different shuffles");
            if (at < 0) return false;
            Instr in = e.code.get(at);
            if (in.op.startsWith("wgmma.")) return false;   // a warpgroup's, see warpgroup()
            if (in.op.equals(MMA)) {
                mma(w, in);
                return true;
            }
            if (in.op.equals(MMA_BF16)) {
                mmaBf16(w, in);
                return true;
            }
            if (in.op.equals(LDMATRIX)) {
                ldmatrix(w, in);
                return true;
            }
            long[] value = new long[32];
            for (int t = w; t < Math.min(n, w + 32); t++) value[t - w] = get(t, in.args[1]);
            for (int t = w; t < Math.min(n, w + 32); t++) {
                if (state[t] == DONE) continue;
                int src = (t - w) ^ (int) get(t, in.args[2]);
                regs[t][in.args[0].reg] = value[src];
                state[t] = RUN;
                pc[t]++;
            }
            return true;
        }

        /**
         * A warpgroup (128 threads) whose threads all wait at the same wgmma instruction runs it; returns whether
         * it did. wgmma.mma_async is asynchronous, as on the GPU: it takes its A registers and descriptor when
         * issued, but reads B from shared memory and the accumulators, and writes them, only when a
         * wgmma.wait_group retires its commit group. Until then, any other instruction touching its registers, or
         * any write (a store, a cp.async) to the shared bytes it reads, is an error: the races the PTX ISA leaves
         * undefined, which a GPU might or might not show.
         */
        private boolean warpgroup(int w0) {
            int at = collectiveAt(w0, WARPGROUP, "threads of a warpgroup at different wgmma instructions");
            if (at < 0) return false;
            Instr in = e.code.get(at);
            if (!in.op.startsWith("wgmma.")) return false;
            for (int t = w0; t < w0 + WARPGROUP; t++) if (t >= n || state[t] == DONE) throw stuck("wgmma without a whole warpgroup: " + in.text);
            var groups = wgmmaGroups.computeIfAbsent(w0, x -> new ArrayList<>(List.of(new ArrayList<>())));
            if (in.op.startsWith(WGMMA)) groups.getLast().add(wgmma(w0, in));
            else if (in.op.equals("wgmma.commit_group.sync.aligned")) groups.add(new ArrayList<>());
            else if (in.op.equals("wgmma.wait_group.sync.aligned")) {
                int pending = (int) get(w0, in.args[0]);
                while (groups.size() - 1 > pending) groups.removeFirst().forEach(Runnable::run);
            } else throw new IllegalStateException(e.name + ": the simulator does not know: " + in.text);
            for (int t = w0; t < w0 + WARPGROUP; t++) {
                state[t] = RUN;
                pc[t]++;
            }
            return true;
        }

        /**
         * wgmma.mma_async m64nNk8 (TF32 in, fp32 out), A from registers or by descriptor, B by descriptor, issued:
         * what it will do when retired. Layouts as the PTX ISA gives them: warp w of the group holds rows 16w… of A
         * and D; lane l (g = l / 4, t = l % 4) A(g, t), A(g+8, t), A(g, t+4), A(g+8, t+4), and D register 4j + e is
         * D(g + 8·(e/2), 8j + 2t + e%2). A(i, k) and B(k, j) by descriptor, K-major without swizzle, lie at
         * start + (i/8)·SBO + (k/4)·LBO + (i%8)·16 + (k%4)·4 bytes (j for i in B's). A descriptor's shared bytes are
         * read when it is retired, its registers when issued. TF32 operands are read as the top 19 bits of their
         * fp32 words. Scale-d 0 ignores the accumulators' old values.
         */
        private Runnable wgmma(int w0, Instr in) {
            var shape = java.util.regex.Pattern.compile("m64n(\\d+)k8\\.f32\\.tf32\\.tf32").matcher(in.op);
            if (!shape.find()) throw new IllegalStateException(e.name + ": the simulator knows TF32 m64nNk8 wgmma only: " + in.text);
            int cols = Integer.parseInt(shape.group(1)), dRegs = cols / 2;
            Operand[] a = in.args;
            boolean aShared = a.length == dRegs + 5;
            int aRegs = aShared ? 1 : 4, b = dRegs + aRegs;
            if ((a.length != dRegs + 8 && !aShared) || get(w0, a[b + 2]) != 1 || get(w0, a[b + 3]) != 1) {
                throw new IllegalStateException(e.name + ": expected " + dRegs + " accumulators, 4 A registers or a descriptor, a descriptor,"
                        + " scale-d and scales of 1: " + in.text);
            }
            float[][] am = new float[64][8];
            long desc = get(w0, a[b]), aDesc = aShared ? get(w0, a[dRegs]) : 0;
            boolean accumulate = get(w0, a[b + 1]) != 0;
            for (int t = w0; t < w0 + WARPGROUP; t++) {
                int w = (t - w0) / 32, l = (t - w0) % 32, g = l >> 2, q = l & 3;
                if (get(t, a[b]) != desc || (aShared && get(t, a[dRegs]) != aDesc)) throw stuck("wgmma descriptor differs between threads: " + in.text);
                if (aShared) continue;
                am[16 * w + g][q] = tf32(get(t, a[dRegs]));
                am[16 * w + g + 8][q] = tf32(get(t, a[dRegs + 1]));
                am[16 * w + g][q + 4] = tf32(get(t, a[dRegs + 2]));
                am[16 * w + g + 8][q + 4] = tf32(get(t, a[dRegs + 3]));
            }
            long[] bLayout = layout(desc, in.text), aLayout = aShared ? layout(aDesc, in.text) : null;
            int held = aShared ? dRegs : b;   // accumulators and A registers; descriptors are read when issued
            for (int t = w0; t < w0 + WARPGROUP; t++) for (int r = 0; r < held; r++) locked[t][a[r].reg]++;
            List<long[]> reads = new ArrayList<>(List.of(readRange(bLayout, cols)));
            if (aShared) reads.add(readRange(aLayout, 64));
            wgmmaReads.addAll(reads);
            return () -> {
                for (int t = w0; t < w0 + WARPGROUP; t++) for (int r = 0; r < held; r++) locked[t][a[r].reg]--;
                reads.forEach(wgmmaReads::remove);
                if (aShared) for (int i = 0; i < 64; i++) for (int k = 0; k < 8; k++) am[i][k] = coreMatrixElement(aLayout, i, k, in.text);
                float[][] bm = new float[8][cols];
                for (int k = 0; k < 8; k++) for (int j = 0; j < cols; j++) bm[k][j] = coreMatrixElement(bLayout, j, k, in.text);
                for (int t = w0; t < w0 + WARPGROUP; t++) {
                    int w = (t - w0) / 32, l = (t - w0) % 32, g = l >> 2, q = l & 3;
                    for (int r = 0; r < dRegs; r++) {
                        int row = 16 * w + g + 8 * ((r & 3) >> 1), col = 8 * (r >> 2) + 2 * q + (r & 1);
                        double sum = accumulate ? f(regs[t][a[r].reg]) : 0;
                        for (int k = 0; k < 8; k++) sum += (double) am[row][k] * bm[k][col];
                        regs[t][a[r].reg] = bits((float) sum);
                    }
                }
            };
        }

        /** A wgmma descriptor's start address (in the shared window), LBO and SBO, in bytes. */
        private long[] layout(long desc, String text) {
            if ((desc >>> 62) != 0 || ((desc >>> 49) & 7) != 0) throw stuck("swizzled or offset wgmma descriptors are not simulated: " + text);
            return new long[]{SHARED + ((desc & 0x3fff) << 4), ((desc >>> 16) & 0x3fff) << 4, ((desc >>> 32) & 0x3fff) << 4};
        }

        /** The shared bytes [from, to) a K-major operand of this many rows (M or N) and 8 K reads. */
        private static long[] readRange(long[] layout, int rows) {
            return new long[]{layout[0], layout[0] + (rows / 8 - 1) * layout[2] + layout[1] + 8 * 16};
        }

        /** Element (i, k) of a K-major operand by descriptor, as TF32. */
        private float coreMatrixElement(long[] layout, int i, int k, String text) {
            return tf32(bits(load("shared", layout[0] + (i / 8) * layout[2] + (k / 4) * layout[1] + (i % 8) * 16 + (k % 4) * 4, text)));
        }

        /** A TF32 operand as the tensor cores read an fp32 word: its top 19 bits. */
        private static float tf32(long bits) { return f(bits & 0xffffe000L); }

        /**
         * mma.sync m16n8k8 (TF32 in, fp32 out) across the warp, with the PTX ISA's fragment layout: lane l holds
         * A(g, t), A(g+8, t), A(g, t+4), A(g+8, t+4); B(t, g), B(t+4, g); C and D (g, 2t), (g, 2t+1), (g+8, 2t),
         * (g+8, 2t+1), where g = l / 4 and t = l % 4.
         */
        private void mma(int w, Instr in) {
            float[][] a = new float[16][8], b = new float[8][8], c = new float[16][8];
            for (int l = 0; l < 32; l++) {
                int t = w + l, g = l >> 2, q = l & 3;
                a[g][q] = f(get(t, in.args[4]));
                a[g + 8][q] = f(get(t, in.args[5]));
                a[g][q + 4] = f(get(t, in.args[6]));
                a[g + 8][q + 4] = f(get(t, in.args[7]));
                b[q][g] = f(get(t, in.args[8]));
                b[q + 4][g] = f(get(t, in.args[9]));
                c[g][2 * q] = f(get(t, in.args[10]));
                c[g][2 * q + 1] = f(get(t, in.args[11]));
                c[g + 8][2 * q] = f(get(t, in.args[12]));
                c[g + 8][2 * q + 1] = f(get(t, in.args[13]));
            }
            float[][] d = new float[16][8];
            for (int i = 0; i < 16; i++) for (int j = 0; j < 8; j++) {
                double sum = c[i][j];
                for (int p = 0; p < 8; p++) sum += (double) a[i][p] * b[p][j];
                d[i][j] = (float) sum;
            }
            for (int l = 0; l < 32; l++) {
                int t = w + l, g = l >> 2, q = l & 3;
                regs[t][in.args[0].reg] = bits(d[g][2 * q]);
                regs[t][in.args[1].reg] = bits(d[g][2 * q + 1]);
                regs[t][in.args[2].reg] = bits(d[g + 8][2 * q]);
                regs[t][in.args[3].reg] = bits(d[g + 8][2 * q + 1]);
                state[t] = RUN;
                pc[t]++;
            }
        }

        /**
         * mma.sync m16n8k16 (bf16 in, fp32 out): lane l holds A(g, 2t..2t+1), A(g+8, 2t..2t+1), A(g, 2t+8..2t+9),
         * A(g+8, 2t+8..2t+9) and B(2t..2t+1, g), B(2t+8..2t+9, g), two bf16 to a register, the lower k in the
         * lower half; C and D as for m16n8k8.
         */
        private void mmaBf16(int w, Instr in) {
            float[][] a = new float[16][16], b = new float[16][8], c = new float[16][8];
            for (int l = 0; l < 32; l++) {
                int t = w + l, g = l >> 2, q = l & 3;
                for (int r = 0; r < 4; r++) {
                    long v = get(t, in.args[4 + r]);
                    int row = g + 8 * (r & 1), k = 2 * q + 8 * (r >> 1);
                    a[row][k] = bf16(v);
                    a[row][k + 1] = bf16(v >>> 16);
                }
                for (int r = 0; r < 2; r++) {
                    long v = get(t, in.args[8 + r]);
                    b[2 * q + 8 * r][g] = bf16(v);
                    b[2 * q + 8 * r + 1][g] = bf16(v >>> 16);
                }
                c[g][2 * q] = f(get(t, in.args[10]));
                c[g][2 * q + 1] = f(get(t, in.args[11]));
                c[g + 8][2 * q] = f(get(t, in.args[12]));
                c[g + 8][2 * q + 1] = f(get(t, in.args[13]));
            }
            for (int l = 0; l < 32; l++) {
                int t = w + l, g = l >> 2, q = l & 3;
                int[][] at = {{g, 2 * q}, {g, 2 * q + 1}, {g + 8, 2 * q}, {g + 8, 2 * q + 1}};
                for (int r = 0; r < 4; r++) {
                    double sum = c[at[r][0]][at[r][1]];
                    for (int p = 0; p < 16; p++) sum += (double) a[at[r][0]][p] * b[p][at[r][1]];
                    regs[t][in.args[r].reg] = bits((float) sum);
                }
                state[t] = RUN;
                pc[t]++;
            }
        }

        /** The bf16 in the low 16 bits of v, as a float. */
        private static float bf16(long v) { return Float.intBitsToFloat((int) ((v & 0xffff) << 16)); }

        /** fp32 to bf16, rounded to nearest even (NaN kept a NaN). */
        private static long toBf16(float x) {
            int bits = Float.floatToRawIntBits(x);
            if (Float.isNaN(x)) return 0x7fc0;
            return ((bits + 0x7fff + ((bits >>> 16) & 1)) >>> 16) & 0xffff;
        }

        /**
         * ldmatrix .x4 of 8×8 b16 matrices: lanes 8q…8q+7 give the addresses of matrix q's eight 16-byte rows;
         * lane l receives, from each matrix q into register q, 32-bit word l % 4 of row l / 4.
         */
        private void ldmatrix(int w, Instr in) {
            long[] rowAddress = new long[32];
            for (int l = 0; l < 32; l++) {
                rowAddress[l] = get(w + l, in.args[4]);
                note(w + l, rowAddress[l]);
                if ((rowAddress[l] & 15) != 0) throw stuck("ldmatrix row address not 16-byte aligned: " + in.text);
            }
            for (int l = 0; l < 32; l++) {
                int t = w + l;
                for (int q = 0; q < 4; q++) regs[t][in.args[q].reg] = bits(load("shared", rowAddress[8 * q + l / 4] + 4L * (l % 4), in.text));
                state[t] = RUN;
                pc[t]++;
            }
        }

        /** Remembers lane t's address for this run of its current shared load, when bank conflicts are counted. */
        private void note(int t, long address) {
            int at = pc[t], k = visits.computeIfAbsent(at, x -> new int[n])[t]++;
            sharedLoads.computeIfAbsent(List.of(t / 32, at, k), x -> new long[32])[t % 32] = address + 1;   // 0: lane idle
        }

        /** Adds this block's shared loads to the worst and least wavefronts per instruction. */
        void wavefronts(Map<String, int[]> out) {
            for (var entry : sharedLoads.entrySet()) {
                Instr in = e.code.get(entry.getKey().get(1));
                long[] at = entry.getValue();
                int bytes = in.op.equals(LDMATRIX) ? 16 : in.op.contains(".v4.") ? 16 : in.op.contains(".v2.") ? 8 : 4;
                // Lanes are served in groups whose requests fit 128 bytes: 32 lanes of 4 bytes, 16 of 8, 8 of 16.
                int group = 128 / bytes, passes = 0;
                for (int g0 = 0; g0 < 32; g0 += group) {
                    var words = new HashMap<Long, Set<Long>>();
                    for (int l = g0; l < g0 + group; l++) {
                        if (at[l] == 0) continue;
                        for (int b = 0; b < bytes; b += 4) {
                            long word = (at[l] - 1 + b) >> 2;
                            words.computeIfAbsent(word & 31, x -> new HashSet<>()).add(word);
                        }
                    }
                    int worst = 0;
                    for (Set<Long> w : words.values()) worst = Math.max(worst, w.size());
                    passes += worst;
                }
                int[] stat = out.computeIfAbsent(e.name + ": " + in.text, x -> new int[]{0, bytes / 4});
                stat[0] = Math.max(stat[0], passes);
            }
        }

        /** cp.async: size bytes from src into shared dst, of which the first srcSize (all, if not given) are copied and the rest zero. */
        private void copyAsync(int t, Operand[] a, String text) {
            long dst = get(t, a[0]), src = get(t, a[1]);
            int size = (int) get(t, a[2]), srcSize = a.length > 3 ? (int) get(t, a[3]) : size;
            if ((dst & (size - 1)) != 0 || (src & (size - 1)) != 0) throw new IllegalStateException(e.name + ": cp.async address not aligned to " + size + " at: " + text);
            float[] v = new float[size / 4];
            for (int q = 0; q < srcSize / 4; q++) v[q] = load("global", src + 4L * q, text);
            unreadByWgmma(dst, size, text);
            var groups = pending.get(t);
            groups.getLast().add(() -> { for (int q = 0; q < v.length; q++) store("shared", dst + 4L * q, v[q], text); });
        }

        private MBarrier mbarrier(long at, String text) {
            MBarrier b = mbarriers.get(at);
            if (b == null) throw new IllegalStateException(e.name + ": no mbarrier initialised at this shared address: " + text);
            return b;
        }

        /**
         * cp.async.bulk of size bytes (a multiple of 16, both addresses 16-byte aligned) from global src into shared
         * dst, completing size bytes of the mbarrier's expected transactions when it lands (see {@link #mbarriers}).
         */
        private void copyBulk(int t, Operand[] a, String text) {
            long dst = get(t, a[0]), src = get(t, a[1]);
            int size = (int) get(t, a[2]);
            if ((dst & 15) != 0 || (src & 15) != 0 || size % 16 != 0) throw new IllegalStateException(e.name + ": cp.async.bulk not 16-byte aligned at: " + text);
            MBarrier b = mbarrier(get(t, a[3]), text);
            float[] v = new float[size / 4];
            for (int q = 0; q < v.length; q++) v[q] = load("global", src + 4L * q, text);
            unreadByWgmma(dst, size, text);
            b.landing.add(() -> {
                unreadByWgmma(dst, size, text);
                for (int q = 0; q < v.length; q++) store("shared", dst + 4L * q, v[q], text);
                b.tx -= size;
            });
        }

        /** cp.async.wait_group n: all but the newest n committed groups of thread t land. */
        private void waitGroups(int t, int n) {
            var groups = pending.get(t);
            while (groups.size() - 1 > n) groups.removeFirst().forEach(Runnable::run);
        }

        private long get(int t, Operand o) {
            return switch (o.kind) {
                case REG -> regs[t][o.reg];
                case IMM -> o.imm;
                case SPECIAL -> switch (o.name) {
                    case "%tid.x" -> t;
                    case "%ctaid.x" -> bx;
                    case "%ctaid.y" -> by;
                    case "%ctaid.z" -> bz;
                    case "%nctaid.x" -> gridX;
                    case "%nctaid.y" -> gridY;
                    // The SM a block runs on: here, as if blocks went round 132 SMs in order.
                    case "%smid" -> (((long) bz * gridY + by) * gridX + bx) % 132;
                    case "%nctaid.z" -> gridZ;
                    case "%cluster_ctarank" -> cluster.indexOf(this);
                    case "%cluster_nctarank" -> cluster.size();
                    case "%globaltimer" -> CLOCK.incrementAndGet();
                    default -> throw new IllegalStateException("special register " + o.name);
                };
                case SYMBOL -> symbol(o.name);
                case ADDR -> regs[t][o.reg] + o.imm;
            };
        }

        private long symbol(String name) {
            for (SharedVar v : vars) if (v.name().equals(name)) return v.base();
            throw new IllegalStateException(e.name + ": unknown symbol " + name);
        }

        private static float f(long bits) { return Float.intBitsToFloat((int) bits); }
        private static long bits(float v) { return Float.floatToRawIntBits(v) & 0xffffffffL; }
        private static int i(long v) { return (int) v; }

        private float load(String space, long addr, String text) {
            if (space.equals("global")) {
                int b = (int) ((addr - GLOBAL) >>> 36);
                long idx = ((addr - base(b)) >> 2);
                if (addr < GLOBAL || b < 0 || b >= buffers.length || idx < 0 || idx >= buffers[b].length || (addr & 3) != 0)
                    throw new IllegalStateException(e.name + ": global access out of bounds (buffer " + b + " of " + (b >= 0 && b < buffers.length ? buffers[b].length : -1) + ", index " + idx + ", address " + addr + ") at: " + text);
                return buffers[b][(int) idx];
            }
            return shared[sharedIndex(addr, text)];
        }

        /** Writing shared bytes [addr, addr + size) that an in-flight wgmma may still read is a race: an error. */
        private void unreadByWgmma(long addr, int size, String text) {
            for (long[] r : wgmmaReads) {
                if (addr < r[1] && addr + size > r[0]) {
                    throw new IllegalStateException(e.name + ": shared memory that an in-flight wgmma reads is written before wgmma.wait_group retired it: " + text);
                }
            }
        }

        private void store(String space, long addr, float value, String text) {
            if (space.equals("global")) {
                int b = (int) ((addr - GLOBAL) >>> 36);
                long idx = ((addr - base(b)) >> 2);
                if (addr < GLOBAL || b < 0 || b >= buffers.length || idx < 0 || idx >= buffers[b].length)
                    throw new IllegalStateException(e.name + ": global store out of bounds (buffer " + b + ", index " + idx + ") at: " + text);
                buffers[b][(int) idx] = value;
                return;
            }
            unreadByWgmma(addr, 4, text);
            shared[sharedIndex(addr, text)] = value;
        }

        /** The float of the shared window at addr, which must lie inside one of the block's shared variables. */
        private int sharedIndex(long addr, String text) {
            long offset = addr - SHARED;
            for (SharedVar v : vars) {
                if (offset >= v.offset() && offset + 4 <= v.offset() + 4L * v.floats()) return (int) (offset >> 2);
            }
            throw new IllegalStateException(e.name + ": shared access out of bounds (byte " + offset + " of the window) at: " + text);
        }

        /** Runs thread t until it exits or must wait for others. */
        private void step(int t) {
            long[] r = regs[t];
            while (true) {
                Instr in = e.code.get(pc[t]);
                if (in.guard >= 0 && ((r[in.guard] != 0) == in.negate)) { pc[t]++; continue; }
                Operand[] a = in.args;
                String op = in.op;
                if (in.collective) {
                    state[t] = SHFL;
                    return;
                }
                for (Operand o : a) {
                    if ((o.kind == Kind.REG || o.kind == Kind.ADDR) && locked[t][o.reg] > 0) {
                        throw new IllegalStateException(e.name + ": a register of an in-flight wgmma (its A fragment or accumulators) accessed before"
                                + " wgmma.wait_group retired it, which the PTX ISA leaves undefined: " + in.text);
                    }
                }
                if (in.global && e.awaitsGrids && !awaited[t]) {
                    throw new IllegalStateException(e.name + ": global memory accessed before griddepcontrol.wait, while the grid before may still"
                            + " be writing it: " + in.text);
                }
                switch (op) {
                    case "wgmma.fence.sync.aligned", "fence.proxy.async.shared::cta" -> {}   // ordering the simulator has anyway
                    case "cvt.u32.u64" -> r[a[0].reg] = get(t, a[1]) & 0xffffffffL;
                    case "or.b32" -> r[a[0].reg] = (get(t, a[1]) | get(t, a[2])) & 0xffffffffL;
                    case "or.b64" -> r[a[0].reg] = get(t, a[1]) | get(t, a[2]);
                    // Blocks run one after another here, so the split-K counter's atomic needs no more than this.
                    case "atom.acq_rel.gpu.global.add.u32" -> {
                        long addr = get(t, a[1]);
                        r[a[0].reg] = Float.floatToRawIntBits(load("global", addr, in.text)) & 0xffffffffL;
                        store("global", addr, Float.intBitsToFloat((int) r[a[0].reg] + i(get(t, a[2]))), in.text);
                    }
                    // A timeline's stamps (PtxRenderer.TIMELINE): 64-bit, little-endian over two of a buffer's floats.
                    case "red.relaxed.gpu.global.min.u64", "red.relaxed.gpu.global.max.u64" -> {
                        long at = get(t, a[0]), now = get(t, a[1]);
                        if ((at & 7) != 0) throw new IllegalStateException(e.name + ": 64-bit reduction not 8-byte aligned at: " + in.text);
                        long was = bits(load("global", at, in.text)) | bits(load("global", at + 4, in.text)) << 32;
                        long kept = op.endsWith("min.u64") ? Long.compareUnsigned(now, was) < 0 ? now : was : Long.compareUnsigned(now, was) > 0 ? now : was;
                        store("global", at, f(kept), in.text);
                        store("global", at + 4, f(kept >>> 32), in.text);
                    }
                    case "st.global.u64" -> {
                        long at = get(t, a[0]), v = get(t, a[1]);
                        if ((at & 7) != 0) throw new IllegalStateException(e.name + ": 8-byte store not 8-byte aligned at: " + in.text);
                        store("global", at, f(v), in.text);
                        store("global", at + 4, f(v >>> 32), in.text);
                    }
                    case "st.global.v2.u32" -> {
                        long at = get(t, a[0]);
                        if ((at & 7) != 0) throw new IllegalStateException(e.name + ": 8-byte store not 8-byte aligned at: " + in.text);
                        for (int q = 1; q < a.length; q++) store("global", at + 4L * (q - 1), f(get(t, a[q])), in.text);
                    }
                    case "st.relaxed.gpu.global.u32" -> store("global", get(t, a[0]), Float.intBitsToFloat(i(get(t, a[1]))), in.text);
                    case "st.shared.u32" -> store("shared", get(t, a[0]), Float.intBitsToFloat(i(get(t, a[1]))), in.text);
                    case "ld.shared.u32" -> r[a[0].reg] = Float.floatToRawIntBits(load("shared", get(t, a[1]), in.text)) & 0xffffffffL;
                    case "ld.global.cg.f32" -> r[a[0].reg] = bits(load("global", get(t, a[1]), in.text));
                    case "ld.global.cg.v4.f32", "ld.global.v4.f32" -> {
                        long at = get(t, a[4]);
                        if ((at & 15) != 0) throw new IllegalStateException(e.name + ": 16-byte load not 16-byte aligned at: " + in.text);
                        for (int q = 0; q < 4; q++) r[a[q].reg] = bits(load("global", at + 4L * q, in.text));
                    }
                    case "st.global.v4.f32" -> {
                        long at = get(t, a[0]);
                        if ((at & 15) != 0) throw new IllegalStateException(e.name + ": 16-byte store not 16-byte aligned at: " + in.text);
                        for (int q = 1; q < a.length; q++) store("global", at + 4L * (q - 1), f(get(t, a[q])), in.text);
                    }
                    case "st.shared.v4.b32", "st.shared.v2.b32" -> {
                        for (int q = 1; q < a.length; q++) store("shared", get(t, a[0]) + 4L * (q - 1), f(get(t, a[q])), in.text);
                    }
                    case "ret" -> { state[t] = DONE; return; }
                    // One grid at a time here, so the grids before have always finished; the rule that matters is the order.
                    case "griddepcontrol.wait" -> awaited[t] = true;
                    case "griddepcontrol.launch_dependents" -> {
                        if (!awaited[t]) throw new IllegalStateException(e.name + ": the next grid let launch before this one waited for the last: " + in.text);
                    }
                    case "bar.sync" -> { state[t] = BAR; return; }
                    case "barrier.cluster.arrive.release" -> {
                        if (clusterArrived[t]) throw new IllegalStateException(e.name + ": arrived twice at a cluster barrier without waiting: " + in.text);
                        clusterArrived[t] = true;
                    }
                    case "barrier.cluster.wait.acquire" -> {
                        if (!clusterArrived[t]) throw new IllegalStateException(e.name + ": waits at a cluster barrier it never arrived at: " + in.text);
                        clusterArrived[t] = false;
                        state[t] = CLUSTER;
                        return;
                    }
                    case "mapa.shared::cluster.u64" -> {
                        long at = get(t, a[1]) - SHARED, rank = get(t, a[2]);
                        if (at < 0 || at >= 1 << 24 || rank < 0 || rank >= cluster.size()) {
                            throw new IllegalStateException(e.name + ": mapa of shared byte " + at + " to rank " + rank + " of a cluster of " + cluster.size() + ": " + in.text);
                        }
                        r[a[0].reg] = CLUSTER_SHARED + (rank << 24) + at;
                    }
                    case "ld.shared::cluster.f32" -> r[a[0].reg] = bits(loadCluster(get(t, a[1]), in.text));
                    case "ld.shared::cluster.v4.f32" -> {
                        long at = get(t, a[4]);
                        if ((at & 15) != 0) throw new IllegalStateException(e.name + ": 16-byte load not 16-byte aligned at: " + in.text);
                        for (int q = 0; q < 4; q++) r[a[q].reg] = bits(loadCluster(at + 4L * q, in.text));
                    }
                    case "trap" -> throw new IllegalStateException(e.name + " block (" + bx + ", " + by + ", " + bz + "): trap at: " + in.text);
                    case "shfl.sync.bfly.b32", MMA, MMA_BF16, LDMATRIX -> { state[t] = SHFL; return; }   // warp collectives
                    case "cvt.rn.bf16x2.f32" -> r[a[0].reg] = toBf16(f(get(t, a[1]))) << 16 | toBf16(f(get(t, a[2])));
                    case "cp.async.cg.shared.global", "cp.async.ca.shared.global" -> copyAsync(t, a, in.text);
                    case "cp.async.commit_group" -> pending.get(t).add(new ArrayList<>());
                    case "mbarrier.init.shared::cta.b64" -> {
                        long at = get(t, a[0]);
                        if ((at & 7) != 0) throw new IllegalStateException(e.name + ": mbarrier not 8-byte aligned at: " + in.text);
                        sharedIndex(at, in.text);
                        sharedIndex(at + 4, in.text);
                        mbarriers.put(at, new MBarrier((int) get(t, a[1])));
                    }
                    case "fence.mbarrier_init.release.cluster" -> {}   // the simulator's threads see the barriers at once
                    case "mbarrier.arrive.expect_tx.shared::cta.b64" -> {
                        MBarrier b = mbarrier(get(t, a[1]), in.text);
                        b.tx += get(t, a[2]);
                        b.arrived++;
                        if (b.arrived > b.count) throw new IllegalStateException(e.name + ": more arrivals on an mbarrier than its phase expects (a fill issued before the one before it was awaited) at: " + in.text);
                        r[a[0].reg] = b.completed;
                    }
                    case "cp.async.bulk.shared::cluster.global.mbarrier::complete_tx::bytes" -> copyBulk(t, a, in.text);
                    case "mbarrier.try_wait.parity.shared::cta.b64" -> {
                        MBarrier b = mbarrier(get(t, a[1]), in.text);
                        b.settle();
                        if ((b.completed & 1) == (get(t, a[2]) & 1)) {   // the phase of that parity is still the current one
                            state[t] = WAIT;
                            return;
                        }
                        r[a[0].reg] = 1;
                    }
                    case "cp.async.wait_group" -> waitGroups(t, (int) get(t, a[0]));
                    case "cvt.rna.tf32.f32" -> {
                        // TF32: the top 10 mantissa bits, rounded to nearest with ties away from zero.
                        long x = get(t, a[1]) & 0xffffffffL;
                        r[a[0].reg] = Float.isFinite(f(x)) ? (x + 0x1000) & 0xffffe000L : x;
                    }
                    case "bra" -> { pc[t] = in.target; continue; }
                    case "ld.param.u64" -> r[a[0].reg] = base(bufferOfParam[e.params.indexOf(a[1].name)]);
                    case "ld.param.u32" -> r[a[0].reg] = rows;
                    case "cvta.to.global.u64", "mov.u32", "mov.f32", "mov.u64" -> r[a[0].reg] = get(t, a[1]);
                    case "mad.lo.s32" -> r[a[0].reg] = i(get(t, a[1])) * i(get(t, a[2])) + i(get(t, a[3]));
                    case "mul.lo.s32", "mul.lo.u32" -> r[a[0].reg] = i(get(t, a[1])) * i(get(t, a[2]));
                    case "add.s32" -> r[a[0].reg] = i(get(t, a[1])) + i(get(t, a[2]));
                    case "sub.s32" -> r[a[0].reg] = i(get(t, a[1])) - i(get(t, a[2]));
                    case "div.s32" -> r[a[0].reg] = i(get(t, a[1])) / i(get(t, a[2]));
                    case "rem.s32" -> r[a[0].reg] = i(get(t, a[1])) % i(get(t, a[2]));
                    case "and.b32" -> r[a[0].reg] = i(get(t, a[1])) & i(get(t, a[2]));
                    case "xor.b32" -> r[a[0].reg] = i(get(t, a[1])) ^ i(get(t, a[2]));
                    case "shl.b32" -> r[a[0].reg] = i(get(t, a[1])) << i(get(t, a[2]));
                    case "min.s32" -> r[a[0].reg] = Math.min(i(get(t, a[1])), i(get(t, a[2])));
                    case "max.s32" -> r[a[0].reg] = Math.max(i(get(t, a[1])), i(get(t, a[2])));
                    case "cvt.u64.u32" -> r[a[0].reg] = get(t, a[1]) & 0xffffffffL;
                    case "shr.u32" -> r[a[0].reg] = (i(get(t, a[1])) >>> i(get(t, a[2])));
                    case "mul.wide.s32" -> r[a[0].reg] = (long) i(get(t, a[1])) * i(get(t, a[2]));
                    case "mul.wide.u32" -> r[a[0].reg] = (get(t, a[1]) & 0xffffffffL) * (get(t, a[2]) & 0xffffffffL);
                    case "add.s64" -> r[a[0].reg] = get(t, a[1]) + get(t, a[2]);
                    case "sub.s64" -> r[a[0].reg] = get(t, a[1]) - get(t, a[2]);
                    case "shr.u64" -> r[a[0].reg] = get(t, a[1]) >>> get(t, a[2]);
                    case "ld.global.f32" -> r[a[0].reg] = bits(load("global", get(t, a[1]), in.text));
                    case "ld.shared.f32", "ld.shared.b32" -> {
                        note(t, get(t, a[1]));
                        r[a[0].reg] = bits(load("shared", get(t, a[1]), in.text));
                    }
                    case "ld.shared.v4.f32" -> {
                        note(t, get(t, a[4]));
                        for (int q = 0; q < 4; q++) r[a[q].reg] = bits(load("shared", get(t, a[4]) + 4L * q, in.text));
                    }
                    case "st.global.f32" -> store("global", get(t, a[0]), f(get(t, a[1])), in.text);
                    case "st.shared.f32", "st.shared.b32" -> store("shared", get(t, a[0]), f(get(t, a[1])), in.text);
                    case "add.f32" -> r[a[0].reg] = bits(f(get(t, a[1])) + f(get(t, a[2])));
                    case "sub.f32" -> r[a[0].reg] = bits(f(get(t, a[1])) - f(get(t, a[2])));
                    case "mul.f32" -> r[a[0].reg] = bits(f(get(t, a[1])) * f(get(t, a[2])));
                    case "div.rn.f32", "div.full.f32" -> r[a[0].reg] = bits(f(get(t, a[1])) / f(get(t, a[2])));
                    case "max.f32" -> r[a[0].reg] = bits(Math.max(f(get(t, a[1])), f(get(t, a[2]))));
                    case "min.f32" -> r[a[0].reg] = bits(Math.min(f(get(t, a[1])), f(get(t, a[2]))));
                    case "fma.rn.f32" -> r[a[0].reg] = bits(Math.fma(f(get(t, a[1])), f(get(t, a[2])), f(get(t, a[3]))));
                    case "neg.f32" -> r[a[0].reg] = bits(-f(get(t, a[1])));
                    case "sqrt.rn.f32" -> r[a[0].reg] = bits((float) Math.sqrt(f(get(t, a[1]))));
                    case "ex2.approx.ftz.f32" -> r[a[0].reg] = bits((float) Math.pow(2, f(get(t, a[1]))));
                    case "lg2.approx.f32" -> r[a[0].reg] = bits((float) (Math.log(f(get(t, a[1]))) / Math.log(2)));
                    case "sin.approx.f32" -> r[a[0].reg] = bits((float) Math.sin(f(get(t, a[1]))));
                    case "cos.approx.f32" -> r[a[0].reg] = bits((float) Math.cos(f(get(t, a[1]))));
                    case "cvt.rni.f32.f32" -> r[a[0].reg] = bits((float) Math.rint(f(get(t, a[1]))));
                    case "cvt.rn.f32.s32" -> r[a[0].reg] = bits((float) i(get(t, a[1])));
                    case "cvt.rn.f32.u32" -> r[a[0].reg] = bits((float) (get(t, a[1]) & 0xffffffffL));
                    case "cvt.rzi.s32.f32" -> r[a[0].reg] = (int) f(get(t, a[1]));
                    case "selp.f32", "selp.s32", "selp.b32" -> r[a[0].reg] = get(t, a[3]) != 0 ? get(t, a[1]) : get(t, a[2]);
                    default -> {
                        if (!op.startsWith("setp.")) throw new IllegalStateException(e.name + ": the simulator does not know: " + in.text);
                        r[a[0].reg] = setp(t, op, a) ? 1 : 0;
                    }
                }
                pc[t]++;
            }
        }

        /** setp's opcodes split at their dots, once each: splitting them at every execution was a quarter of the simulator's time. */
        private static final Map<String, String[]> SETP_PARTS = new java.util.concurrent.ConcurrentHashMap<>();

        /** setp.CMP[.and|.or].TYPE p, a, b[, c] */
        private boolean setp(int t, String op, Operand[] a) {
            String[] parts = SETP_PARTS.computeIfAbsent(op, o -> o.split("\\."));
            String cmp = parts[1], combine = parts.length == 4 ? parts[2] : null, type = parts[parts.length - 1];
            long x = get(t, a[1]), y = get(t, a[2]);
            int c = switch (type) {
                case "s32" -> Integer.compare(i(x), i(y));
                case "u32" -> Integer.compareUnsigned(i(x), i(y));
                case "f32" -> f(x) < f(y) ? -1 : f(x) > f(y) ? 1 : 0;
                default -> throw new IllegalStateException("setp type " + type);
            };
            boolean v = switch (cmp) {
                case "lt" -> c < 0;
                case "le" -> c <= 0;
                case "gt" -> c > 0;
                case "ge" -> c >= 0;
                case "eq" -> c == 0;
                case "ne" -> c != 0;
                default -> throw new IllegalStateException("setp comparison " + cmp);
            };
            if (combine == null) return v;
            boolean other = get(t, a[3]) != 0;
            return combine.equals("and") ? v && other : v || other;
        }
    }
}
