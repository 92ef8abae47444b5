package dev.cmc.runtime.cuda;

import dev.cmc.runtime.SettingException;
import org.junit.jupiter.api.Test;

import java.util.List;

import static org.junit.jupiter.api.Assertions.*;

/**
 * How the timed slice counts are chosen and kept: the formula's count stands unless another is 3% faster, and a
 * cache entry is taken only where every count still fits the program (see FakeDriverTest for the runtime timing
 * them on a GPU's driver, and SplitKTest for the counts on offer).
 */
class SplitTuningTest {
    @Test
    void theFastestCountWinsOnlyByTheMargin() {
        var choices = List.of(1, 2, 4, 8);
        assertEquals(2, SplitTuning.pick(choices, new double[]{0.030, 0.020, 0.025, 0.028}, 8));
        assertEquals(8, SplitTuning.pick(choices, new double[]{0.030, 0.0275, 0.029, 0.028}, 8), "2% faster is noise");
        assertEquals(1, SplitTuning.pick(choices, new double[]{0.010, 0.0275, 0.029, 0.028}, 4));
        assertEquals(4, SplitTuning.pick(choices, new double[]{0.010, 0.010, 0.010, 0.010}, 4), "ties keep the formula's");
        assertThrows(IllegalArgumentException.class, () -> SplitTuning.pick(choices, new double[4], 3));
    }

    @Test
    void cachedCountsAreTakenOnlyWhereTheyStillFit() {
        int[] slices = {0, 4, 0, 16};
        java.util.function.IntFunction<List<Integer>> choices = k -> k == 1 ? List.of(1, 2, 4) : k == 3 ? List.of(1, 8, 16) : List.of();
        assertEquals("1:4,3:16", SplitTuning.format(slices));
        assertArrayEquals(slices, SplitTuning.parse("1:4,3:16", 4, choices));
        assertNull(SplitTuning.parse(null, 4, choices), "no entry");
        assertNull(SplitTuning.parse("1:3,3:16", 4, choices), "3 slices are not on offer");
        assertNull(SplitTuning.parse("1:4", 4, choices), "kernel 3 has a choice but no count");
        assertNull(SplitTuning.parse("1:4,3:16,7:2", 4, choices), "no kernel 7");
        assertNull(SplitTuning.parse("1:4;3:16", 4, choices), "not the format");
        assertArrayEquals(new int[3], SplitTuning.parse("", 3, k -> List.of()), "a program without choices");
    }

    @Test
    void theSettingIsOnOrOff() {
        assertTrue(SplitTuning.SETTING.valueOf(null));
        assertTrue(SplitTuning.SETTING.valueOf("1"));
        assertFalse(SplitTuning.SETTING.valueOf(" 0 "));
        var e = assertThrows(SettingException.class, () -> SplitTuning.SETTING.valueOf("yes"));
        assertEquals("CMC_CUDA_TUNE=yes: expected 1 (time split-K slice counts on the GPU, the default) or 0 (keep the formula's)", e.getMessage());
    }
}
