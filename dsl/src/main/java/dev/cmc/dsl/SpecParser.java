package dev.cmc.dsl;

import dev.cmc.dsl.ast.Block;
import dev.cmc.dsl.ast.Entry;
import dev.cmc.dsl.ast.SpecFile;
import dev.cmc.dsl.ast.Value;
import dev.cmc.dsl.grammar.CmLexer;
import dev.cmc.dsl.grammar.CmParser;
import org.antlr.v4.runtime.*;

import java.util.ArrayList;
import java.util.List;

/** Text to AST. Collects every syntax error before giving up, so the user sees them all at once. */
public final class SpecParser {
    private SpecParser() {}

    public static SpecFile parse(String fileName, String source) {
        var errors = new ArrayList<Diagnostic>();
        CmParser parser = parserFor(fileName, source, errors);
        CmParser.FileContext tree = parser.file();
        if (!errors.isEmpty()) throw new SpecException(errors, source);
        var blocks = new ArrayList<Block>();
        for (CmParser.BlockContext b : tree.block()) blocks.add(block(fileName, b));
        return new SpecFile(fileName, source, blocks);
    }

    /** Parses the text of one value, as given to {@code --set key=VALUE}; {@code where} names the flag. */
    public static Value parseValue(String where, String text) {
        var errors = new ArrayList<Diagnostic>();
        CmParser parser = parserFor(where, text, errors);
        CmParser.LoneValueContext ctx = parser.loneValue();
        if (!errors.isEmpty()) {
            throw new SpecException(List.of(new Diagnostic(Position.flag(where),
                    "cannot read '" + text + "' as a value: expected a number, a \"string\", an identifier, true, false, auto or [a, list]")), null);
        }
        return value(where, ctx.value());
    }

    private static CmParser parserFor(String fileName, String source, List<Diagnostic> errors) {
        var listener = new BaseErrorListener() {
            @Override
            public void syntaxError(Recognizer<?, ?> recognizer, Object offending, int line, int col, String msg, RecognitionException e) {
                int length = 1;
                String text = null;
                if (offending instanceof Token t && t.getType() != Token.EOF) {
                    length = Math.max(1, t.getStopIndex() - t.getStartIndex() + 1);
                    text = t.getText();
                }
                // "missing ';'" belongs right after the token it should follow, not at the next line's token.
                if (msg.startsWith("missing") && recognizer instanceof Parser p && p.getTokenStream().LT(-1) != null) {
                    Token prev = p.getTokenStream().LT(-1);
                    String what = msg.replaceAll("^missing (.*) at .*$", "$1");
                    errors.add(new Diagnostic(new Position(fileName, prev.getLine(), prev.getCharPositionInLine() + prev.getText().length() + 1, 1),
                            "missing " + what + " after '" + prev.getText() + "'"));
                    return;
                }
                errors.add(new Diagnostic(new Position(fileName, line, col + 1, length), friendly(msg, text)));
            }
        };
        var lexer = new CmLexer(CharStreams.fromString(source, fileName));
        lexer.removeErrorListeners();
        lexer.addErrorListener(listener);
        var parser = new CmParser(new CommonTokenStream(lexer));
        parser.removeErrorListeners();
        parser.addErrorListener(listener);
        return parser;
    }

    /** ANTLR's messages name token types; say it the way a user reads the file. */
    private static String friendly(String msg, String offendingText) {
        if ("\"".equals(offendingText)) return "unterminated string: a \"string\" must close on the same line";
        if ("/".equals(offendingText)) return "unexpected '/': comments are // to the end of the line or /* ... */ (is a /* comment unclosed?)";
        String m = msg.replace("<EOF>", "end of file").replace("NUMBER", "a number").replace("IDENT", "a name")
                .replace("STRING", "a string").replace("ERROR_CHAR", "a character");
        if (m.startsWith("token recognition error")) return m.replace("token recognition error at:", "unexpected character");
        if (m.startsWith("extraneous input") || m.startsWith("mismatched input") || m.startsWith("no viable alternative")
                || m.startsWith("missing")) {
            if (offendingText != null && offendingText.length() == 1 && !Character.isLetterOrDigit(offendingText.charAt(0))
                    && "{}[]=;,\"".indexOf(offendingText.charAt(0)) < 0) {
                return "unexpected character '" + offendingText + "'";
            }
            return "syntax error: " + m + " (a block is NAME [LABEL] { key = value; ... })";
        }
        return m;
    }

    private static Block block(String file, CmParser.BlockContext b) {
        var entries = new ArrayList<Entry>();
        for (CmParser.EntryContext e : b.entry()) {
            entries.add(new Entry(e.key.getText(), Position.of(file, e.key), value(file, e.value())));
        }
        return new Block(b.kind.getText(), Position.of(file, b.kind), b.label == null ? null : b.label.getText(), entries);
    }

    private static Value value(String file, CmParser.ValueContext v) {
        Position at = Position.of(file, v.getStart());
        return switch (v) {
            case CmParser.NumberContext n -> {
                String text = n.getText();
                boolean integral = !text.contains(".") && !text.contains("e") && !text.contains("E");
                yield new Value.Num(new Position(file, at.line(), at.column(), text.length()), text, Double.parseDouble(text), integral);
            }
            case CmParser.StringContext s -> {
                String raw = s.getText();
                yield new Value.Str(new Position(file, at.line(), at.column(), raw.length()), unescape(raw.substring(1, raw.length() - 1)));
            }
            case CmParser.TrueContext t -> new Value.Bool(at, true);
            case CmParser.FalseContext f -> new Value.Bool(at, false);
            case CmParser.AutoContext a -> new Value.Auto(at);
            case CmParser.IdentContext i -> new Value.Ident(at, i.getText());
            case CmParser.ListContext l -> {
                var items = new ArrayList<Value>();
                for (CmParser.ValueContext item : l.value()) items.add(value(file, item));
                yield new Value.ListOf(at, items);
            }
            default -> throw new IllegalStateException("unhandled value " + v.getClass());
        };
    }

    private static String unescape(String s) {
        var out = new StringBuilder();
        for (int i = 0; i < s.length(); i++) {
            char c = s.charAt(i);
            if (c == '\\' && i + 1 < s.length()) {
                char n = s.charAt(++i);
                out.append(switch (n) { case 'n' -> '\n'; case 't' -> '\t'; default -> n; });
            } else out.append(c);
        }
        return out.toString();
    }
}
