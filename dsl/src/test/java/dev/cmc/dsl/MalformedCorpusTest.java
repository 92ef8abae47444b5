package dev.cmc.dsl;

import org.junit.jupiter.api.DynamicTest;
import org.junit.jupiter.api.TestFactory;

import java.io.IOException;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.List;
import java.util.regex.Pattern;
import java.util.stream.Stream;

import static org.junit.jupiter.api.Assertions.*;

/**
 * The golden corpus of bad specs: each NAME.cm must fail with diagnostics that name the file, line and
 * column, show the line with a caret, and contain the text in NAME.expected.
 */
class MalformedCorpusTest {
    static final Path CORPUS = Path.of("src/test/resources/malformed");
    static final Pattern LOCATION = Pattern.compile("^\\S+\\.cm:\\d+:\\d+: error: .+", Pattern.MULTILINE);

    @TestFactory
    Stream<DynamicTest> everyMalformedSpecGetsACleanDiagnostic() throws IOException {
        List<Path> specs;
        try (var files = Files.list(CORPUS)) {
            specs = files.filter(p -> p.toString().endsWith(".cm")).sorted().toList();
        }
        assertTrue(specs.size() >= 30, "the corpus needs at least 30 malformed specs, has " + specs.size());
        return specs.stream().map(spec -> DynamicTest.dynamicTest(spec.getFileName().toString(), () -> {
            String expected = Files.readString(Path.of(spec.toString().replace(".cm", ".expected"))).trim();
            var e = assertThrows(SpecException.class, () -> SpecLoader.fromFile(spec, List.of()));
            String text = e.render();
            assertTrue(LOCATION.matcher(text).find(), "no file:line:col diagnostic in:\n" + text);
            assertTrue(text.contains("^"), "no caret in:\n" + text);
            assertTrue(text.contains(expected), "expected '" + expected + "' in:\n" + text);
            for (Diagnostic d : e.diagnostics()) {
                assertTrue(d.position().line() >= 1 && d.position().column() >= 1, "bad position " + d.position());
            }
        }));
    }
}
