package dev.cmc.runtime.data;

import dev.cmc.dsl.Spec;

import java.io.IOException;
import java.nio.ByteBuffer;
import java.nio.ByteOrder;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.List;
import java.util.SplittableRandom;

/** Training data: the builtin sets, generated deterministically from a seed, and .csv / .npy files. */
public final class Datasets {
    private Datasets() {}

    /** A data set: n rows of dim floats, row-major. */
    public record Data(int n, int dim, float[] values) {}

    /** Bad data, with the file and what is wrong, for one clear line to the user. */
    public static final class DataException extends RuntimeException {
        public DataException(String message) { super(message); }
    }

    public static Data load(Spec spec, long seed) {
        String src = spec.data().source();
        Data data;
        if (src.startsWith("builtin:")) data = builtin(src.substring(8), spec.data().samples(), seed);
        else if (src.endsWith(".csv")) data = csv(Path.of(src));
        else data = npy(Path.of(src));
        if (data.dim() != spec.model().inputDim()) {
            throw new DataException(src + ": data has dimension " + data.dim() + " but model.input_dim is " + spec.model().inputDim());
        }
        if (spec.data().normalize()) normalize(data, spec.model().sigmaData());
        return data;
    }

    public static Data builtin(String name, int n, long seed) {
        var rng = new SplittableRandom(seed ^ 0x5DEECE66DL);
        int dim = name.equals("glyphs8x8") ? 64 : 2;
        float[] v = new float[n * dim];
        for (int i = 0; i < n; i++) {
            switch (name) {
                case "swiss_roll" -> {
                    double t = 1.5 * Math.PI * (1 + 2 * rng.nextDouble());
                    put(v, i, (t * Math.cos(t) + 0.5 * rng.nextGaussian()) / 10, (t * Math.sin(t) + 0.5 * rng.nextGaussian()) / 10);
                }
                case "moons" -> {
                    double t = Math.PI * rng.nextDouble();
                    boolean upper = rng.nextBoolean();
                    double x = upper ? Math.cos(t) : 1 - Math.cos(t), y = upper ? Math.sin(t) : 0.5 - Math.sin(t);
                    put(v, i, (x - 0.5) / 1.2 + 0.05 * rng.nextGaussian(), (y - 0.25) / 1.2 + 0.05 * rng.nextGaussian());
                }
                case "eight_gaussians" -> {
                    double a = 2 * Math.PI * rng.nextInt(8) / 8;
                    put(v, i, (2 * Math.cos(a) + 0.1 * rng.nextGaussian()) / 2, (2 * Math.sin(a) + 0.1 * rng.nextGaussian()) / 2);
                }
                case "checkerboard" -> {
                    double x = rng.nextDouble() * 4 - 2;
                    double y = rng.nextDouble() - rng.nextInt(2) * 2 + (Math.floor(x) % 2 == 0 ? 1 : 0);
                    put(v, i, x / 2, y / 2);
                }
                case "pinwheel" -> {
                    int arm = rng.nextInt(5);
                    double r = 0.3 * rng.nextGaussian() + 1, t = 0.05 * rng.nextGaussian();
                    double a = 2 * Math.PI * arm / 5 + 0.25 * Math.exp(r);
                    double x = r * Math.cos(a) - t * Math.sin(a), y = r * Math.sin(a) + t * Math.cos(a);
                    put(v, i, x / 2, y / 2);
                }
                case "glyphs8x8" -> Glyphs.render(rng, v, i * 64);
                default -> throw new DataException("builtin:" + name + ": no such builtin data set");
            }
        }
        return new Data(n, dim, v);
    }

    private static void put(float[] v, int i, double x, double y) {
        v[2 * i] = (float) x;
        v[2 * i + 1] = (float) y;
    }

    /** Scales every feature together so the data's standard deviation is sigmaData. */
    static void normalize(Data d, double sigmaData) {
        double sum = 0, sq = 0;
        for (float x : d.values()) { sum += x; sq += (double) x * x; }
        double mean = sum / d.values().length, std = Math.sqrt(Math.max(1e-12, sq / d.values().length - mean * mean));
        for (int i = 0; i < d.values().length; i++) d.values()[i] = (float) ((d.values()[i] - mean) / std * sigmaData);
    }

