package dev.cmc.render;

import dev.cmc.compile.Compiler;
import dev.cmc.dsl.Spec;
import dev.cmc.dsl.SpecLoader;
import dev.cmc.kernel.PeakFma;
import dev.cmc.kernel.Program;
import org.junit.jupiter.api.Assumptions;
import org.junit.jupiter.params.ParameterizedTest;
import org.junit.jupiter.params.provider.ValueSource;

import java.io.IOException;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.List;
import java.util.concurrent.TimeUnit;

import static org.junit.jupiter.api.Assertions.*;

/**
 * Every PTX module cmc generates assembles with NVIDIA's ptxas, for sm_80 and sm_90, without spilling
 * registers: samplers and training steps for every method, activation, loss and optimizer option, each with
 * every GEMM arithmetic (fp32 FMAs, TF32, 3xTF32, bf16), the seed programs in every tiling (wgmma's for
 * sm_90a), with fused MLP blocks (h = 256 for sm_90, h = 128 for both), the FMA probe, and programs whose kernels
 * record their timeline. Runs where ptxas exists (CUDA_HOME, /usr/local/cuda or the PATH), without a GPU.
 */
public class PtxasTest {
    static Path ptxas() {
        List<Path> candidates = new ArrayList<>();
        String home = System.getenv("CUDA_HOME");
        if (home != null) candidates.add(Path.of(home, "bin", "ptxas"));
        candidates.add(Path.of("/usr/local/cuda/bin/ptxas"));
        for (String dir : System.getenv().getOrDefault("PATH", "").split(":")) if (!dir.isEmpty()) candidates.add(Path.of(dir, "ptxas"));
        return candidates.stream().filter(Files::isExecutable).findFirst().orElse(null);
    }

    static Spec spec(String model, String train) {
        return SpecLoader.fromText("ptxas.cm", "model m { " + model + " }\ntrain { " + train + " }\n");
    }

    /** The programs every test of the generated code runs over: each training method, every loss and optimizer, a sampler. */
    public static List<Program> programs() {
        var out = new ArrayList<Program>();
        Spec seed = spec("input_dim = 64; hidden_size = 256; num_layers = 4;", "method = ct;");
        out.add(Compiler.sampler(seed).program());
        out.add(Compiler.denoiser(seed).program());
        out.add(Compiler.trainStep(seed).program());
        // iCT at batch 4,096: σ embedded once per each of 1,280 grid levels; the embedding's weight gradient splits K
        Spec ict = spec("input_dim = 64; hidden_size = 256; num_layers = 4;", "method = ict;");
        out.add(Compiler.trainStep(ict, null, Compiler.sigmaRows(ict, 4096)).program());
        out.add(Compiler.trainStep(spec("input_dim = 2; hidden_size = 40; num_layers = 2; activation = gelu; input_scaling = none;",
                "method = ict; loss = l2; optimizer = radam; grad_clip = 1.0; weight_decay = 0.01;")).program());
        out.add(Compiler.trainStep(spec("input_dim = 3; hidden_size = 24; num_layers = 1; activation = relu; expansion = 3;", "method = edm;")).program());
        Spec teacher = spec("input_dim = 2; hidden_size = 32; num_layers = 2;", "method = edm;");
        out.add(Compiler.trainStep(spec("input_dim = 2; hidden_size = 32; num_layers = 2;", "method = cd; teacher = \"t.safetensors\";"), teacher).program());
        out.add(PeakFma.program());
        return out;
    }

    @ParameterizedTest
    @ValueSource(strings = {"sm_80", "sm_90"})
    void everyModuleAssembles(String arch, @org.junit.jupiter.api.io.TempDir Path dir) throws Exception {
        Path ptxas = ptxas();
        Assumptions.assumeTrue(ptxas != null, "ptxas not found (CUDA_HOME, /usr/local/cuda/bin or PATH): PTX assembly check skipped");
        assembleAll(ptxas, distinctKernels(modules(arch, dir), dir));
    }

