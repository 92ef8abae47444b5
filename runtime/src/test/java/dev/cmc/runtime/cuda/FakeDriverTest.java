package dev.cmc.runtime.cuda;

import org.junit.jupiter.api.Assumptions;
import org.junit.jupiter.params.ParameterizedTest;
import org.junit.jupiter.params.provider.ValueSource;

import java.nio.file.Files;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.List;
import java.util.concurrent.TimeUnit;

import static org.junit.jupiter.api.Assertions.*;

/**
 * The cuda runtime's host side without a GPU: {@link FakeDriverRun}, in a JVM of its own, drives the real
 * {@link CudaBackend} and {@link CudaExecutable} against a fake driver (src/test/native/fake_cuda.c, built
 * here with the C compiler) that runs no kernels but refuses every call that breaks the driver API's rules:
 * launches past .maxntid or the shared memory allowed, pointer arguments outside live allocations, kernels
 * sent to a stream outside the capture under way, captures whose forked streams never join back, node
 * priorities out of range or in a graph instantiated without CUDA_GRAPH_INSTANTIATE_FLAG_USE_NODE_PRIORITY. Then
 * nothing may be left allocated. On an H100-like device (every arithmetic and tiling, wgmma, fused MLP
 * blocks, then a short training run and its evaluation), an A100-like one (sm_80 PTX; fused blocks of h = 128
 * only, wgmma refused) and a B200-like one (compute capability 10.0: sm_90 PTX, wgmma refused). Skipped where
 * there is no C compiler.
 */
class FakeDriverTest {
    @ParameterizedTest(name = "compute capability {0}")
    @ValueSource(strings = {"90", "80", "100"})
    void theRuntimeKeepsTheDriverApisRules(String cc, @org.junit.jupiter.api.io.TempDir Path dir) throws Exception {
        Path log = dir.resolve("driver.log");
        // Programmatic launches are off by default (CudaExecutable.PDL); turned on at compute capability 9.0 here.
        Process run = start(build(dir), log, cc, null, cc.equals("90") ? java.util.Map.of("CMC_CUDA_PDL", "1") : java.util.Map.of());
        String output = new String(run.getInputStream().readAllBytes());
        assertTrue(run.waitFor(5, TimeUnit.MINUTES), "the run on the fake driver timed out");
        System.out.print(output);
        List<String> lines = Files.readAllLines(log);
        List<String> refused = lines.stream().filter(l -> l.startsWith("error")).toList();
        assertTrue(refused.isEmpty(), "the driver refused calls:\n" + String.join("\n", refused) + "\n" + output);
        assertEquals(0, run.exitValue(), "the run on the fake driver failed:\n" + output);
        assertTrue(lines.stream().filter(l -> l.startsWith("launch ")).count() > 1000, "too few launches: " + lines.size() + " lines");
        // Captured launches are programmatic where CMC_CUDA_PDL=1 asks, from compute capability 9.0 (the fake refuses
        // one of a kernel that does not wait for the grid before it), and by default never; launches outside a
        // capture (node -1) never are.
        var captured = lines.stream().filter(l -> l.startsWith("launch ") && !l.contains(" node -1 ")).toList();
        long programmatic = captured.stream().filter(l -> l.endsWith(" programmatic")).count();
        assertFalse(captured.isEmpty(), "no captured launches");
        assertEquals(cc.equals("90") ? captured.size() : 0, programmatic, "programmatic launches among the " + captured.size() + " captured");
        assertEquals(0, lines.stream().filter(l -> l.contains(" node -1 ") && l.endsWith(" programmatic")).count(), "programmatic launches outside captures");
        // On compute capability 9.0 the wgmma-mixed-cluster step launches its split GEMMs as clusters of their slices
        // (the fake refuses a launch of such a kernel's slices that is not one cluster, and any cluster elsewhere).
        long clusters = lines.stream().filter(l -> l.startsWith("cluster ")).count();
        assertEquals(cc.equals("90"), clusters > 0, clusters + " cluster launches");
        // Urgent kernels' graph nodes (FakeDriverRun checks which) get the greatest priority, on every GPU.
        long urgent = lines.stream().filter(l -> l.startsWith("node ") && l.contains(" priority -5 ")).count();
        assertTrue(urgent > 0 && urgent < captured.size(), urgent + " of " + captured.size() + " captured launches urgent");
        assertEquals("exit live allocations 0 host 0 modules 0 streams 0 events 0 graphs 0", lines.getLast(), "left behind after every close");
    }

