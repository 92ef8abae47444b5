package dev.cmc.dsl;

import dev.cmc.dsl.ast.Block;
import dev.cmc.dsl.ast.Entry;
import dev.cmc.dsl.ast.SpecFile;
import dev.cmc.dsl.ast.Value;
import dev.cmc.dsl.schema.Schema;
import dev.cmc.dsl.schema.Suggest;

import java.io.IOException;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.List;

/** The front end's driver: read, parse, apply {@code --set} overrides, validate. */
public final class SpecLoader {
    private SpecLoader() {}

    public static Spec fromFile(Path path, List<String> overrides) {
        String name = path.toString();
        if (!Files.exists(path)) throw single(name, "no such file");
        if (Files.isDirectory(path)) throw single(name, "is a folder, not a .cm file");
        String text;
        try {
            text = Files.readString(path, StandardCharsets.UTF_8);
        } catch (IOException | java.io.UncheckedIOException e) {
            throw single(name, "cannot read: " + e.getMessage());
        }
        return fromText(name, text, overrides);
    }

    public static Spec fromText(String fileName, String text) {
        return fromText(fileName, text, List.of());
    }

    public static Spec fromText(String fileName, String text, List<String> overrides) {
        SpecFile file = SpecParser.parse(fileName, text);
        for (String o : overrides) file = override(file, o);
        return Validator.validate(file);
    }

    /** Applies {@code block.key=value}: replaces the key in its block, or adds it (and the block) when absent. */
    static SpecFile override(SpecFile file, String assignment) {
        String flag = "--set " + assignment;
        int eq = assignment.indexOf('=');
        int dot = assignment.indexOf('.');
        if (eq < 0 || dot < 0 || dot > eq) {
            throw single(flag, "expected --set block.key=value, such as --set train.steps=500");
        }
        String block = assignment.substring(0, dot).trim();
        String key = assignment.substring(dot + 1, eq).trim();
        String text = assignment.substring(eq + 1).trim();
        if (Schema.keys(block) == null) {
            throw single(flag, "unknown block '" + block + "'" + Suggest.didYouMean(block, Schema.blocks().keySet())
                    + "; blocks are " + String.join(", ", Schema.blocks().keySet()));
        }
        if (!Schema.keys(block).containsKey(key)) {
            throw single(flag, "unknown key '" + key + "' in block '" + block + "'" + Suggest.didYouMean(key, Schema.keys(block).keySet())
                    + "; keys are " + String.join(", ", Schema.keys(block).keySet()));
        }
        // A bare word that is not a keyword is read as a string, so --set data.source=foo.csv works unquoted.
        Value value;
        try {
            value = SpecParser.parseValue(flag, text);
        } catch (SpecException e) {
            value = new Value.Str(Position.flag(flag), text);
        }
        value = relocate(value, Position.flag(flag));
        if (value instanceof Value.Ident i && Schema.keys(block).get(key).type() instanceof dev.cmc.dsl.schema.KeyType.Text) {
            value = new Value.Str(i.position(), i.name());
        }
        var entry = new Entry(key, Position.flag(flag), value);
        var blocks = new ArrayList<Block>();
        boolean found = false;
        for (Block b : file.blocks()) {
            if (!found && b.kind().equals(block)) {
                found = true;
                var entries = new ArrayList<Entry>();
                for (Entry e : b.entries()) if (!e.key().equals(key)) entries.add(e);
                entries.add(entry);
                blocks.add(new Block(b.kind(), b.kindPosition(), b.label(), entries));
            } else blocks.add(b);
        }
        if (!found) blocks.add(new Block(block, Position.flag(flag), null, List.of(entry)));
        return new SpecFile(file.fileName(), file.source(), blocks);
    }

    /** Errors in an override point at the flag, not at a line of the file. */
    private static Value relocate(Value v, Position p) {
        return switch (v) {
            case Value.Num n -> new Value.Num(p, n.text(), n.value(), n.integral());
            case Value.Str s -> new Value.Str(p, s.value());
            case Value.Ident i -> new Value.Ident(p, i.name());
            case Value.Bool b -> new Value.Bool(p, b.value());
            case Value.Auto a -> new Value.Auto(p);
            case Value.ListOf l -> new Value.ListOf(p, l.items().stream().map(x -> relocate(x, p)).toList());
        };
    }

    private static SpecException single(String where, String message) {
        return new SpecException(List.of(new Diagnostic(Position.flag(where), message)), null);
    }
}
