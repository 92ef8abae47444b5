package dev.cmc.runtime.data;

import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

import java.nio.ByteBuffer;
import java.nio.ByteOrder;
import java.nio.file.Files;
import java.nio.file.Path;

import static org.junit.jupiter.api.Assertions.*;

class DatasetsTest {
    @Test
    void builtinsAreDeterministicAndFinite() {
        for (String name : new String[]{"swiss_roll", "moons", "eight_gaussians", "checkerboard", "pinwheel", "glyphs8x8"}) {
            var a = Datasets.builtin(name, 500, 4);
            var b = Datasets.builtin(name, 500, 4);
            assertArrayEquals(a.values(), b.values(), name);
            double sq = 0;
            for (float v : a.values()) { assertTrue(Float.isFinite(v), name); sq += v * v; }
            double rms = Math.sqrt(sq / a.values().length);
            assertTrue(rms > 0.2 && rms < 2, name + " rms " + rms);
        }
    }

    @Test
    void csvAndNpyRoundTrip(@TempDir Path dir) throws Exception {
        Path csv = dir.resolve("d.csv");
        Files.writeString(csv, "x,y\n1,2\n3.5,-4\n");
        var d = Datasets.csv(csv);
        assertEquals(2, d.n());
        assertArrayEquals(new float[]{1, 2, 3.5f, -4}, d.values());
        for (String dtype : new String[]{"<f4", "<f8"}) {
            Path npy = dir.resolve("d" + dtype.charAt(2) + ".npy");
            Files.write(npy, npy(dtype, new double[]{1, 2, 3.5, -4}, 2, 2));
            assertArrayEquals(new float[]{1, 2, 3.5f, -4}, Datasets.npy(npy).values(), dtype);
        }
    }

    @Test
    void badDataGetsOneClearLineNamingTheFile(@TempDir Path dir) throws Exception {
        Path nan = dir.resolve("nan.csv");
        Files.writeString(nan, "1,2\nNaN,3\n");
        assertMessage(nan, "nan.csv:2: value 1 is NaN");
        Path empty = dir.resolve("empty.csv");
        Files.writeString(empty, "");
        assertMessage(empty, "empty.csv: no data rows");
        Path ragged = dir.resolve("ragged.csv");
        Files.writeString(ragged, "1,2\n3\n");
        assertMessage(ragged, "ragged.csv:2: 1 values, but earlier rows have 2");
        assertMessage(dir.resolve("missing.csv"), "missing.csv: no such file");
        Path folder = dir.resolve("folder.csv");
        Files.createDirectory(folder);
        assertMessage(folder, "folder.csv: is a folder");
        Path notNpy = dir.resolve("x.npy");
        Files.writeString(notNpy, "hello world");
        var e = assertThrows(Datasets.DataException.class, () -> Datasets.npy(notNpy));
        assertTrue(e.getMessage().contains("not a .npy file"), e.getMessage());
    }

    private static void assertMessage(Path csv, String expected) {
        var e = assertThrows(Datasets.DataException.class, () -> Datasets.csv(csv));
        assertTrue(e.getMessage().contains(expected), e.getMessage());
    }

    static byte[] npy(String dtype, double[] v, int rows, int cols) {
        String header = "{'descr': '" + dtype + "', 'fortran_order': False, 'shape': (" + rows + ", " + cols + "), }";
        int pad = 16 - (10 + header.length() + 1) % 16;
        header = header + " ".repeat(pad % 16) + "\n";
        int size = dtype.equals("<f4") ? 4 : 8;
        var buf = ByteBuffer.allocate(10 + header.length() + size * v.length).order(ByteOrder.LITTLE_ENDIAN);
        buf.put((byte) 0x93).put("NUMPY".getBytes()).put((byte) 1).put((byte) 0).putShort((short) header.length()).put(header.getBytes());
        for (double x : v) { if (size == 4) buf.putFloat((float) x); else buf.putDouble(x); }
        return buf.array();
    }
}