    /**
     * Where the driver fails: a module it refuses is reported with the JIT's log and the generated PTX saved to a
     * file that the message names; a multi-stream capture it refuses is said once, and the program captured on
     * one stream runs; so is one that refuses programmatic launches at capture or at the graph's launch, and the
     * program captured without them runs: with split-K tuning off, where the capture or the graph's launch meets
     * the refusal, and on, where the graphs that time a kernel meet it first.
     * Nothing is left allocated either way.
     */
    @ParameterizedTest(name = "fault {0}, CMC_CUDA_TUNE={1}")
    @org.junit.jupiter.params.provider.CsvSource({"jit, 1", "fork, 0", "fork, 1", "pdl, 0", "pdl-launch, 0", "pdl, 1", "pdl-launch, 1", "priority, 1"})
    void driverFailuresAreReportedOrSurvived(String fault, String tune, @org.junit.jupiter.api.io.TempDir Path dir) throws Exception {
        Path log = dir.resolve("driver.log");
        Process run = start(build(dir), log, "90", fault, java.util.Map.of("CMC_CUDA_TUNE", tune, "CMC_CUDA_PDL", fault.startsWith("pdl") ? "1" : "0"));
        String output = new String(run.getInputStream().readAllBytes());
        assertTrue(run.waitFor(2, TimeUnit.MINUTES), "the run on the fake driver timed out");
        System.out.print(output);
        assertEquals(0, run.exitValue(), "the runtime did not handle the driver's failure:\n" + output);
        if (fault.equals("fork")) {
            assertEquals(1, output.lines().filter(l -> l.contains("on 4 streams failed") && l.contains("capturing it on one stream")).count(),
                    "the failed multi-stream capture is said once:\n" + output);
        }
        if (fault.equals("priority")) {
            assertEquals(1, output.lines().filter(l -> l.contains("with kernel priorities failed")).count(), "the refused priorities are said once:\n" + output);
        }
        if (fault.startsWith("pdl")) {
            assertEquals(1, output.lines().filter(l -> l.contains("with programmatic dependent launches failed")).count(),
                    "the failed programmatic capture or launch is said once:\n" + output);
            assertTrue(Files.readAllLines(log).stream().anyMatch(l -> l.startsWith("graph launch")), "no graph ran after the fallback:\n" + output);
        }
        assertEquals("exit live allocations 0 host 0 modules 0 streams 0 events 0 graphs 0", Files.readAllLines(log).getLast(),
                "left behind after the failure");
    }

    /**
     * A driver from before CUDA 11.8 has no cuLaunchKernelEx: a tiling whose GEMMs sum split K across clusters
     * (which only it launches) is refused in one line saying what to use instead, and with CMC_CUDA_PDL=1 the step
     * is still captured and run, with plain launches.
     */
    @org.junit.jupiter.api.Test
    void aDriverWithoutLaunchKernelExRefusesClustersAndLaunchesPlainly(@org.junit.jupiter.api.io.TempDir Path dir) throws Exception {
        Path log = dir.resolve("driver.log");
        Process run = start(build(dir, "-DFAKE_CUDA_WITHOUT_LAUNCH_EX"), log, "90", "old-driver", java.util.Map.of("CMC_CUDA_PDL", "1"));
        String output = new String(run.getInputStream().readAllBytes());
        assertTrue(run.waitFor(2, TimeUnit.MINUTES), "the run on the fake driver timed out");
        System.out.print(output);
        assertEquals(0, run.exitValue(), "the runtime did not run on a driver without cuLaunchKernelEx:\n" + output);
        assertTrue(output.contains("refused as expected: CMC_CUDA_TILES=wgmma-mixed-cluster"), output);
        assertEquals("exit live allocations 0 host 0 modules 0 streams 0 events 0 graphs 0", Files.readAllLines(log).getLast(), "left behind");
    }

