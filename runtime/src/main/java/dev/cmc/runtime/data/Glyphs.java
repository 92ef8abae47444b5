package dev.cmc.runtime.data;

import java.util.SplittableRandom;

/** glyphs8x8: digit-like 8×8 images drawn from stroke templates, with jitter, stroke weight and noise. */
final class Glyphs {
    private Glyphs() {}

    /** Ten 8×8 templates ('#' is ink), one per digit. */
    private static final String[][] DIGITS = {
        {"..####..", ".#....#.", ".#....#.", ".#....#.", ".#....#.", ".#....#.", ".#....#.", "..####.."},
        {"...##...", "..###...", "...##...", "...##...", "...##...", "...##...", "...##...", "..####.."},
        {"..####..", ".#....#.", "......#.", ".....#..", "....#...", "...#....", "..#.....", ".######."},
        {"..####..", ".#....#.", "......#.", "...###..", "......#.", "......#.", ".#....#.", "..####.."},
        {".....#..", "....##..", "...#.#..", "..#..#..", ".######.", ".....#..", ".....#..", ".....#.."},
        {".######.", ".#......", ".#......", ".#####..", "......#.", "......#.", ".#....#.", "..####.."},
        {"..####..", ".#......", ".#......", ".#####..", ".#....#.", ".#....#.", ".#....#.", "..####.."},
        {".######.", "......#.", ".....#..", "....#...", "...#....", "...#....", "...#....", "...#...."},
        {"..####..", ".#....#.", ".#....#.", "..####..", ".#....#.", ".#....#.", ".#....#.", "..####.."},
        {"..####..", ".#....#.", ".#....#.", "..#####.", "......#.", "......#.", "......#.", "..####.."},
    };

    /** Writes one glyph, pixel values in about [-1, 1] (ink +1, paper -1), into v at offset. */
    static void render(SplittableRandom rng, float[] v, int offset) {
        String[] d = DIGITS[rng.nextInt(10)];
        int dx = rng.nextInt(3) - 1, dy = rng.nextInt(3) - 1;
        double ink = 0.8 + 0.2 * rng.nextDouble();
        for (int y = 0; y < 8; y++) {
            for (int x = 0; x < 8; x++) {
                int sx = x - dx, sy = y - dy;
                boolean on = sx >= 0 && sx < 8 && sy >= 0 && sy < 8 && d[sy].charAt(sx) == '#';
                v[offset + y * 8 + x] = (float) ((on ? ink : -1.0) + 0.05 * rng.nextGaussian());
            }
        }
    }
}
