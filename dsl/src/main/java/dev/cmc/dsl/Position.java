package dev.cmc.dsl;

/** A place in a source file: 1-based line, 1-based column, and the length of the span to underline. */
public record Position(String file, int line, int column, int length) {
    public static Position of(String file, org.antlr.v4.runtime.Token token) {
        int len = token.getStopIndex() >= token.getStartIndex() ? token.getStopIndex() - token.getStartIndex() + 1 : 1;
        return new Position(file, token.getLine(), token.getCharPositionInLine() + 1, Math.max(1, len));
    }

    /** A position for something that did not come from a file, such as a command-line flag. */
    public static Position flag(String flag) {
        return new Position(flag, 0, 0, 0);
    }

    public boolean inFile() {
        return line > 0;
    }

    @Override
    public String toString() {
        return inFile() ? file + ":" + line + ":" + column : file;
    }
}