    /**
     * Programmatic dependent launch (see PtxFunction#render): every kernel of every sm_90 module waits for the
     * grid before it (griddepcontrol.wait) before any instruction that touches global memory, and only then lets
     * the next one launch; sm_80 modules have neither (ptxas would refuse them there). The simulator holds each
     * kernel it runs to the same order; this checks all of them, whether it runs them or not.
     */
    @ParameterizedTest
    @ValueSource(strings = {"sm_80", "sm_90"})
    void sm90KernelsWaitForTheGridBeforeTouchingGlobalMemory(String arch, @org.junit.jupiter.api.io.TempDir Path dir) {
        int kernels = 0;
        for (Assembly m : modules(arch, dir)) {
            for (String entry : m.ptx().split("\\.visible \\.entry ")) {
                if (!entry.contains("ret;")) continue;   // the module's directives, before its first entry
                String name = entry.substring(0, entry.indexOf('('));
                List<String> code = entry.lines().map(String::strip).filter(l -> !l.startsWith("//")).toList();
                int wait = code.indexOf("griddepcontrol.wait;"), launch = code.indexOf("griddepcontrol.launch_dependents;");
                kernels++;
                if (!arch.equals("sm_90")) {
                    assertTrue(wait < 0 && launch < 0, m.what() + ", " + name + ": griddepcontrol in sm_80 code");
                    continue;
                }
                assertTrue(wait >= 0 && launch == wait + 1, m.what() + ", " + name + ": no griddepcontrol.wait then launch_dependents");
                assertEquals(2, code.stream().filter(l -> l.startsWith("griddepcontrol")).count(), m.what() + ", " + name + ": one wait, one launch");
                for (String before : code.subList(0, wait)) {
                    assertFalse(before.contains(".global") && !before.startsWith("cvta") || before.startsWith("cp.async"),
                            m.what() + ", " + name + ": touches global memory before griddepcontrol.wait: " + before);
                }
            }
        }
        assertTrue(kernels > 500, kernels + " kernels checked");
    }

