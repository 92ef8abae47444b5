package dev.cmc.dsl;

import java.util.List;

/** Every problem found in a spec at once; rendered against its source for the user, never as a stack trace. */
public final class SpecException extends RuntimeException {
    private final List<Diagnostic> diagnostics;
    private final String source;

    public SpecException(List<Diagnostic> diagnostics, String source) {
        super(diagnostics.size() + " error(s), first: " + diagnostics.getFirst().position() + ": " + diagnostics.getFirst().message());
        this.diagnostics = List.copyOf(diagnostics);
        this.source = source;
    }

    public List<Diagnostic> diagnostics() {
        return diagnostics;
    }

    /** All diagnostics, each with its source line and caret, and a count at the end. */
    public String render() {
        var out = new StringBuilder();
        for (Diagnostic d : diagnostics) out.append(d.render(source)).append('\n');
        out.append(diagnostics.size()).append(diagnostics.size() == 1 ? " error" : " errors");
        return out.toString();
    }
}
