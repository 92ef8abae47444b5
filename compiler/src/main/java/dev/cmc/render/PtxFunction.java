package dev.cmc.render;

import dev.cmc.ir.Op;
import dev.cmc.ir.Shape;
import dev.cmc.kernel.*;
import dev.cmc.kernel.Expr.Let;

import java.util.HashMap;
import java.util.List;
import java.util.Map;

import static dev.cmc.render.PtxRenderer.*;

/**
 * One PTX kernel being written: its entry and parameters, virtual registers, labels and instructions, and the
 * kernel IR's expressions and epilogues as PTX. The kernels themselves are written by its subclasses, one a
 * family: {@link PtxBandwidthKernels}, {@link PtxGemm}, {@link PtxWgmmaGemm} and {@link PtxMlp}.
 */
abstract class PtxFunction {
    final Program program;
    final int index;
    final Kernel kernel;
    final StringBuilder body = new StringBuilder();
    /** The kernel's .shared declarations, written before its registers. */
    final StringBuilder shared = new StringBuilder();
    private final Map<String, String> base = new HashMap<>();
    private int f, r, rd, p, labels;
    /** The runtime row count (the batch), loaded from the rows parameter. */
    String rowsReg;
    /**
     * Arrays whose value at the element an expression is evaluated at a fused kernel holds on chip: a Load of one
     * is this register (or immediate) instead of a global load.
     */
    final Map<String, String> held = new HashMap<>();
    /**
     * Where not null, loads of row vectors ([1, n] buffers) already made, by array, offset and column register: a
     * kernel evaluating an epilogue at several rows of one column sets it, so that each is loaded once.
     */
    Map<String, String> rowVectors;
    /**
     * Where not null, global loads already made, by what they load and where ({@link #preload}): an expression
     * evaluated later at the same element takes the register instead of loading again.
     */
    Map<String, String> loaded;
    /**
     * Where not null, the parts that an activation and its derivative at one value share (SiLU's and dSiLU's
     * 1 + e^-x, GELU's and dGELU's tanh), by part and register: on while one element's lets are evaluated, whose
     * code runs straight through, so that a training step's up-projection, which stores both, computes each once.
     */
    private Map<String, String> activationParts;

    PtxFunction(Program program, int index) {
        this.program = program;
        this.index = index;
        this.kernel = program.kernels().get(index);
    }

    /** The kernel's body, after its parameters are loaded; it ends at label DONE. */
    abstract void body();

    /** Threads per block of this kernel, as {@link PtxRenderer#launch} launches it. */
    abstract int threads();

    /** The most registers ptxas may give a thread (.maxnreg), or 0 to leave it to ptxas. */
    int maxRegisters() { return 0; }

    /**
     * The kernel's PTX. With awaitsGrids (sm_90), it is ready for programmatic dependent launch: once its
     * parameters are loaded, before any access to global memory, it waits until the kernels it follows in its
     * stream have finished and their writes are visible (griddepcontrol.wait, which returns at once where
     * nothing launched it early), then lets the next kernel launch (griddepcontrol.launch_dependents). That kernel's
     * blocks then wait in their own griddepcontrol.wait until this grid ends: memory is ordered exactly as
     * without the overlap, and what overlaps is the next launch's setup with this kernel's run. The next
     * launch can only start once every block of this grid has started, so its waiting blocks never keep
     * this grid's from an SM.
     */
    String render(boolean awaitsGrids) {
        return render(awaitsGrids, false);
    }

