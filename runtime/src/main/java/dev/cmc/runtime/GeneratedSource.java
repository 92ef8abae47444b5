package dev.cmc.runtime;

import java.io.IOException;
import java.nio.file.Files;
import java.nio.file.Path;

/** Where a device runtime keeps generated source that its driver refused, so the error can point at it. */
public final class GeneratedSource {
    private GeneratedSource() {}

    /** Saves text to a temporary file named after the program; returns its path, or why it could not. */
    public static String saveForDiagnosis(String program, String extension, String text) {
        try {
            Path file = Files.createTempFile("cmc-" + program + "-", extension);
            Files.writeString(file, text);
            return file.toString();
        } catch (IOException e) {
            return "(could not save it: " + e.getMessage() + ")";
        }
    }
}
