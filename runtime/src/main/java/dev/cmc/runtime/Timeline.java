package dev.cmc.runtime;

import java.util.ArrayList;
import java.util.Comparator;
import java.util.List;
import java.util.Locale;
import java.util.StringJoiner;
import java.util.TreeMap;

/**
 * When each kernel of one run of a program ran, by the GPU's own clock: from the first of its blocks to get past
 * its wait for the kernels before it, to the end of its last block (see PtxRenderer.TIMELINE). Where the kernels'
 * one-by-one times say what each costs alone, this says what the run did with them: which ran together, which
 * ran alone, and which ended it. From its blocks' own records (up to blockRecords a kernel; none where there are
 * none), smBusyUs holds, by SM, the µs during which a block of the run was resident there, and blockUs the blocks'
 * µs in all: how full the SMs were kept.
 */
public record Timeline(String program, List<Span> spans, double[] smBusyUs, double blockUs, int blockRecords) {
    /**
     * A kernel's run: its name, the stream it was captured on, whether it was urgent, its blocks (0 where not known),
     * its start and end in µs from the run's first start. Its blocks against the GPU's SMs say how much of the GPU a
     * kernel running alone leaves idle.
     */
    public record Span(String kernel, int stream, boolean urgent, long blocks, double startUs, double endUs) {
        public double us() { return endUs - startUs; }
    }

    /** A timeline without block records. */
    public static Timeline of(String program, List<String> kernels, int[] streamOf, boolean[] urgent, long[] blocks, long[] slots) {
        return of(program, kernels, streamOf, urgent, blocks, slots, new long[0], 0);
    }

    /**
     * The timeline that slots hold after one run: for a program of n kernels, slot k the least start and slot n + k
     * the greatest end (ns) of kernel k, a start of all ones and an end of zero where it did not run; each kernel's
     * stream, urgency and blocks as launched. Spans in order of start, from the earliest. With records (two longs a
     * block, {@code perKernel} blocks a kernel: its start, then its end's low 32 bits and above them its SM; a start
     * of zero where no block wrote it), each SM's time with a block of the run resident, and the blocks' time in all.
     */
    public static Timeline of(String program, List<String> kernels, int[] streamOf, boolean[] urgent, long[] blocks, long[] slots,
                              long[] records, int perKernel) {
        int n = kernels.size();
        if (slots.length != 2 * n) throw new IllegalArgumentException(program + ": " + slots.length + " timeline slots for " + n + " kernels");
        if (records.length != 2L * n * perKernel) throw new IllegalArgumentException(program + ": " + records.length + " longs of block records for " + n + " kernels");
        long first = Long.MAX_VALUE;
        for (int k = 0; k < n; k++) if (ran(slots, n, k)) first = Math.min(first, slots[k]);
        var spans = new ArrayList<Span>();
        for (int k = 0; k < n; k++) {
            if (!ran(slots, n, k)) continue;
            spans.add(new Span(kernels.get(k), streamOf[k], urgent[k], blocks[k], (slots[k] - first) / 1e3, (slots[n + k] - first) / 1e3));
        }
        spans.sort(Comparator.comparingDouble(Span::startUs).thenComparingDouble(Span::endUs));
        // Each SM's blocks as intervals in µs from the first start, then the union of each SM's.
        var bySm = new TreeMap<Integer, List<double[]>>();
        double blockUs = 0;
        for (int i = 0; i < records.length; i += 2) {
            long start = records[i];
            if (start == 0 || first == Long.MAX_VALUE) continue;
            long end = start + ((records[i + 1] - start) & 0xffffffffL);   // the end's low 32 bits, after the start
            int sm = (int) (records[i + 1] >>> 32);
            double from = (start - first) / 1e3, to = (end - first) / 1e3;
            bySm.computeIfAbsent(sm, s -> new ArrayList<>()).add(new double[]{from, to});
            blockUs += to - from;
        }
        double[] busy = new double[bySm.isEmpty() ? 0 : bySm.lastKey() + 1];
        bySm.forEach((sm, intervals) -> busy[sm] = union(intervals));
        return new Timeline(program, List.copyOf(spans), busy, blockUs, perKernel);
    }

