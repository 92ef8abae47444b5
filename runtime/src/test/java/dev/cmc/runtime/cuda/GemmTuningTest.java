package dev.cmc.runtime.cuda;

import dev.cmc.runtime.SettingException;
import org.junit.jupiter.api.Test;

import java.util.List;

import static org.junit.jupiter.api.Assertions.*;

/**
 * How the timed launches are chosen and kept: the formula's choice stands unless another is 3% faster, and a
 * cache entry is taken only where every choice still fits the program (see FakeDriverTest for the runtime timing
 * them on a GPU's driver, and SplitKTest for the counts on offer).
 */
class GemmTuningTest {
    @Test
    void theFastestChoiceWinsOnlyByTheMargin() {
        var choices = List.of(1, 2, 4, 8);
        assertEquals(2, GemmTuning.pick(choices, new double[]{0.030, 0.020, 0.025, 0.028}, 8));
        assertEquals(8, GemmTuning.pick(choices, new double[]{0.030, 0.0275, 0.029, 0.028}, 8), "2% faster is noise");
        assertEquals(1, GemmTuning.pick(choices, new double[]{0.010, 0.0275, 0.029, 0.028}, 4));
        assertEquals(4, GemmTuning.pick(choices, new double[]{0.010, 0.010, 0.010, 0.010}, 4), "ties keep the formula's");
        assertThrows(IllegalArgumentException.class, () -> GemmTuning.pick(choices, new double[4], 3));
        var tiles = List.of("4", "2", "4@wgmma-mixed-cluster", "2@wgmma-mixed-cluster");
        assertEquals("2@wgmma-mixed-cluster", GemmTuning.pick(tiles, new double[]{0.040, 0.030, 0.031, 0.020}, "4"));
        assertEquals("4", GemmTuning.pick(tiles, new double[]{0.040, 0.040, 0.039, 0.0395}, "4"), "a variant 2.5% faster is noise too");
    }

    @Test
    void cachedChoicesAreTakenOnlyWhereTheyStillFit() {
        String[] chosen = {null, "4", null, "16@wgmma-mixed-cluster"};
        java.util.function.IntFunction<List<String>> choices = k -> k == 1 ? List.of("1", "2", "4")
                : k == 3 ? List.of("1", "8", "16", "8@wgmma-mixed-cluster", "16@wgmma-mixed-cluster") : List.of();
        assertEquals("1:4,3:16@wgmma-mixed-cluster", GemmTuning.format(chosen));
        assertArrayEquals(chosen, GemmTuning.parse("1:4,3:16@wgmma-mixed-cluster", 4, choices));
        assertArrayEquals(new String[]{null, "4", null, "16"}, GemmTuning.parse("1:4, 3:16", 4, choices), "split-K counts alone, as before tiles were timed");
        assertNull(GemmTuning.parse(null, 4, choices), "no entry");
        assertNull(GemmTuning.parse("1:3,3:16", 4, choices), "3 slices are not on offer");
        assertNull(GemmTuning.parse("1:4,3:16@wgmma-mixed-early", 4, choices), "nor is that tiling");
        assertNull(GemmTuning.parse("1:4", 4, choices), "kernel 3 has a choice but none kept");
        assertNull(GemmTuning.parse("1:4,3:16,7:2", 4, choices), "no kernel 7");
        assertNull(GemmTuning.parse("1:4;3:16", 4, choices), "not the format");
        assertNull(GemmTuning.parse("1:4:2,3:16", 4, choices), "not the format either");
        assertArrayEquals(new String[3], GemmTuning.parse("", 3, k -> List.of()), "a program without choices");
    }

    @Test
    void theSettingsAreOnOrOff() {
        assertTrue(GemmTuning.SETTING.valueOf(null));
        assertTrue(GemmTuning.SETTING.valueOf("1"));
        assertFalse(GemmTuning.SETTING.valueOf(" 0 "));
        var e = assertThrows(SettingException.class, () -> GemmTuning.SETTING.valueOf("yes"));
        assertEquals("CMC_CUDA_TUNE=yes: expected 1 (time split-K slice counts on the GPU, the default) or 0 (keep the formula's)", e.getMessage());
        assertFalse(GemmTuning.TILES.valueOf(null), "tiles are timed only when asked for");
        assertTrue(GemmTuning.TILES.valueOf("1"));
        e = assertThrows(SettingException.class, () -> GemmTuning.TILES.valueOf("tiles"));
        assertEquals("CMC_CUDA_TUNE_TILES=tiles: expected 1 (time each GEMM's tile variants too) or 0 (keep the default tiling's tiles, the default)", e.getMessage());
    }
}