    /**
     * The same, and with timeline, a kernel that records when it ran ({@link PtxRenderer#TIMELINE}): it takes the
     * timeline's address as one more parameter, before rows, and thread 0 of each block writes the global timer there
     * after its wait for the grids before (the least over blocks: when the kernel could start) and at its end (the
     * greatest: when its last block ended), by reductions that return nothing.
     */
    String render(boolean awaitsGrids, boolean timeline) {
        List<String> args = Indexing.arguments(kernel);
        if (splitsK(kernel)) {
            args = new java.util.ArrayList<>(args);
            args.add(WORKSPACE);
        }
        var head = new StringBuilder("// " + kernel.name() + "\n.visible .entry " + kernelName(program, index) + "(\n");
        for (String a : args) head.append("    .param .u64 ").append(param(a)).append(",\n");
        if (timeline) head.append("    .param .u64 ").append(TIMELINE).append(",\n");
        head.append("    .param .u32 rows\n)\n.maxntid ").append(threads()).append(", 1, 1\n");
        if (maxRegisters() > 0) head.append(".maxnreg ").append(maxRegisters()).append('\n');
        head.append("{\n");
        for (String a : args) {
            String raw = rd(), g = rd();
            op("ld.param.u64 " + raw + ", [" + param(a) + "];");
            op("cvta.to.global.u64 " + g + ", " + raw + ";");
            base.put(a, g);
        }
        rowsReg = r();
        op("ld.param.u32 " + rowsReg + ", [rows];");
        if (awaitsGrids) {
            comment("programmatic dependent launch: the kernels before this one finished, then the next one may launch");
            op("griddepcontrol.wait;");
            op("griddepcontrol.launch_dependents;");
        }
        if (timeline) stamp(true);
        body();
        label("DONE");
        if (timeline) stamp(false);
        op("ret;");
        head.append(shared);
        head.append("    .reg .pred %p<").append(p + 1).append(">;\n");
        head.append("    .reg .f32 %f<").append(f + 1).append(">;\n");
        head.append("    .reg .b32 %r<").append(r + 1).append(">;\n");
        head.append("    .reg .b64 %rd<").append(rd + 1).append(">;\n\n");
        return head.append(body).append("}\n").toString();
    }

    /**
     * Thread 0 of the block stamps the global timer (ns) into the timeline ({@link PtxRenderer#TIMELINE}): at the
     * start, the kernel's least start by red.min and this block's record's start; at the end, the kernel's
     * greatest end by red.max and the record's end (its low 32 bits) and SM. Its registers are new, loaded here, so
     * that the stamp at the end lengthens no live range in the body.
     */
    private void stamp(boolean start) {
        int n = program.kernels().size();
        comment(start ? "timeline: when this block may start (the kernel's least start kept), into its record"
                : "timeline: when this block ends (the kernel's greatest end kept), and on which SM, into its record");
        String skip = newLabel("stamped"), raw = rd(), at = rd(), now = rd();
        op("@" + pred("ne.s32", special("%tid.x"), "0") + " bra " + skip + ";");
        op("ld.param.u64 " + raw + ", [" + TIMELINE + "];");
        op("cvta.to.global.u64 " + at + ", " + raw + ";");
        op("mov.u64 " + now + ", %globaltimer;");
        op("red.relaxed.gpu.global." + (start ? "min" : "max") + ".u64 [" + at + "+" + 8L * (start ? index : n + index) + "], " + now + ";");
        String block = mad(mad(special("%ctaid.z"), special("%nctaid.y"), special("%ctaid.y")), special("%nctaid.x"), special("%ctaid.x"));
        op("@" + pred("ge.u32", block, Integer.toString(TIMELINE_BLOCKS)) + " bra " + skip + ";");   // past the kernel's records
        String record = rd();
        op("mul.wide.u32 " + record + ", " + block + ", 16;");
        op("add.s64 " + record + ", " + record + ", " + at + ";");
        long offset = 16L * n + 16L * TIMELINE_BLOCKS * index;
        if (start) {
            op("st.global.u64 [" + record + "+" + offset + "], " + now + ";");
        } else {
            String low = r(), sm = special("%smid");
            op("cvt.u32.u64 " + low + ", " + now + ";");
            op("st.global.v2.u32 [" + record + "+" + (offset + 8) + "], {" + low + ", " + sm + "};");
        }
        label(skip);
    }

    String f() { return "%f" + (++f); }
    String r() { return "%r" + (++r); }
    String rd() { return "%rd" + (++rd); }
    String p() { return "%p" + (++p); }
    String newLabel(String what) { return "L" + (++labels) + "_" + what; }
    void op(String s) { body.append("    ").append(s).append('\n'); }
    void label(String l) { body.append(l).append(":\n"); }
    void comment(String s) { body.append("    // ").append(s).append('\n'); }