    /** The length of the union of intervals [from, to]. */
    private static double union(List<double[]> intervals) {
        intervals.sort(Comparator.comparingDouble(x -> x[0]));
        double total = 0, from = Double.NaN, to = Double.NaN;
        for (double[] x : intervals) {
            if (Double.isNaN(from) || x[0] > to) {
                if (!Double.isNaN(from)) total += to - from;
                from = x[0];
                to = x[1];
            } else {
                to = Math.max(to, x[1]);
            }
        }
        return Double.isNaN(from) ? total : total + to - from;
    }

    private static boolean ran(long[] slots, int n, int k) {
        return slots[k] != -1L && slots[n + k] != 0 && Long.compareUnsigned(slots[k], slots[n + k]) <= 0;
    }

    /** µs from the first kernel's start to the last one's end. */
    public double us() {
        return spans.stream().mapToDouble(Span::endUs).max().orElse(0);
    }

    /**
     * Time by how many kernels ran at once: index c holds the µs during which exactly c kernels ran (index 0: the
     * gaps between them), from the first start to the last end.
     */
    public double[] concurrency() {
        var edges = new TreeMap<Double, Integer>();   // time → change in the number running
        for (Span s : spans) {
            edges.merge(s.startUs(), 1, Integer::sum);
            edges.merge(s.endUs(), -1, Integer::sum);
        }
        double[] at = new double[spans.size() + 1];
        int running = 0;
        Double last = null;
        for (var e : edges.entrySet()) {
            if (last != null) at[running] += e.getKey() - last;
            running += e.getValue();
            last = e.getKey();
        }
        return at;
    }

    /** µs during which each kernel ran with no other, the longest first; kernels that never ran alone left out. */
    public List<java.util.Map.Entry<Span, Double>> alone() {
        var edges = new java.util.TreeSet<Double>();
        for (Span s : spans) {
            edges.add(s.startUs());
            edges.add(s.endUs());
        }
        var out = new java.util.LinkedHashMap<Span, Double>();
        Double last = null;
        for (double t : edges) {
            if (last != null) {
                double mid = (last + t) / 2;   // who runs between two edges runs throughout
                List<Span> running = spans.stream().filter(s -> s.startUs() <= mid && s.endUs() >= mid).toList();
                if (running.size() == 1) out.merge(running.getFirst(), t - last, Double::sum);
            }
            last = t;
        }
        return out.entrySet().stream().sorted(java.util.Map.Entry.<Span, Double>comparingByValue().reversed()).toList();
    }