    /**
     * CMC_CUDA_TUNE_TILES=1: the step's GEMMs timed in the variants of their tiling too, and captured in the fastest
     * (on the fake, split K summed across clusters), the choices kept and taken again from the cache (see
     * FakeDriverRun#tunedTiles); beside a tiling that CMC_CUDA_TILES fixes, or with CMC_CUDA_TUNE=0, it is refused
     * in one line naming both settings. A driver that refuses clusters leaves them out of the timing; one that
     * refuses the clusters an earlier run kept in the cache gets the step captured without them, the refusal said
     * once, and the entry dropped, so that the next load times the tiles again.
     */
    @org.junit.jupiter.api.Test
    void tilesAreTimedAndKeptWhereAskedFor(@org.junit.jupiter.api.io.TempDir Path dir) throws Exception {
        Path library = build(dir), log = dir.resolve("driver.log");
        Process run = start(library, log, "90", "tune-tiles", java.util.Map.of("CMC_CUDA_TUNE_TILES", "1"));
        String output = new String(run.getInputStream().readAllBytes());
        assertTrue(run.waitFor(2, TimeUnit.MINUTES), "the run on the fake driver timed out");
        System.out.print(output);
        assertEquals(0, run.exitValue(), "tiles were not timed, kept and taken from the cache:\n" + output);
        assertEquals(1, output.lines().filter(l -> l.contains("timed the split-K slice counts and tiles of")).count(), "said once:\n" + output);
        assertEquals("exit live allocations 0 host 0 modules 0 streams 0 events 0 graphs 0", Files.readAllLines(log).getLast(), "left behind");
        for (var settings : List.of(java.util.Map.of("CMC_CUDA_TUNE_TILES", "1", "CMC_CUDA_TILES", "wgmma-mixed"),
                java.util.Map.of("CMC_CUDA_TUNE_TILES", "1", "CMC_CUDA_TUNE", "0"))) {
            run = start(library, dir.resolve("refused.log"), "90", "tune-tiles", settings);
            output = new String(run.getInputStream().readAllBytes());
            assertTrue(run.waitFor(2, TimeUnit.MINUTES), "the run on the fake driver timed out");
            String other = settings.containsKey("CMC_CUDA_TILES") ? "CMC_CUDA_TILES=wgmma-mixed" : "CMC_CUDA_TUNE=0";
            assertTrue(output.contains("CMC_CUDA_TUNE_TILES=1 ") && output.contains(other) && output.contains("unset one of them"), output);
        }
        // A driver that refuses cluster launches: the variants it refuses are left out of the timing, said once,
        // and the step is captured without them and runs; with programmatic launches on, they stay on (the
        // refused launch was the variant's, which the tuner leaves out).
        Path refusing = Files.createDirectories(dir.resolve("refusing")).resolve("driver.log");   // a cache of its own, beside it
        run = start(library, refusing, "90", "tune-tiles-refused", java.util.Map.of("CMC_CUDA_TUNE_TILES", "1", "CMC_CUDA_PDL", "1"));
        output = new String(run.getInputStream().readAllBytes());
        assertTrue(run.waitFor(2, TimeUnit.MINUTES), "the run on the fake driver timed out");
        System.out.print(output);
        assertEquals(0, run.exitValue(), "the refused clusters were not left out:\n" + output);
        assertEquals(1, output.lines().filter(l -> l.contains("in its tiling's variants, timed without them (first: ")
                && l.contains("CUDA_ERROR_NOT_SUPPORTED")).count(), "the refusal is said once:\n" + output);
        assertFalse(output.contains("with programmatic dependent launches failed"), "a refused cluster turned programmatic launches off:\n" + output);
        assertEquals("exit live allocations 0 host 0 modules 0 streams 0 events 0 graphs 0", Files.readAllLines(refusing).getLast(), "left behind");
        // The same driver, with the clusters that the first run kept in the cache beside driver.log.
        Path cached = dir.resolve("cached-refused.log");
        for (String load : List.of("cached", "timed again")) {
            run = start(library, cached, "90", "tune-tiles-refused", java.util.Map.of("CMC_CUDA_TUNE_TILES", "1"));
            output = new String(run.getInputStream().readAllBytes());
            assertTrue(run.waitFor(2, TimeUnit.MINUTES), "the run on the fake driver timed out");
            System.out.print(output);
            assertEquals(0, run.exitValue(), load + ": the step did not run without the refused clusters:\n" + output);
            long dropped = output.lines().filter(l -> l.contains("the driver refused capturing the tiles kept for") && l.contains("CUDA_ERROR_NOT_SUPPORTED")
                    && l.contains("to be timed again at the next load")).count();
            long timed = output.lines().filter(l -> l.contains("timed the split-K slice counts and tiles of")).count();
            assertEquals(load.equals("cached") ? List.of(1L, 0L) : List.of(0L, 1L), List.of(dropped, timed), load + ": refusal said once, then timed again:\n" + output);
            assertEquals("exit live allocations 0 host 0 modules 0 streams 0 events 0 graphs 0", Files.readAllLines(cached).getLast(), "left behind");
        }
    }