    private static String param(String array) { return "p_" + Indexing.identifier(array); }

    /** A float immediate, exactly: PTX's 0fXXXXXXXX. */
    static String imm(double v) { return String.format("0f%08X", Float.floatToRawIntBits((float) v)); }

    String constF(double v) { return unaryOp("mov.f32", imm(v)); }

    String constI(int v) { return unaryOp("mov.u32", Integer.toString(v)); }

    /** x - k: an immediate for an immediate, else a new register. */
    String less(String x, int k) {
        return x.matches("-?\\d+") ? Integer.toString(Integer.parseInt(x) - k) : bin("add.s32", x, Integer.toString(-k));
    }

    String special(String name) { return unaryOp("mov.u32", name); }

    /** A new register for a value of this PTX type: .f32, a 64-bit one, else a 32-bit one (.b32 holds tf32 and bf16x2 too). */
    private String register(String type) {
        return type.equals("f32") ? f() : type.endsWith("64") ? rd() : r();
    }

    /**
     * A one-operand instruction (mov, cvt, neg, sqrt, the SFU's approximations) into a new register of its
     * destination type, the opcode's first type: cvt.rzi.s32.f32 writes an integer register.
     */
    String unaryOp(String opcode, String a) {
        String[] parts = opcode.split("\\.");
        String type = java.util.Arrays.stream(parts, 1, parts.length).filter(t -> t.matches(".*\\d.*")).findFirst()
                .orElseThrow(() -> new IllegalArgumentException("no type in " + opcode));
        String x = register(type);
        op(opcode + " " + x + ", " + a + ";");
        return x;
    }

    /** A two-operand instruction into a new register of the opcode's type (.f32, 64-bit, else 32-bit). */
    String bin(String opcode, String a, String b) {
        String x = register(opcode.substring(opcode.lastIndexOf('.') + 1));
        op(opcode + " " + x + ", " + a + ", " + b + ";");
        return x;
    }

    String fma(String a, String b, String c) {
        String x = f();
        op("fma.rn.f32 " + x + ", " + a + ", " + b + ", " + c + ";");
        return x;
    }

    /** a*b + c on 32-bit integers. */
    String mad(String a, String b, String c) {
        String x = r();
        op("mad.lo.s32 " + x + ", " + a + ", " + b + ", " + c + ";");
        return x;
    }

    String pred(String cmp, String a, String b) {
        String x = p();
        op("setp." + cmp + " " + x + ", " + a + ", " + b + ";");
        return x;
    }

    /** A comparison combined with another predicate: cmp such as "lt.and.s32" for (a &lt; b) ∧ c. */
    String pred(String cmp, String a, String b, String c) {
        String x = p();
        op("setp." + cmp + " " + x + ", " + a + ", " + b + ", " + c + ";");
        return x;
    }

    /** The global address of element idx (a 32-bit register or immediate) of an array. */
    String address(String array, String idx) {
        String wide = rd(), a = rd();
        op("mul.wide.s32 " + wide + ", " + idx + ", 4;");
        op("add.s64 " + a + ", " + base.get(array) + ", " + wide + ";");
        return a;
    }

    String loadGlobal(String array, String idx) {
        String x = f();
        op("ld.global.f32 " + x + ", [" + address(array, idx) + "];");
        return x;
    }

    void storeGlobal(String array, String idx, String value) {
        op("st.global.f32 [" + address(array, idx) + "], " + value + ";");
    }

    /** width consecutive floats of an array from element idx: one ld.global.v4 for 4 (16-byte aligned), else one ld.global. */
    String[] loadGlobal(String array, String idx, int width) {
        if (width == 1) return new String[]{loadGlobal(array, idx)};
        String[] x = {f(), f(), f(), f()};
        op("ld.global.v4.f32 {" + String.join(", ", x) + "}, [" + address(array, idx) + "];");
        return x;
    }

