package dev.cmc.runtime.cuda;

import org.junit.jupiter.api.Test;

import static org.junit.jupiter.api.Assertions.*;

/** CMC_CUDA_JIT_THREADS: a count from 1 to 99, one a core (at most 16) when unset, and an error naming it otherwise. */
class JitThreadsTest {
    @Test
    void aCountIsTakenAndAnythingElseIsAnErrorNamingTheSetting() {
        assertEquals(2, CudaExecutable.jitThreads(null, 2));
        assertEquals(16, CudaExecutable.jitThreads(" ", 64));
        assertEquals(1, CudaExecutable.jitThreads("1", 64));
        assertEquals(12, CudaExecutable.jitThreads(" 12 ", 2));
        for (String bad : new String[]{"0", "100", "-3", "four", "1.5"}) {
            var e = assertThrows(dev.cmc.runtime.SettingException.class, () -> CudaExecutable.jitThreads(bad, 2), bad);
            assertTrue(e.getMessage().startsWith("CMC_CUDA_JIT_THREADS=" + bad + ": expected a thread count from 1 to 99"), e.getMessage());
        }
    }
}