    /** Every module the assembly check assembles for this architecture: each program in each arithmetic and tiling, and fused blocks. */
    private static List<Assembly> modules(String arch, Path dir) {
        var checks = new ArrayList<Assembly>();
        List<Program> programs = programs();
        for (int i = 0; i < programs.size(); i++) {
            Program p = programs.get(i);
            String file = i + "_" + p.name();   // programs of specs with one name share a program name
            for (PtxRenderer.Matmul m : PtxRenderer.Matmul.values()) {
                if (m != PtxRenderer.Matmul.FMA && p.name().equals("peak_fma")) continue;
                // 128×128 tensor-core tiles too, for the seed sampler and training step: the shapes they are for.
                for (PtxRenderer.Tiling tiling : tilings(i, m, arch)) {
                    String ptx = p.name().equals("peak_fma") ? PtxRenderer.renderPeak(p, arch) : PtxRenderer.render(p, "ptxas test", arch, m, tiling);
                    String target = tiling.wgmma() ? "sm_90a" : arch;
                    String what = p.name() + " (" + m.description + ", " + tiling.name().toLowerCase() + " tiles) for " + target;
                    checks.add(new Assembly(dir.resolve(file + "_" + m + "_" + tiling), target, ptx, what));
                }
            }
        }
        // Fused MLP blocks (CMC_CUDA_MLP=fused, tf32 and 3xTF32) at both widths they take, with the other GEMMs in
        // mma.sync and in wgmma tiles, tf32's blocks there on wgmma too (WGMMA_MLP: its mma.sync blocks are the
        // same code as beside mma.sync GEMMs), and for the samplers chained (WGMMA_CHAIN), each also fed by bulk
        // copies (WGMMA_MLP_BULK, WGMMA_CHAIN_BULK); for sm_80, h = 128
        // alone, whose 154 KB of shared memory fit an A100.
        Spec roll = spec("input_dim = 2; hidden_size = 128; num_layers = 3;", "method = ict;");
        for (Program p : arch.equals("sm_90") ? List.of(programs.get(0), programs.get(2), Compiler.sampler(roll).program())
                                              : List.of(Compiler.sampler(roll).program())) {
            for (PtxRenderer.Matmul m : List.of(PtxRenderer.Matmul.TF32, PtxRenderer.Matmul.TF32X3)) {
                var tilings = new ArrayList<>(List.of(PtxRenderer.Tiling.NARROW));
                if (arch.equals("sm_90")) tilings.add(m == PtxRenderer.Matmul.TF32 ? PtxRenderer.Tiling.WGMMA_MLP : PtxRenderer.Tiling.WGMMA);
                if (arch.equals("sm_90") && m == PtxRenderer.Matmul.TF32) tilings.add(PtxRenderer.Tiling.WGMMA_MLP_BULK);
                if (arch.equals("sm_90") && m == PtxRenderer.Matmul.TF32 && p != programs.get(2)) {
                    tilings.add(PtxRenderer.Tiling.WGMMA_CHAIN);
                    tilings.add(PtxRenderer.Tiling.WGMMA_CHAIN_BULK);
                }
                for (PtxRenderer.Tiling tiling : tilings) {
                    Program fused = PtxRenderer.fuseMlps(p, m, tiling);
                    assertTrue(fused.kernels().stream().anyMatch(k -> k instanceof dev.cmc.kernel.Kernel.Mlp || k instanceof dev.cmc.kernel.Kernel.MlpChain),
                            p.name() + " has no fused block");
                    String ptx = PtxRenderer.render(fused, "ptxas test", arch, m, tiling);
                    String target = tiling.wgmma() ? "sm_90a" : arch;
                    String what = p.name() + " (fused MLP blocks, " + m.description + ", " + tiling.name().toLowerCase() + " tiles) for " + target;
                    Path base = dir.resolve("fused_" + p.name() + "_" + p.kernels().size() + "_" + m + "_" + tiling);
                    checks.add(new Assembly(base, target, ptx, what));
                }
            }
        }
        // Kernels that record their timeline (cmc bench --trace): each family's stamps, where every family appears.
        for (var timed : timelined(arch, programs, roll)) {
            String target = timed.tiling().wgmma() ? "sm_90a" : arch;
            String ptx = PtxRenderer.render(timed.program(), "ptxas test", arch, timed.matmul(), timed.tiling(), true);
            String what = timed.program().name() + " (" + timed.matmul().description + ", " + timed.tiling().name().toLowerCase() + " tiles, recording its timeline) for " + target;
            checks.add(new Assembly(dir.resolve("timeline_" + timed.program().name() + "_" + timed.matmul() + "_" + timed.tiling()), target, ptx, what));
        }
        return checks;
    }

    private record Timed(Program program, PtxRenderer.Matmul matmul, PtxRenderer.Tiling tiling) {}

    /**
     * The programs assembled recording their timeline: for sm_90 the seed's training step in its default tiles at
     * 4,096 rows (wgmma GEMMs, transposes, reductions, Adam) and its sampler in tf32's chained blocks; for sm_80 the
     * small iCT step (mma.sync and split GEMMs) and the 128-wide sampler's fused blocks.
     */
    private static List<Timed> timelined(String arch, List<Program> programs, Spec roll) {
        if (arch.equals("sm_90")) {
            var chain = PtxRenderer.Tiling.WGMMA_CHAIN_BULK;
            return List.of(new Timed(programs.get(2), PtxRenderer.Matmul.TF32X3, PtxRenderer.Tiling.WGMMA_MIXED),
                    new Timed(PtxRenderer.fuseMlps(programs.get(0), PtxRenderer.Matmul.TF32, chain), PtxRenderer.Matmul.TF32, chain));
        }
        return List.of(new Timed(programs.get(4), PtxRenderer.Matmul.TF32X3, PtxRenderer.Tiling.NARROW),
                new Timed(PtxRenderer.fuseMlps(Compiler.sampler(roll).program(), PtxRenderer.Matmul.TF32, PtxRenderer.Tiling.NARROW), PtxRenderer.Matmul.TF32,
                        PtxRenderer.Tiling.NARROW));
    }