    /** Consecutive floats from element idx: one st.global.v4 for 4 (16-byte aligned), else one st.global. */
    void storeGlobal(String array, String idx, String[] values) {
        if (values.length == 1) storeGlobal(array, idx, values[0]);
        else op("st.global.v4.f32 [" + address(array, idx) + "], {" + String.join(", ", values) + "};");
    }

    /**
     * Whether 4 consecutive domain columns from a multiple of 4 lie in b as 4 consecutive floats at a 16-byte
     * boundary: b takes the column as it is (no broadcast of its one column) and its rows and offset are whole
     * multiples of 4 floats (arrays start 16-byte aligned).
     */
    static boolean fourAtOnce(Buf b, Shape domain) {
        boolean colBcast = b.shape().cols() == 1 && domain.cols() != 1;
        return !colBcast && domain.cols() % 4 == 0 && b.shape().cols() % 4 == 0 && b.offset() % 4 == 0;
    }

    /** The domain's row count: the runtime batch or a constant. */
    String domainRows(Shape d) {
        return d.batched() ? rowsReg : constI(d.rows());
    }

    /** Index of domain element (row, col) in b, broadcasting b's size-1 dimensions (as {@link Indexing#index}). */
    String index(Buf b, Shape d, String row, String col) {
        boolean rowBcast = b.shape().rows() == 1 && d.rows() != 1;
        boolean colBcast = b.shape().cols() == 1 && d.cols() != 1;
        String idx = constI(b.offset());
        if (!rowBcast) idx = mad(row, Integer.toString(b.shape().cols()), idx);
        if (!colBcast) idx = bin("add.s32", idx, col);
        return idx;
    }

    record Ctx(Shape domain, String row, String col, String acc, Map<Integer, String> vars) {}

    void lets(List<Let> lets, Ctx c) {
        lets(lets, c, null, null);
    }

    /** The epilogue, its stores to array {@code onChip} handed to {@code keep} instead (a fused MLP's intermediates). */
    void lets(List<Let> lets, Ctx c, String onChip, java.util.function.Consumer<String> keep) {
        oneElement(() -> {
            for (Let l : lets) {
                String v = expr(l.value(), c);
                c.vars().put(l.id(), v);
                if (l.store() == null) continue;
                if (l.store().array().equals(onChip)) {
                    keep.accept(v);
                    activationParts.clear();   // keeping may write the accumulator's register
                } else {
                    storeGlobal(l.store().array(), index(l.store(), c.domain(), c.row(), c.col()), v);
                }
            }
            return null;
        });
    }

    /** Each Let's value, in order, into c's vars, storing nothing: the register of each Let that stores, by Let. */
    java.util.Map<Let, String> valuesOf(List<Let> lets, Ctx c) {
        return oneElement(() -> {
            var stored = new java.util.LinkedHashMap<Let, String>();
            for (Let l : lets) {
                String v = expr(l.value(), c);
                c.vars().put(l.id(), v);
                if (l.store() != null) stored.put(l, v);
            }
            return stored;
        });
    }

    /** What body gives, with {@link #activationParts} on while it evaluates one element's lets. */
    private <T> T oneElement(java.util.function.Supplier<T> body) {
        var outer = activationParts;
        activationParts = new HashMap<>();
        try {
            return body.get();
        } finally {
            activationParts = outer;
        }
    }

    /** The stores {@link #valuesOf} left, in the Lets' order. */
    void storeAll(java.util.Map<Let, String> stored, Ctx c) {
        stored.forEach((l, v) -> storeGlobal(l.store().array(), index(l.store(), c.domain(), c.row(), c.col()), v));
    }

