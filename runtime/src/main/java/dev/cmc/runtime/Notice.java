package dev.cmc.runtime;

/**
 * A line for the user on stderr from deep inside a run (a driver's refusal survived, slice counts timed). On a
 * terminal it clears the line first and starts at its beginning, so that it does not run on from the progress
 * bar that `cmc train` or `cmc bench` is drawing there; the bar redraws on the next line.
 */
public final class Notice {
    private static final boolean TERMINAL = System.console() != null && System.console().isTerminal();

    private Notice() {}

    public static void say(String line) {
        System.err.println((TERMINAL ? "\r\033[2K" : "") + line);
    }
}
