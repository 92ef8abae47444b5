package dev.cmc.runtime.train;

import dev.cmc.runtime.api.ConsistencyModel;

import java.io.IOException;
import java.nio.ByteBuffer;
import java.nio.ByteOrder;
import java.nio.channels.FileChannel;
import java.nio.charset.StandardCharsets;
import java.nio.file.*;
import java.util.LinkedHashMap;
import java.util.Map;
import java.util.regex.Matcher;
import java.util.regex.Pattern;

/**
 * Checkpoints in the safetensors format: an 8-byte little-endian header length, a JSON header naming each
 * tensor's dtype, shape and byte range, then the raw data. Tensors: params, ema, target, adam_m, adam_v (F32,
 * flat). Metadata: the step, the RNG state (seed and step), the spec's text. Written to a temporary file, fsynced, then renamed into place.
 */
public final class Checkpoint {
    private Checkpoint() {}

    private static final String[] TENSORS = {"params", "ema", "target", "adam_m", "adam_v"};

    public static void save(ConsistencyModel model, Path path) throws IOException {
        Map<String, float[]> tensors = new LinkedHashMap<>();
        tensors.put("params", model.params());
        tensors.put("ema", model.ema());
        tensors.put("target", model.target());
        tensors.put("adam_m", model.adamM());
        tensors.put("adam_v", model.adamV());
        // The RNG state is (train.seed, step): each step draws from a stream derived from both (Trainer.streamFor).
        var header = new StringBuilder("{\"__metadata__\":{\"format\":\"cmc\",\"step\":\"" + model.step() + "\",\"rng\":\"seed="
                + model.spec().train().seed() + ",step=" + model.step() + "\",\"spec\":")
                .append(jsonString(model.spec().source())).append("}");
        long offset = 0;
        for (var e : tensors.entrySet()) {
            long bytes = 4L * e.getValue().length;
            header.append(",\"").append(e.getKey()).append("\":{\"dtype\":\"F32\",\"shape\":[").append(e.getValue().length)
                  .append("],\"data_offsets\":[").append(offset).append(",").append(offset + bytes).append("]}");
            offset += bytes;
        }
        header.append("}");
        while ((header.length() + 8) % 8 != 0) header.append(' ');
        byte[] h = header.toString().getBytes(StandardCharsets.UTF_8);
        Path tmp = path.resolveSibling("." + path.getFileName() + ".tmp");
        try (FileChannel ch = FileChannel.open(tmp, StandardOpenOption.CREATE, StandardOpenOption.WRITE, StandardOpenOption.TRUNCATE_EXISTING)) {
            ByteBuffer len = ByteBuffer.allocate(8).order(ByteOrder.LITTLE_ENDIAN).putLong(h.length).flip();
            while (len.hasRemaining()) ch.write(len);
            ByteBuffer hb = ByteBuffer.wrap(h);
            while (hb.hasRemaining()) ch.write(hb);
            for (float[] t : tensors.values()) {
                ByteBuffer data = ByteBuffer.allocate(4 * t.length).order(ByteOrder.LITTLE_ENDIAN);
                data.asFloatBuffer().put(t);
                while (data.hasRemaining()) ch.write(data);
            }
            ch.force(true);
        }
        Files.move(tmp, path, StandardCopyOption.REPLACE_EXISTING, StandardCopyOption.ATOMIC_MOVE);
    }

    /** A checkpoint file read whole: its bytes and its JSON header. */
    private record File(Path path, byte[] bytes, long headerLength, String header) {
        static File read(Path path) throws IOException {
            if (!Files.isRegularFile(path)) throw new IOException(path + ": no such checkpoint file");
            byte[] bytes = Files.readAllBytes(path);
            if (bytes.length < 8) throw new IOException(path + ": not a safetensors file (too short)");
            long hlen = ByteBuffer.wrap(bytes, 0, 8).order(ByteOrder.LITTLE_ENDIAN).getLong();
            if (hlen <= 0 || 8 + hlen > bytes.length) throw new IOException(path + ": not a safetensors file (bad header length)");
            return new File(path, bytes, hlen, new String(bytes, 8, (int) hlen, StandardCharsets.UTF_8));
        }

        /** Copies the F32 tensor into dst, which must have exactly its length. */
        void tensor(String name, float[] dst, String whose) throws IOException {
            Matcher m = Pattern.compile("\"" + name + "\":\\{\"dtype\":\"F32\",\"shape\":\\[(\\d+)],\"data_offsets\":\\[(\\d+),(\\d+)]").matcher(header);
            if (!m.find()) throw new IOException(path + ": no tensor '" + name + "' (not a cmc checkpoint?)");
            int n = Integer.parseInt(m.group(1));
            if (n != dst.length) throw new IOException(path + ": tensor '" + name + "' has " + n + " values but " + whose + " has " + dst.length);
            long start = 8 + headerLength + Long.parseLong(m.group(2));
            if (start + 4L * n > bytes.length) throw new IOException(path + ": truncated: tensor '" + name + "' runs past the end of the file");
            ByteBuffer.wrap(bytes, (int) start, 4 * n).order(ByteOrder.LITTLE_ENDIAN).asFloatBuffer().get(dst);
        }
    }

    /** Loads weights, optimizer state and step into the model; fails clearly if shapes do not match. */
    public static void load(ConsistencyModel model, Path path) throws IOException {
        File file = File.read(path);
        Map<String, float[]> into = Map.of("params", model.params(), "ema", model.ema(), "target", model.target(),
                "adam_m", model.adamM(), "adam_v", model.adamV());
        for (String name : TENSORS) file.tensor(name, into.get(name), "this spec's model");
        model.weightsChanged();
        Matcher step = Pattern.compile("\"step\":\"(\\d+)\"").matcher(file.header());
        if (step.find()) model.setStep(Long.parseLong(step.group(1)));
    }

    /** The spec text a checkpoint was written with (its metadata), e.g. to rebuild a distillation teacher. */
    public static String specText(Path path) throws IOException {
        String header = File.read(path).header();
        Matcher m = Pattern.compile("\"spec\":\"((?:[^\"\\\\]|\\\\.)*)\"").matcher(header);
        if (!m.find()) throw new IOException(path + ": no spec in its metadata (not a cmc checkpoint?)");
        var out = new StringBuilder();
        String s = m.group(1);
        for (int i = 0; i < s.length(); i++) {
            char c = s.charAt(i);
            if (c != '\\' || i + 1 >= s.length()) { out.append(c); continue; }
            char n = s.charAt(++i);
            switch (n) {
                case 'n' -> out.append('\n');
                case 'r' -> out.append('\r');
                case 't' -> out.append('\t');
                case 'u' -> { out.append((char) Integer.parseInt(s.substring(i + 1, i + 5), 16)); i += 4; }
                default -> out.append(n);
            }
        }
        return out.toString();
    }

    /** The EMA weights of a checkpoint, for a teacher: what its own sampler uses. */
    public static float[] emaWeights(Path path, int count) throws IOException {
        float[] w = new float[count];
        File.read(path).tensor("ema", w, "its spec's model");
        return w;
    }

    static String jsonString(String s) {
        var out = new StringBuilder("\"");
        for (char c : s.toCharArray()) {
            switch (c) {
                case '"' -> out.append("\\\"");
                case '\\' -> out.append("\\\\");
                case '\n' -> out.append("\\n");
                case '\r' -> out.append("\\r");
                case '\t' -> out.append("\\t");
                default -> { if (c < 0x20) out.append(String.format("\\u%04x", (int) c)); else out.append(c); }
            }
        }
        return out.append('"').toString();
    }
}
