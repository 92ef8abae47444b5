package dev.cmc.runtime;

import org.junit.jupiter.api.Test;

import java.util.List;

import static org.junit.jupiter.api.Assertions.*;

/** What a timeline makes of the slots a run leaves: its spans, how many kernels ran at once, who ran alone, and its trace. */
class TimelineTest {
    private static final long NONE = -1L, T0 = 5_000_000_000L;

    /**
     * Four kernels from a clock at 5 s: a 0–10 µs alone, b 10–30 and c 12–20 together, d never launched (its slots as
     * set), e 40–45 after a gap of 10 µs; c's blocks not known.
     */
    private static Timeline sample() {
        var names = List.of("a", "b", "c", "d", "e");
        long[] slots = {T0, T0 + 10_000, T0 + 12_000, NONE, T0 + 40_000,
                        T0 + 10_000, T0 + 30_000, T0 + 20_000, 0, T0 + 45_000};
        return Timeline.of("step", names, new int[]{0, 1, 2, 3, 0}, new boolean[]{true, true, false, false, true}, new long[]{8, 64, 0, 4, 132}, slots);
    }

    @Test
    void spansAreTheKernelsThatRanInMicrosecondsFromTheFirstStart() {
        Timeline t = sample();
        assertEquals(List.of("a", "b", "c", "e"), t.spans().stream().map(Timeline.Span::kernel).toList());
        assertEquals(new Timeline.Span("c", 2, false, 0, 12.0, 20.0), t.spans().get(2));
        assertEquals(45.0, t.us(), 1e-9);
    }

    @Test
    void timeIsSplitByHowManyKernelsRanAtOnce() {
        double[] c = sample().concurrency();
        assertEquals(10.0, c[0], 1e-9);   // 30–40
        assertEquals(10 + 2 + 10 + 5, c[1], 1e-9);   // a, b before c, b after c, e
        assertEquals(8.0, c[2], 1e-9);   // b with c
        assertEquals(45.0, java.util.Arrays.stream(c).sum(), 1e-9);
    }

    @Test
    void aloneCountsOnlyStretchesWithNoOtherKernel() {
        var alone = sample().alone();
        assertEquals(List.of("b", "a", "e"), alone.stream().map(e -> e.getKey().kernel()).toList());
        assertEquals(12.0, alone.getFirst().getValue(), 1e-9);
        String summary = sample().summary(2);
        assertTrue(summary.contains("4 kernels in 45.0 µs; none running 10.0 µs, one 27.0 µs (60%), two or more 8.0 µs"), summary);
        assertTrue(summary.contains("longest alone (µs): b 12.0 (64 blocks), a 10.0 (8 blocks)\n"), summary);
        assertTrue(summary.contains("last to end (start–end µs): e 40.0–45.0 (132 blocks), b 10.0–30.0 (64 blocks)\n"), summary);
    }

    @Test
    void aKernelWhoseEndIsBeforeItsStartDidNotRun() {
        long[] slots = {T0 + 5, T0, T0 + 1, T0 + 9};   // the first's end precedes its start: slots of another run
        Timeline t = Timeline.of("p", List.of("x", "y"), new int[2], new boolean[2], new long[2], slots);
        assertEquals(List.of("y"), t.spans().stream().map(Timeline.Span::kernel).toList());
        assertEquals(0.0, t.spans().getFirst().startUs());
        var none = Timeline.of("p", List.of("x"), new int[1], new boolean[1], new long[1], new long[]{NONE, 0});
        assertEquals("  p timeline: no kernel recorded when it ran (none ran on this device)\n", none.summary(3));
        assertThrows(IllegalArgumentException.class, () -> Timeline.of("p", List.of("x"), new int[1], new boolean[1], new long[1], new long[3]));
    }

    /**
     * Block records, two a kernel: a's blocks on SM 0 (0–10 µs) and SM 1 (0–4), b's first on SM 0 (5–21, over a's)
     * and its second never written. SM 0 has a block for 21 µs of the run's 21, SM 1 for 4; the blocks took 30.
     */
    @Test
    void blockRecordsGiveEachSmsTimeWithABlockResident() {
        long[] slots = {T0, T0 + 5_000, T0 + 10_000, T0 + 21_000};
        long[] records = {T0, end(T0 + 10_000, 0), T0, end(T0 + 4_000, 1), T0 + 5_000, end(T0 + 21_000, 0), 0, 0};
        Timeline t = Timeline.of("step", List.of("a", "b"), new int[2], new boolean[2], new long[]{2, 3}, slots, records, 2);
        assertArrayEquals(new double[]{21, 4}, t.smBusyUs(), 1e-9);
        assertEquals(30.0, t.blockUs(), 1e-9);
        String summary = t.summary(2);
        assertTrue(summary.contains("SMs 0-1: a block resident 60% of the run on average (least 19%, SM 1); 0.71 blocks resident an SM on average\n"), summary);
        assertTrue(summary.contains("(1 of the kernels had more than 2 blocks: only their first 2 recorded)"), summary);
        assertThrows(IllegalArgumentException.class, () -> Timeline.of("step", List.of("a", "b"), new int[2], new boolean[2], new long[2], slots, records, 3));
    }

    /** A record's second long as a kernel writes it: the end's low 32 bits, then the SM. */
    private static long end(long ns, int sm) { return ns & 0xffffffffL | (long) sm << 32; }

    @Test
    void theTraceHasAProcessPerTimelineAThreadPerStreamAndAnEventPerKernel() {
        String trace = Timeline.chromeTrace(List.of("cuda:0: \"step\""), List.of(sample()));
        assertTrue(trace.startsWith("{\"displayTimeUnit\":\"ns\",\"traceEvents\":[\n"), trace);
        assertTrue(trace.endsWith("\n]}\n"), trace);
        assertTrue(trace.contains("{\"ph\":\"M\",\"name\":\"process_name\",\"pid\":0,\"args\":{\"name\":\"cuda:0: \\\"step\\\"\"}}"), trace);
        assertEquals(3, trace.split("\"thread_name\"").length - 1, "streams 0, 1, 2");
        assertTrue(trace.contains("{\"ph\":\"X\",\"name\":\"b\",\"cat\":\"urgent\",\"pid\":0,\"tid\":1,\"ts\":10.000,\"dur\":20.000,\"args\":{\"blocks\":64}}"), trace);
        assertEquals(4, trace.split("\"ph\":\"X\"").length - 1);
        assertEquals(trace.chars().filter(ch -> ch == '{').count(), trace.chars().filter(ch -> ch == '}').count());
    }
}