    /**
     * Kernels assembled ahead of time: with CMC_CUDA_SAVE_PTX the runtime writes each module it loads, named by
     * the SHA-256 of its text; with CMC_CUDA_CUBINS it offers the driver the cubin of that name where there is
     * one. The fake driver refuses cubins (it reads kernels from PTX), so the runtime must say so once and load
     * the PTX instead: here one module has a cubin, and the sampler still runs.
     */
    @org.junit.jupiter.api.Test
    void modulesAreSavedByTheirHashAndARefusedCubinFallsBackToPtx(@org.junit.jupiter.api.io.TempDir Path dir) throws Exception {
        Path library = build(dir), log = dir.resolve("driver.log"), ptx = dir.resolve("ptx"), cubins = dir.resolve("cubins");
        Process save = start(library, log, "90", "sampler", java.util.Map.of("CMC_CUDA_SAVE_PTX", ptx.toString()));
        String output = new String(save.getInputStream().readAllBytes());
        assertTrue(save.waitFor(2, TimeUnit.MINUTES) && save.exitValue() == 0, output);
        List<Path> saved;
        try (var files = Files.list(ptx)) {
            saved = files.sorted().toList();
        }
        long modules = Files.readAllLines(log).stream().filter(l -> l.startsWith("module ")).count();
        assertEquals(modules, saved.size(), "one file a module the driver loaded (the sampler's kernels are all different)");
        for (Path p : saved) assertEquals(Cubins.key(Files.readString(p)) + ".ptx", p.getFileName().toString(), "named by the SHA-256 of its text");

        Files.createDirectories(cubins);
        String first = saved.getFirst().getFileName().toString().replace(".ptx", ".cubin");
        Files.write(cubins.resolve(first), new byte[]{0x7f, 'E', 'L', 'F', 2, 1, 1, 0});
        Files.delete(log);
        Process load = start(library, log, "90", "sampler", java.util.Map.of("CMC_CUDA_CUBINS", cubins.toString()));
        output = new String(load.getInputStream().readAllBytes());
        assertTrue(load.waitFor(2, TimeUnit.MINUTES) && load.exitValue() == 0, output);
        assertEquals(1, output.lines().filter(l -> l.contains("the driver refused a cubin from CMC_CUDA_CUBINS")).count(), output);
        assertTrue(output.contains("sampler loaded and run"), output);
        List<String> refused = Files.readAllLines(log).stream().filter(l -> l.startsWith("error")).toList();
        assertEquals(List.of("error cuModuleLoadDataEx: a cubin: the fake driver loads PTX only"), refused, "only the cubin is refused");
    }

    /** FakeDriverRun in a JVM of its own on the fake driver, as a GPU of this compute capability, with a fault or none. */
    private static Process start(Path library, Path log, String cc, String fault) throws java.io.IOException {
        return start(library, log, cc, fault, java.util.Map.of());
    }

    private static Process start(Path library, Path log, String cc, String fault, java.util.Map<String, String> settings) throws java.io.IOException {
        String java = Path.of(System.getProperty("java.home"), "bin", "java").toString();
        var command = new ArrayList<>(List.of(java, "--enable-native-access=ALL-UNNAMED", "--add-modules", "jdk.incubator.vector",
                "-cp", System.getProperty("java.class.path"), FakeDriverRun.class.getName(), log.toString()));
        if (fault != null) command.add(fault);
        var pb = new ProcessBuilder(command).redirectErrorStream(true);
        pb.environment().put("CMC_CUDA_LIBRARY", library.toString());
        pb.environment().put("CMC_FAKE_CUDA_LOG", log.toString());
        pb.environment().put("CMC_FAKE_CUDA_CC", cc);
        pb.environment().put("CMC_CACHE", log.resolveSibling("cache").toString());   // the timed slice counts, kept per test
        if (fault != null) pb.environment().put("CMC_FAKE_CUDA_FAULT", fault);
        for (String setting : List.of("CMC_CUDA_MLP", "CMC_CUDA_TILES", "CMC_CUDA_FP32_MATMUL", "CMC_CUDA_STREAMS", "CMC_CUDA_GRAPHS", "CMC_CUDA_PDL",
                "CMC_CUDA_CUBINS", "CMC_CUDA_SAVE_PTX", "CMC_CUDA_TUNE", "CMC_CUDA_TUNE_TILES")) {
            pb.environment().remove(setting);
        }
        pb.environment().putAll(settings);
        return pb.start();
    }

    /**
     * The fake driver as a shared library, or the test skipped if no C compiler is on the PATH; with defines such as
     * -DFAKE_CUDA_WITHOUT_LAUNCH_EX (a driver from before CUDA 11.8).
     */
    private static Path build(Path dir, String... defines) throws Exception {
        Path source = Path.of("src/test/native/fake_cuda.c").toAbsolutePath(), library = dir.resolve("libcuda-fake.so");
        var command = new ArrayList<>(List.of("cc", "-std=c11", "-O1", "-Wall", "-Werror"));
        command.addAll(List.of(defines));
        command.addAll(List.of("-shared", "-fPIC", "-o", library.toString(), source.toString()));
        Process cc;
        try {
            cc = new ProcessBuilder(command).redirectErrorStream(true).start();
        } catch (java.io.IOException e) {
            Assumptions.abort("no C compiler (cc) to build the fake CUDA driver: host-side driver checks skipped");
            return null;
        }
        String log = new String(cc.getInputStream().readAllBytes());
        assertTrue(cc.waitFor(60, TimeUnit.SECONDS), "cc timed out");
        assertEquals(0, cc.exitValue(), "the fake driver does not build:\n" + log);
        return library;
    }
}