    public static Data csv(Path path) {
        List<String> lines = readLines(path);
        var rows = new ArrayList<float[]>();
        int dim = -1;
        for (int ln = 0; ln < lines.size(); ln++) {
            String line = lines.get(ln).trim();
            if (line.isEmpty() || line.startsWith("#")) continue;
            String[] parts = line.split("[,;\\s]+");
            float[] row = new float[parts.length];
            for (int j = 0; j < parts.length; j++) {
                if (parts[j].matches("(?i)[+-]?(nan|inf|infinity)")) {
                    throw new DataException(path + ":" + (ln + 1) + ": value " + (j + 1) + " is " + parts[j] + "; data must be finite");
                }
                try {
                    row[j] = Float.parseFloat(parts[j]);
                } catch (NumberFormatException e) {
                    if (rows.isEmpty() && dim < 0) { row = null; break; } // a header line
                    throw new DataException(path + ":" + (ln + 1) + ": '" + parts[j] + "' is not a number");
                }
                if (!Float.isFinite(row[j])) throw new DataException(path + ":" + (ln + 1) + ": value " + (j + 1) + " is " + parts[j] + "; data must be finite");
            }
            if (row == null) { dim = -2; continue; }
            if (rows.isEmpty()) dim = row.length;
            else if (row.length != dim) throw new DataException(path + ":" + (ln + 1) + ": " + row.length + " values, but earlier rows have " + dim);
            rows.add(row);
        }
        if (rows.isEmpty()) throw new DataException(path + ": no data rows");
        dim = rows.getFirst().length;
        float[] v = new float[rows.size() * dim];
        for (int i = 0; i < rows.size(); i++) System.arraycopy(rows.get(i), 0, v, i * dim, dim);
        return new Data(rows.size(), dim, v);
    }

    /** NumPy .npy, version 1–3, little-endian float32 or float64, C order, 1-D or 2-D. */
    public static Data npy(Path path) {
        byte[] bytes = readBytes(path);
        var buf = ByteBuffer.wrap(bytes).order(ByteOrder.LITTLE_ENDIAN);
        if (bytes.length < 10 || bytes[0] != (byte) 0x93 || !new String(bytes, 1, 5).equals("NUMPY")) throw new DataException(path + ": not a .npy file");
        int major = bytes[6];
        int headerLen = major == 1 ? Short.toUnsignedInt(buf.getShort(8)) : buf.getInt(8);
        int start = major == 1 ? 10 : 12;
        String header = new String(bytes, start, Math.min(headerLen, bytes.length - start));
        boolean f4 = header.contains("'<f4'"), f8 = header.contains("'<f8'");
        if (!f4 && !f8) throw new DataException(path + ": dtype must be little-endian float32 or float64; header " + header.trim());
        if (header.contains("'fortran_order': True")) throw new DataException(path + ": Fortran order is not supported; save with C order");
        String shape = header.replaceAll(".*'shape':\\s*\\(([^)]*)\\).*", "$1").trim();
        String[] dims = shape.split(",");
        int n = Integer.parseInt(dims[0].trim());
        int dim = dims.length > 1 && !dims[1].isBlank() ? Integer.parseInt(dims[1].trim()) : 1;
        if (n == 0) throw new DataException(path + ": no data rows");
        int offset = start + headerLen;
        long need = (long) n * dim * (f4 ? 4 : 8);
        if (bytes.length - offset < need) throw new DataException(path + ": file is truncated: shape (" + shape + ") needs " + need + " bytes of data");
        float[] v = new float[n * dim];
        for (int i = 0; i < v.length; i++) {
            v[i] = f4 ? buf.getFloat(offset + 4 * i) : (float) buf.getDouble(offset + 8 * i);
            if (!Float.isFinite(v[i])) throw new DataException(path + ": element " + i + " (row " + (i / dim + 1) + ") is not finite");
        }
        return new Data(n, dim, v);
    }

    private static List<String> readLines(Path path) {
        check(path);
        try {
            return Files.readAllLines(path);
        } catch (IOException e) {
            throw new DataException(path + ": cannot read: " + e.getMessage());
        }
    }

    private static byte[] readBytes(Path path) {
        check(path);
        try {
            return Files.readAllBytes(path);
        } catch (IOException e) {
            throw new DataException(path + ": cannot read: " + e.getMessage());
        }
    }

    private static void check(Path path) {
        if (!Files.exists(path)) throw new DataException(path + ": no such file");
        if (Files.isDirectory(path)) throw new DataException(path + ": is a folder, not a data file");
    }
}