    /**
     * The tilings to assemble program i in: 128×128 tiles for the seed sampler and training step (the shapes
     * they are for), wgmma's (sm_90a) for those and the iCT grouped step, whose embedding GEMM splits K, and
     * for the seed's two, wgmma's 32-deep slices (tf32) and 128×256 tiles (3xTF32: the largest shared memory), and
     * for its training step the tiles by shape that 3xTF32 takes there by default, the same with each stage
     * refilled a trip sooner (for the sampler, its 128×256 tiles so), and with split K summed across clusters.
     */
    private static List<PtxRenderer.Tiling> tilings(int i, PtxRenderer.Matmul m, String arch) {
        var out = new ArrayList<>(List.of(PtxRenderer.Tiling.NARROW));
        if (m == PtxRenderer.Matmul.FMA) return out;
        if (i == 0 || i == 2) out.add(PtxRenderer.Tiling.WIDE);
        if ((i == 0 || i == 2 || i == 3) && arch.equals("sm_90") && m != PtxRenderer.Matmul.BF16) out.add(PtxRenderer.Tiling.WGMMA);
        if ((i == 0 || i == 2) && arch.equals("sm_90") && m == PtxRenderer.Matmul.TF32) out.add(PtxRenderer.Tiling.WGMMA_DEEP);
        if ((i == 0 || i == 2) && arch.equals("sm_90") && m == PtxRenderer.Matmul.TF32X3) out.add(PtxRenderer.Tiling.WGMMA_WIDE);
        if (i == 2 && arch.equals("sm_90") && m == PtxRenderer.Matmul.TF32X3) out.addAll(List.of(PtxRenderer.Tiling.WGMMA_MIXED, PtxRenderer.Tiling.WGMMA_MIXED_EARLY));
        if (i == 0 && arch.equals("sm_90") && m == PtxRenderer.Matmul.TF32X3) out.add(PtxRenderer.Tiling.WGMMA_WIDE_EARLY);
        // Split K summed across clusters: the step's split GEMMs in 128x128 and 128x256 tiles, tf32 and 3xTF32, refilled early or not.
        if (i == 2 && arch.equals("sm_90") && m != PtxRenderer.Matmul.BF16) out.add(PtxRenderer.Tiling.WGMMA_MIXED_CLUSTER);
        if (i == 2 && arch.equals("sm_90") && m == PtxRenderer.Matmul.TF32X3) out.add(PtxRenderer.Tiling.WGMMA_MIXED_EARLY_CLUSTER);
        return out;
    }

    /** A module to assemble: where its files go, the target, its text, what a failure calls it, and for a packed module its kernels alone. */
    private record Assembly(Path base, String target, String ptx, String what, List<Assembly> kernels) {
        Assembly(Path base, String target, String ptx, String what) { this(base, target, ptx, what, List.of()); }
    }

