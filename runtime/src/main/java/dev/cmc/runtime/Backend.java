package dev.cmc.runtime;

import dev.cmc.kernel.Program;

/** A renderer plus a runtime: turns a program into generated source, and runs it. */
public interface Backend {
    String name();

    /** The generated source files for a program: file name to text. */
    java.util.Map<String, String> render(Program program, String header);

    /** Renders, compiles and loads the program, with batched arrays sized for maxBatch. */
    Executable load(Program program, int maxBatch);
}