    /**
     * The stores {@link #valuesOf} left for 4 consecutive columns of one row from a multiple of 4 (ctxs), a let at a
     * time: one 16-byte store where the output takes them so ({@link #fourAtOnce}), else member by member. A warp's
     * scalar stores 4 floats apart would each touch four times the sectors.
     */
    void storeFourAtOnce(List<java.util.Map<Let, String>> values, List<Ctx> ctxs) {
        Ctx first = ctxs.getFirst();
        for (Let l : values.getFirst().keySet()) {
            Buf b = l.store();
            if (fourAtOnce(b, first.domain())) {
                storeGlobal(b.array(), index(b, first.domain(), first.row(), first.col()), values.stream().map(v -> v.get(l)).toArray(String[]::new));
            } else {
                for (int i = 0; i < ctxs.size(); i++) storeGlobal(b.array(), index(b, first.domain(), ctxs.get(i).row(), ctxs.get(i).col()), values.get(i).get(l));
            }
        }
    }

    /**
     * For the same 4 columns, each global load of the lets that {@link #fourAtOnce} allows as one 16-byte load,
     * into {@link #loaded} (which must be on) for each column's context, where {@link #preload} and the lets then
     * find it. Loads of arrays the lets store are left to come after the stores, as preload leaves them.
     */
    void preloadFourAtOnce(List<Let> lets, List<Ctx> ctxs) {
        Ctx first = ctxs.getFirst();
        var stored = storedArrays(lets);
        var loads = new java.util.ArrayList<Expr>();
        for (Let l : lets) loadsOf(l.value(), loads);
        for (Expr e : loads) {
            if (!(e instanceof Expr.Load load)) continue;
            Buf b = load.buf();
            boolean rowVector = rowVectors != null && !b.shape().batched() && b.shape().rows() == 1;
            if (stored.contains(b.array()) || held.containsKey(b.array()) || rowVector || !fourAtOnce(b, first.domain())
                    || loaded.containsKey(where(load, first))) continue;
            String[] x = loadGlobal(b.array(), index(b, first.domain(), first.row(), first.col()), 4);
            for (int q = 0; q < 4; q++) loaded.put(where(load, ctxs.get(q)), x[q]);
        }
    }

    /** The global loads that the lets make at each element, as {@link #preload} issues them early (a gather two). */
    static int earlyLoads(List<Let> lets) {
        var stored = storedArrays(lets);
        var loads = new java.util.ArrayList<Expr>();
        for (Let l : lets) loadsOf(l.value(), loads);
        int n = 0;
        for (Expr e : loads) {
            n += switch (e) {
                case Expr.Load l -> stored.contains(l.buf().array()) ? 0 : 1;
                case Expr.Gather g -> stored.contains(g.table().array()) || stored.contains(g.index().array()) ? 0 : 2;   // its index, then its value
                default -> 0;
            };
        }
        return n;
    }

    /** The global reads in an expression, Loads and Gathers, in evaluation order. */
    private static void loadsOf(Expr e, List<Expr> out) {
        switch (e) {
            case Expr.Load l -> out.add(l);
            case Expr.Gather g -> out.add(g);
            case Expr.Unary u -> loadsOf(u.a(), out);
            case Expr.Binary b -> {
                loadsOf(b.a(), out);
                loadsOf(b.b(), out);
            }
            case Expr.Noise n -> {
                loadsOf(n.seed(), out);
                loadsOf(n.firstRow(), out);
            }
            case Expr.Const _, Expr.Acc _, Expr.Var _, Expr.Rows _ -> {}
        }
    }

    /**
     * The stores a group's {@link #valuesOf} left, member by member, each at its own context: member i skipped
     * where skipWhen(i), asked as its stores come up, names a predicate that holds ("!%p" where one does not), or
     * stored unguarded where it gives null.
     */
    void storeEach(List<java.util.Map<Let, String>> values, List<Ctx> ctxs, String label, java.util.function.IntFunction<String> skipWhen) {
        for (int i = 0; i < values.size(); i++) {
            String skip = newLabel(label), when = skipWhen.apply(i);
            if (when != null) op("@" + when + " bra " + skip + ";");
            storeAll(values.get(i), ctxs.get(i));
            if (when != null) label(skip);
        }
    }

