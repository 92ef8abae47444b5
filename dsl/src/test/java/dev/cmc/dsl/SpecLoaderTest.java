package dev.cmc.dsl;

import org.junit.jupiter.api.Test;

import java.util.List;

import static org.junit.jupiter.api.Assertions.*;

class SpecLoaderTest {
    static final String SEED = """
            model seed_default {
                input_dim   = 64;      // required
                hidden_size = 256;
                num_layers  = 4;       // residual blocks
                sigma_min   = 0.002;
                sigma_max   = 80.0;
            }
            """;

    @Test
    void theSeedSpecMeansTheSeedDefaults() {
        Spec s = SpecLoader.fromText("seed.cm", SEED);
        assertEquals("seed_default", s.name());
        var m = s.model();
        assertEquals(64, m.inputDim());
        assertEquals(256, m.hiddenSize());
        assertEquals(4, m.numLayers());
        assertEquals(0.002, m.sigmaMin());
        assertEquals(80.0, m.sigmaMax());
        assertEquals(0.5, m.sigmaData());
        assertEquals(4, m.expansion());
        assertEquals("silu", m.activation());
        assertEquals("edm", m.inputScaling());
        assertEquals(40, s.schedule().nSteps());
        assertEquals(7.0, s.schedule().rho());
        assertEquals("ct", s.train().method());
        assertEquals(0.00054 * 8, s.train().huberC(), 1e-12);
        assertEquals(0.9, s.train().mu0());
        assertEquals(2, s.train().s0());
        assertEquals(150, s.train().s1());
        assertEquals("auto", s.target().backend());
    }

    @Test
    void ictChangesTheAutoCurriculum() {
        Spec s = SpecLoader.fromText("x.cm", SEED + "train { method = ict; }");
        assertEquals(0.0, s.train().mu0());
        assertEquals(10, s.train().s0());
        assertEquals(1280, s.train().s1());
    }

    @Test
    void valuesOfEveryKind() {
        Spec s = SpecLoader.fromText("x.cm", SEED + """
                /* block comment */
                train { lr = 2e-4; huber_c = auto; grad_clip = 1; }
                sample { sigmas = [80, 0.8, 0.01,]; seed = 3; }
                data { source = "builtin:glyphs8x8"; normalize = true; }
                """);
        assertEquals(2e-4, s.train().lr());
        assertEquals(List.of(80.0, 0.8, 0.01), s.sample().sigmas());
        assertEquals(3, s.sample().steps());
        assertTrue(s.data().normalize());
    }

    @Test
    void setOverridesReplaceAndAdd() {
        Spec s = SpecLoader.fromText("x.cm", SEED, List.of("train.steps=500", "model.hidden_size=128", "data.source=builtin:glyphs8x8",
                "target.backend=jvm"));
        assertEquals(500, s.train().steps());
        assertEquals(128, s.model().hiddenSize());
        assertEquals("builtin:glyphs8x8", s.data().source());
        assertEquals("jvm", s.target().backend());
    }

    @Test
    void badOverridesNameTheFlag() {
        var e = assertThrows(SpecException.class, () -> SpecLoader.fromText("x.cm", SEED, List.of("train.stepz=5")));
        assertTrue(e.render().startsWith("--set train.stepz=5: error: unknown key 'stepz'"), e.render());
        assertTrue(e.render().contains("did you mean 'steps'"), e.render());
        e = assertThrows(SpecException.class, () -> SpecLoader.fromText("x.cm", SEED, List.of("train.steps=-5")));
        assertTrue(e.render().contains("--set train.steps=-5"), e.render());
        e = assertThrows(SpecException.class, () -> SpecLoader.fromText("x.cm", SEED, List.of("steps=5")));
        assertTrue(e.render().contains("expected --set block.key=value"), e.render());
    }

    @Test
    void allErrorsAreReportedAtOnceInSourceOrder() {
        var e = assertThrows(SpecException.class, () -> SpecLoader.fromText("x.cm", """
                model m { input_dim = 0; hidden_size = 7; }
                train { lr = 0; stepz = 3; }
                """));
        assertEquals(4, e.diagnostics().size(), e.render());
        assertEquals(1, e.diagnostics().getFirst().position().line());
        assertEquals(23, e.diagnostics().getFirst().position().column());
    }

    @Test
    void missingFileAndFolderAreOneLine() {
        var e = assertThrows(SpecException.class, () -> SpecLoader.fromFile(java.nio.file.Path.of("no/such.cm"), List.of()));
        assertEquals("no/such.cm: error: no such file\n1 error", e.render());
        e = assertThrows(SpecException.class, () -> SpecLoader.fromFile(java.nio.file.Path.of("src"), List.of()));
        assertTrue(e.render().contains("is a folder"), e.render());
    }
}