    /** The run in a few lines: its length, how many kernels ran at once, the kernels that ran longest alone, and the last to end. */
    public String summary(int top) {
        if (spans.isEmpty()) return "  " + program + " timeline: no kernel recorded when it ran (none ran on this device)\n";
        var sb = new StringBuilder();
        double[] c = concurrency();
        double two = 0;
        for (int i = 2; i < c.length; i++) two += c[i];
        double total = us();
        sb.append(String.format(Locale.ROOT, "  %s timeline (one run, the GPU's clock): %d kernels in %.1f µs; none running %.1f µs, one %.1f µs (%.0f%%), two or more %.1f µs%n",
                program, spans.size(), total, c[0], c.length > 1 ? c[1] : 0, total > 0 && c.length > 1 ? 100 * c[1] / total : 0, two));
        var alone = alone();
        if (!alone.isEmpty()) {
            sb.append("    longest alone (µs):");
            alone.stream().limit(top).forEach(e -> sb.append(String.format(Locale.ROOT, " %s %.1f%s,", e.getKey().kernel(), e.getValue(), blocks(e.getKey()))));
            sb.setLength(sb.length() - 1);
            sb.append('\n');
        }
        if (smBusyUs.length > 0 && total > 0) {
            int least = 0;
            double sum = 0;
            for (int sm = 0; sm < smBusyUs.length; sm++) {
                sum += smBusyUs[sm];
                if (smBusyUs[sm] < smBusyUs[least]) least = sm;
            }
            sb.append(String.format(Locale.ROOT, "    SMs 0-%d: a block resident %.0f%% of the run on average (least %.0f%%, SM %d); %.2f blocks resident an SM on average%n",
                    smBusyUs.length - 1, 100 * sum / smBusyUs.length / total, 100 * smBusyUs[least] / total, least, blockUs / smBusyUs.length / total));
            long clipped = spans.stream().filter(x -> x.blocks() > blockRecords).count();
            if (clipped > 0) sb.append(String.format(Locale.ROOT, "      (%d of the kernels had more than %d blocks: only their first %d recorded)%n", clipped, blockRecords, blockRecords));
        }
        sb.append("    last to end (start–end µs):");
        spans.stream().sorted(Comparator.comparingDouble(Span::endUs).reversed()).limit(top)
                .forEach(s -> sb.append(String.format(Locale.ROOT, " %s %.1f–%.1f%s,", s.kernel(), s.startUs(), s.endUs(), blocks(s))));
        sb.setLength(sb.length() - 1);
        return sb.append('\n').toString();
    }

    /** " (N blocks)", or nothing where they are not known. */
    private static String blocks(Span s) { return s.blocks() > 0 ? " (" + s.blocks() + " blocks)" : ""; }

    /** The spans as JSON: [{"kernel", "stream", "urgent", "blocks", "start_us", "end_us"}, …]. */
    public String json() {
        var each = new StringJoiner(",", "[", "]");
        for (Span s : spans) {
            each.add(String.format(Locale.ROOT, "{\"kernel\":\"%s\",\"stream\":%d,\"urgent\":%b,\"blocks\":%d,\"start_us\":%.3f,\"end_us\":%.3f}",
                    s.kernel(), s.stream(), s.urgent(), s.blocks(), s.startUs(), s.endUs()));
        }
        return each.toString();
    }

    /**
     * Timelines in the Chrome trace event format, which Perfetto (ui.perfetto.dev) and chrome://tracing open: a
     * process per timeline, named by its label, a thread per stream, a complete event per kernel.
     */
    public static String chromeTrace(List<String> labels, List<Timeline> timelines) {
        var events = new StringJoiner(",\n", "{\"displayTimeUnit\":\"ns\",\"traceEvents\":[\n", "\n]}\n");
        for (int i = 0; i < timelines.size(); i++) {
            Timeline t = timelines.get(i);
            int p = i;
            events.add(String.format(Locale.ROOT, "{\"ph\":\"M\",\"name\":\"process_name\",\"pid\":%d,\"args\":{\"name\":\"%s\"}}", p, escape(labels.get(p))));
            t.spans.stream().mapToInt(Span::stream).distinct().sorted().forEach(s -> events.add(String.format(Locale.ROOT,
                    "{\"ph\":\"M\",\"name\":\"thread_name\",\"pid\":%d,\"tid\":%d,\"args\":{\"name\":\"stream %d\"}}", p, s, s)));
            for (Span s : t.spans) {
                events.add(String.format(Locale.ROOT, "{\"ph\":\"X\",\"name\":\"%s\",\"cat\":\"%s\",\"pid\":%d,\"tid\":%d,\"ts\":%.3f,\"dur\":%.3f,\"args\":{\"blocks\":%d}}",
                        escape(s.kernel()), s.urgent() ? "urgent" : "kernel", p, s.stream(), s.startUs(), s.us(), s.blocks()));
            }
        }
        return events.toString();
    }

    private static String escape(String s) { return s.replace("\\", "\\\\").replace("\"", "\\\""); }
}