    /** A Load's or Gather's global load(s) at a context's element. */
    private String fetch(Expr e, Ctx c) {
        return switch (e) {
            case Expr.Load l -> loadGlobal(l.buf().array(), index(l.buf(), c.domain(), c.row(), c.col()));
            case Expr.Gather g -> {
                String row = toInt(loadGlobal(g.index().array(), index(g.index(), c.domain(), c.row(), c.col())));
                yield loadGlobal(g.table().array(), index(g.table(), c.domain(), row, c.col()));
            }
            default -> throw new IllegalArgumentException("not a load: " + e);
        };
    }

    /** What a Load or Gather reads at a context's element: the key {@link #loaded} keeps it by. */
    private static String where(Expr e, Ctx c) {
        return e + "@" + c.row() + "," + c.col();
    }

    /**
     * Issues every global load the lets will make at this element, none of an array they store (a load after a
     * store must see it), into {@link #loaded}, which must be on: evaluated there afterwards, the lets take these
     * registers. So the loads go out before whatever the caller emits next waits on a load of its own.
     */
    void preload(List<Let> lets, Ctx c) {
        var stored = storedArrays(lets);
        for (Let l : lets) preload(l.value(), c, stored);
    }

    /** The arrays the lets store: a load of one must come after the stores, so none is issued early. */
    private static java.util.Set<String> storedArrays(List<Let> lets) {
        var stored = new java.util.HashSet<String>();
        for (Let l : lets) if (l.store() != null) stored.add(l.store().array());
        return stored;
    }

    private void preload(Expr e, Ctx c, java.util.Set<String> stored) {
        switch (e) {
            case Expr.Load l -> {
                if (!stored.contains(l.buf().array())) expr(l, c);
            }
            case Expr.Gather g -> {
                if (!stored.contains(g.table().array()) && !stored.contains(g.index().array())) expr(g, c);
            }
            case Expr.Unary u -> preload(u.a(), c, stored);
            case Expr.Binary b -> {
                preload(b.a(), c, stored);
                preload(b.b(), c, stored);
            }
            case Expr.Noise n -> {
                preload(n.seed(), c, stored);
                preload(n.firstRow(), c, stored);
            }
            case Expr.Const _, Expr.Acc _, Expr.Var _, Expr.Rows _ -> {}
        }
    }

    String expr(Expr e, Ctx c) {
        return switch (e) {
            case Expr.Load l when held.containsKey(l.buf().array()) -> held.get(l.buf().array());
            case Expr.Load l when rowVectors != null && !l.buf().shape().batched() && l.buf().shape().rows() == 1 ->
                    rowVectors.computeIfAbsent(l.buf().array() + "+" + l.buf().offset() + "@" + c.col(), key -> fetch(l, c));
            case Expr.Load _, Expr.Gather _ -> loaded == null ? fetch(e, c) : loaded.computeIfAbsent(where(e, c), key -> fetch(e, c));
            case Expr.Const k -> constF(k.value());
            case Expr.Acc a -> c.acc();
            case Expr.Var v -> c.vars().get(v.id());
            case Expr.Rows rows -> unaryOp("cvt.rn.f32.s32", rowsReg);
            case Expr.Unary u -> unary(u.op(), expr(u.a(), c));
            case Expr.Noise n -> noise(toInt(expr(n.seed(), c)), toInt(expr(n.firstRow(), c)), c.row(), c.col(), n.cols());
            case Expr.Binary b -> {
                String x = expr(b.a(), c), y = expr(b.b(), c);
                yield switch (b.op()) {
                    case ADD -> bin("add.f32", x, y);
                    case SUB -> bin("sub.f32", x, y);
                    case MUL -> bin("mul.f32", x, y);
                    case DIV -> bin("div.rn.f32", x, y);
                    default -> throw new IllegalStateException(b.op().toString());
                };
            }
        };
    }