    /**
     * The modules' kernels, each distinct one once, packed into a few modules per target and directives. Most
     * kernels recur: an elementwise kernel is the same in every arithmetic and tiling, and a GEMM in a sampler
     * and a training step. ptxas sees no names beyond the module, so two kernels alike but for their own name
     * and their parameters' names assemble alike; each is assembled once, under a neutral name. Of the 5,300
     * kernels (270 MB of PTX) in both architectures' modules, 2,000 (175 MB) are distinct. Where a packed module
     * fails or spills, its kernels are assembled one by one, so that the failure names the kernel and the module
     * it came from.
     */
    private static List<Assembly> distinctKernels(List<Assembly> modules, Path dir) {
        var groups = new java.util.LinkedHashMap<String, java.util.LinkedHashMap<String, String>>();   // directives → neutral kernel → what
        for (Assembly m : modules) {
            String[] parts = m.ptx().split("\\.visible \\.entry ");
            String directives = parts[0].lines().filter(l -> !l.startsWith("//")).collect(java.util.stream.Collectors.joining("\n", "", "\n"));
            var kernels = groups.computeIfAbsent(directives, d -> new java.util.LinkedHashMap<>());
            for (int i = 1; i < parts.length; i++) {
                String name = parts[i].substring(0, parts[i].indexOf('('));
                kernels.putIfAbsent(neutral(parts[i]), name + " of " + m.what());
            }
        }
        int bins = 4 * Runtime.getRuntime().availableProcessors();
        var out = new ArrayList<Assembly>();
        for (var group : groups.entrySet()) {
            String directives = group.getKey(), target = directives.replaceFirst("(?s).*\\.target (\\w+).*", "$1");
            // Largest first, each into the lightest module so far: modules of even size for the pool's threads
            var kernels = new ArrayList<>(group.getValue().entrySet());
            kernels.sort(java.util.Comparator.comparingInt((java.util.Map.Entry<String, String> k) -> k.getKey().length()).reversed());
            var packed = new ArrayList<List<java.util.Map.Entry<String, String>>>();
            long[] bytes = new long[Math.min(bins, kernels.size())];
            for (long ignored : bytes) packed.add(new ArrayList<>());
            for (var k : kernels) {
                int lightest = 0;
                for (int b = 1; b < bytes.length; b++) if (bytes[b] < bytes[lightest]) lightest = b;
                packed.get(lightest).add(k);
                bytes[lightest] += k.getKey().length();
            }
            for (var bin : packed) {
                String name = "kernels_" + out.size();
                var ptx = new StringBuilder(directives);
                var alone = new ArrayList<Assembly>();
                for (int i = 0; i < bin.size(); i++) {
                    String kernel = bin.get(i).getKey(), what = bin.get(i).getValue();
                    ptx.append("\n.visible .entry k").append(i).append(kernel.substring(1));
                    alone.add(new Assembly(dir.resolve(name + "_" + i), target, directives + "\n.visible .entry " + kernel, what));
                }
                out.add(new Assembly(dir.resolve(name), target, ptx.toString(), bin.size() + " kernels for " + target, alone));
            }
        }
        out.sort(java.util.Comparator.comparingInt((Assembly m) -> m.ptx().length()).reversed());   // the longest first: no long one left for last
        return out;
    }

    /** A kernel's text after ".visible .entry ", with its name and its parameters' names made neutral. */
    private static String neutral(String kernel) {
        String signature = kernel.substring(0, kernel.indexOf(')'));
        var params = new ArrayList<String>();
        var matcher = java.util.regex.Pattern.compile("\\.param \\.\\w+ (\\w+)").matcher(signature);
        while (matcher.find()) params.add(matcher.group(1));
        String body = kernel.substring(kernel.indexOf('('), Math.min(kernel.length(), kernel.lastIndexOf("\n}") + 3));   // to the closing brace, without the next kernel's comment
        if (params.isEmpty()) return "K" + body;
        var names = java.util.regex.Pattern.compile("\\b(" + String.join("|", params) + ")\\b");
        return "K" + names.matcher(body).replaceAll(r -> "param_" + params.indexOf(r.group(1)));
    }

    /** One ptxas per module, as many at once as there are cores (each is single-threaded and takes seconds); none where ptxas is missing. */
    private static void assembleAll(Path ptxas, List<Assembly> modules) throws Exception {
        if (ptxas == null) return;
        var pool = java.util.concurrent.Executors.newFixedThreadPool(Runtime.getRuntime().availableProcessors());
        try {
            var checks = new ArrayList<java.util.concurrent.Future<?>>();
            for (Assembly m : modules) checks.add(pool.submit(() -> { assemble(ptxas, m); return null; }));
            for (var c : checks) {
                try {
                    c.get();
                } catch (java.util.concurrent.ExecutionException e) {
                    if (e.getCause() instanceof Error err) throw err;
                    throw e;
                }
            }
        } finally {
            pool.shutdownNow();
        }
    }

    /** A module assembles without spills; where a packed module does not, the kernel that fails. */
    private static void assemble(Path ptxas, Assembly m) throws Exception {
        if (m.kernels().isEmpty()) {
            assemble(ptxas, m.target(), m.base(), m.ptx(), m.what());
            return;
        }
        try {
            assemble(ptxas, m.target(), m.base(), m.ptx(), m.what());
        } catch (AssertionError packed) {
            for (Assembly k : m.kernels()) assemble(ptxas, k.target(), k.base(), k.ptx(), k.what());
            throw packed;
        }
    }

