package dev.cmc.dsl;

/** One problem found in a spec, with where it is and what would be valid. */
public record Diagnostic(Position position, String message) {

    /** {@code file:line:col: error: message}, then the source line and a caret under the span. */
    public String render(String source) {
        var out = new StringBuilder(position + ": error: " + message);
        if (position.inFile() && source != null) {
            String[] lines = source.split("\r?\n", -1);
            if (position.line() <= lines.length) {
                String line = lines[position.line() - 1].replace('\t', ' ');
                int col = Math.min(position.column() - 1, line.length());
                int len = Math.max(1, Math.min(position.length(), Math.max(1, line.length() - col)));
                out.append('\n').append("    ").append(line)
                   .append('\n').append("    ").append(" ".repeat(col)).append("^".repeat(len));
            }
        }
        return out.toString();
    }
}