    private String unary(Op o, String x) {
        return switch (o) {
            case NEG -> neg(x);
            case SQRT -> sqrt(x);
            case SQUARE -> bin("mul.f32", x, x);
            case RELU -> bin("max.f32", x, imm(0));
            case EXP -> exp(x);
            case LOG -> bin("mul.f32", unaryOp("lg2.approx.f32", x), imm(Math.log(2)));
            case SIN -> sinCos(x, "sin");
            case COS -> sinCos(x, "cos");
            case SILU -> quotient(x, sigmoidDenominator(x));
            case DSILU -> {
                String s = quotient(imm(1), sigmoidDenominator(x));
                yield bin("mul.f32", s, fma(x, bin("sub.f32", imm(1), s), imm(1)));
            }
            case GELU -> {
                String t = geluTanh(x);
                yield bin("mul.f32", bin("mul.f32", x, imm(0.5)), bin("add.f32", t, imm(1)));
            }
            case DGELU -> {
                String t = geluTanh(x);
                String inner = bin("mul.f32", fma(bin("mul.f32", x, x), imm(3 * 0.044715), imm(1)), imm(Math.sqrt(2 / Math.PI)));
                String left = bin("mul.f32", bin("add.f32", t, imm(1)), imm(0.5));
                String right = bin("mul.f32", bin("mul.f32", bin("mul.f32", x, imm(0.5)), bin("sub.f32", imm(1), bin("mul.f32", t, t))), inner);
                yield bin("add.f32", left, right);
            }
            case STEP -> {
                String q = pred("gt.f32", x, imm(0)), y = f();
                op("selp.f32 " + y + ", " + imm(1) + ", " + imm(0) + ", " + q + ";");
                yield y;
            }
            default -> throw new IllegalStateException(o + " is not unary");
        };
    }

    private String neg(String x) { return unaryOp("neg.f32", x); }

    /** 1 + e^-x, for SiLU (x / it) and its derivative (1 / it is the sigmoid): once per element where both are taken. */
    private String sigmoidDenominator(String x) {
        return activationPart("1+e^-x " + x, () -> bin("add.f32", exp(neg(x)), imm(1)));
    }

    /** tanh(√(2/π)·(x + 0.044715·x³)), for GELU and its derivative alike. */
    private String geluTanh(String x) {
        return activationPart("gelu tanh " + x, () -> tanh(geluInner(x)));
    }

    private String activationPart(String key, java.util.function.Supplier<String> compute) {
        if (activationParts == null) return compute.get();
        String held = activationParts.get(key);
        if (held == null) activationParts.put(key, held = compute.get());
        return held;
    }

    /** e^x = 2^(x·log2 e) on the SFU; inputs below −87 flush to 0, as in the other backends. */
    private String exp(String x) {
        return unaryOp("ex2.approx.ftz.f32", bin("mul.f32", bin("max.f32", x, imm(-87)), imm(1 / Math.log(2))));
    }

    /** tanh(u) = 1 − 2/(e^{2u} + 1), exact in the tails (tanh.approx is only good to 2^-11). */
    private String tanh(String u) {
        String e = exp(bin("mul.f32", bin("min.f32", u, imm(40)), imm(2)));
        return bin("sub.f32", imm(1), quotient(imm(2), bin("add.f32", e, imm(1))));
    }

    /**
     * a/b inside an activation, whose e^x is the SFU's approximation already: div.full (2 ulp, a reciprocal and a
     * few multiplies, no slow path), not div.rn (correctly rounded, a subroutine and a branch). The fused MLP
     * blocks' epilogues divide once per hidden value, on the issue slots that keep their tensor cores fed.
     */
    private String quotient(String a, String b) {
        return bin("div.full.f32", a, b);
    }

    private String geluInner(String x) {
        String cube = bin("mul.f32", bin("mul.f32", x, x), x);
        return bin("mul.f32", fma(cube, imm(0.044715), x), imm(Math.sqrt(2 / Math.PI)));
    }

    /** sin/cos.approx are accurate on [−π, π]: reduce by 2π in two parts first. */
    private String sinCos(String x, String which) {
        String k = f();
        op("cvt.rni.f32.f32 " + k + ", " + bin("mul.f32", x, imm(1 / (2 * Math.PI))) + ";");
        String y = fma(k, imm(-6.28125), x);
        return unaryOp(which + ".approx.f32", fma(k, imm(-0.0019353071795864769), y));
    }