    private static void assemble(Path ptxas, String arch, Path base, String ptx, String what) throws Exception {
        Path file = Path.of(base + ".ptx");
        Files.writeString(file, ptx);
        var proc = new ProcessBuilder(ptxas.toString(), "-arch=" + arch, "-v", file.toString(), "-o", base + ".cubin")
                .redirectErrorStream(true).start();
        String log = new String(proc.getInputStream().readAllBytes());
        assertTrue(proc.waitFor(120, TimeUnit.SECONDS), "ptxas timed out on " + what);
        assertEquals(0, proc.exitValue(), what + " does not assemble:\n" + log);
        assertFalse(log.matches("(?s).*[1-9]\\d* bytes spill (stores|loads).*"), what + " spills registers:\n" + log);
    }

    @org.junit.jupiter.api.Test
    void modulesAreAsciiAndDeclareEveryKernel() throws IOException {
        for (Program p : programs()) {
            if (p.name().equals("peak_fma")) continue;
            String ptx = PtxRenderer.render(p, "ascii test", "sm_90");
            assertTrue(ptx.chars().allMatch(c -> c < 128), p.name() + ": ptxas rejects non-ASCII text");
            for (int k = 0; k < p.kernels().size(); k++) assertTrue(ptx.contains(".visible .entry " + PtxRenderer.kernelName(p, k) + "("));
        }
    }

    /**
     * What the cuda runtime loads, one module per kernel: each holds its kernel alone, the whole module's
     * function text, with the directives a module needs (sm_90a and the dynamic shared memory for wgmma and fused
     * blocks), and assembles on its own.
     */
    @org.junit.jupiter.api.Test
    void eachKernelsOwnModuleAssemblesAlone(@org.junit.jupiter.api.io.TempDir Path dir) throws Exception {
        Program seedSampler = PtxRenderer.fuseMlps(programs().get(0), PtxRenderer.Matmul.TF32X3);
        Program smallStep = programs().get(4);
        var cases = List.of(
                new Object[]{seedSampler, PtxRenderer.Matmul.TF32X3, PtxRenderer.Tiling.WGMMA, "sm_90a"},
                new Object[]{smallStep, PtxRenderer.Matmul.TF32X3, PtxRenderer.Tiling.NARROW, "sm_90"},
                new Object[]{smallStep, PtxRenderer.Matmul.FMA, PtxRenderer.Tiling.NARROW, "sm_80"});
        Path ptxas = ptxas();
        var checks = new ArrayList<Assembly>();
        for (Object[] c : cases) {
            Program p = (Program) c[0];
            var m = (PtxRenderer.Matmul) c[1];
            var tiling = (PtxRenderer.Tiling) c[2];
            String target = (String) c[3];
            String whole = PtxRenderer.render(p, "modules test", target.substring(0, 5), m, tiling);
            List<String> modules = PtxRenderer.modules(p, target.substring(0, 5), m, tiling);
            assertEquals(p.kernels().size(), modules.size());
            for (int k = 0; k < modules.size(); k++) {
                String module = modules.get(k), name = PtxRenderer.kernelName(p, k);
                assertEquals(1, module.split("\\.visible \\.entry ", -1).length - 1, name + ": one kernel a module");
                assertTrue(module.contains(".target " + target + "\n"), name + " targets " + target);
                String function = module.substring(module.indexOf("// " + p.kernels().get(k).name() + "\n"));
                assertTrue(whole.contains(function), name + "'s module holds the whole module's text of it");
                Path base = dir.resolve(p.name() + "_" + m + "_" + tiling + "_" + k);
                String what = name + " alone (" + m.description + ", " + tiling.name().toLowerCase() + " tiles) for " + target;
                checks.add(new Assembly(base, target, module, what));
            }
        }
        assembleAll(ptxas, checks);
    }
}
