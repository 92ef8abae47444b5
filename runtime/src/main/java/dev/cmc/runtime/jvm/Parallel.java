package dev.cmc.runtime.jvm;

import java.util.concurrent.ForkJoinPool;
import java.util.concurrent.ForkJoinTask;
import java.util.concurrent.RecursiveAction;

/** Splits [0, size) into one aligned chunk per thread; the calling thread runs the last chunk itself. */
public final class Parallel {
    public interface Range { void run(int lo, int hi); }

    private final ForkJoinPool pool;
    private final int threads;

    public Parallel(int threads) {
        this.threads = Math.max(1, threads);
        this.pool = this.threads > 1 ? new ForkJoinPool(this.threads - 1) : null;
    }

    public int threads() { return threads; }

    public void forRange(int size, int grain, boolean worthSplitting, Range body) {
        int units = (size + grain - 1) / grain;
        int chunks = worthSplitting ? Math.min(threads, units) : 1;
        if (chunks <= 1) { body.run(0, size); return; }
        var tasks = new ForkJoinTask<?>[chunks - 1];
        int per = (units + chunks - 1) / chunks;
        for (int c = 0; c < chunks - 1; c++) {
            int lo = Math.min(size, c * per * grain), hi = Math.min(size, (c + 1) * per * grain);
            tasks[c] = pool.submit(new RecursiveAction() { protected void compute() { body.run(lo, hi); } });
        }
        body.run(Math.min(size, (chunks - 1) * per * grain), size);
        for (ForkJoinTask<?> t : tasks) t.join();
    }

    public void shutdown() {
        if (pool != null) pool.shutdown();
    }
}