    /** Element (firstRow + row)·cols + col of the standard normal draw with this seed ({@link Noise}). */
    private String noise(String seed, String firstRow, String row, String col, int cols) {
        String i = mad(bin("add.s32", firstRow, row), Integer.toString(cols), col);
        String key = mix(seed), at = bin("add.s32", key, bin("shl.b32", i, "1"));
        String u1 = uniform(bin("add.s32", bin("shr.u32", mix(at), "8"), "1"));
        String u2 = uniform(bin("shr.u32", mix(bin("add.s32", at, "1")), "8"));
        String radius = sqrt(bin("max.f32", bin("mul.f32", unary(Op.LOG, u1), imm(-2)), imm(0)));
        String cos = unaryOp("cos.approx.f32", bin("mul.f32", fma(u2, imm(2), imm(-1)), imm(Math.PI)));
        return bin("mul.f32", radius, cos);
    }

    /** Wellons' lowbias32 hash on a 32-bit register. */
    private String mix(String x) {
        x = bin("xor.b32", x, bin("shr.u32", x, "16"));
        x = bin("mul.lo.u32", x, Integer.toUnsignedString(Noise.MIX_1));
        x = bin("xor.b32", x, bin("shr.u32", x, "15"));
        x = bin("mul.lo.u32", x, Integer.toUnsignedString(Noise.MIX_2));
        return bin("xor.b32", x, bin("shr.u32", x, "16"));
    }

    /** An integer below 2²⁴ + 1, times 2⁻²⁴, as a float (exactly). */
    private String uniform(String bits) {
        return bin("mul.f32", unaryOp("cvt.rn.f32.u32", bits), imm(0x1p-24));
    }

    /** if (pred) goto DONE. */
    void exitIf(String pred) {
        op("@" + pred + " bra DONE;");
    }

    /** for (col = start; col < end; col += step) body(col), as a PTX loop. */
    void loop(String start, String end, int step, java.util.function.Consumer<String> bodyOf) {
        String col = r(), top = newLabel("loop"), exit = newLabel("end");
        op("mov.u32 " + col + ", " + start + ";");
        label(top);
        op("@" + pred("ge.s32", col, end) + " bra " + exit + ";");
        bodyOf.accept(col);
        op("add.s32 " + col + ", " + col + ", " + step + ";");
        op("bra " + top + ";");
        label(exit);
    }

    /** A running float sum in a register that loops update in place. */
    String accumulator() {
        return constF(0);
    }

    void addInto(String sum, String v) {
        op("add.f32 " + sum + ", " + sum + ", " + v + ";");
    }

    /** Sum across the warp by butterfly shuffles: every lane ends with the total. */
    String warpSum(String v) {
        return laneSum(v, 32);
    }

    /** Sum across each aligned group of `lanes` lanes (a power of two up to 32) by butterfly shuffles. */
    String laneSum(String v, int lanes) {
        String s = v;
        for (int offset = lanes / 2; offset >= 1; offset /= 2) {
            String t = f();
            op("shfl.sync.bfly.b32 " + t + ", " + s + ", " + offset + ", 31, 0xffffffff;");
            s = bin("add.f32", s, t);
        }
        return s;
    }

    /** The mean over a row of n columns, from each lane's partial sum. */
    String warpMean(String partial, int n) {
        return bin("div.rn.f32", warpSum(partial), imm(n));
    }

    /** 1/√(variance + ε): a LayerNorm's reciprocal standard deviation. */
    String rstd(String variance) {
        return bin("div.rn.f32", imm(1), sqrt(bin("add.f32", variance, imm(Op.NORM_EPS))));
    }

    String sqrt(String x) { return unaryOp("sqrt.rn.f32", x); }

    /** A row number held as a float, as an integer register. */
    String toInt(String x) { return unaryOp("cvt.rzi.s32.f32", x); }

    String symbol(String name) { return unaryOp("mov.u64", name); }

    String wideBytes(String bytes32) { return unaryOp("cvt.u64.u32", bytes32); }

    static String log2(int v) { return Integer.toString(Integer.numberOfTrailingZeros(v)); }
}
