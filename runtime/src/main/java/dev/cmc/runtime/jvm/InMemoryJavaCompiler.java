package dev.cmc.runtime.jvm;

import javax.tools.*;
import java.io.ByteArrayOutputStream;
import java.io.OutputStream;
import java.net.URI;
import java.util.*;

/** Compiles generated Java source in-process with javax.tools and loads the class, nothing on disk. */
public final class InMemoryJavaCompiler {
    private InMemoryJavaCompiler() {}

    /**
     * The JVM's class path plus wherever cmc's own classes were loaded from: generated kernels implement
     * {@link dev.cmc.render.GeneratedKernels}, and an application that embeds cmc (or a test launcher started
     * with -jar) may have loaded it through a class loader that java.class.path does not describe.
     */
    static String classpath() {
        var parts = new java.util.LinkedHashSet<String>(List.of(System.getProperty("java.class.path", "").split(java.io.File.pathSeparator)));
        try {
            var source = dev.cmc.render.GeneratedKernels.class.getProtectionDomain().getCodeSource();
            if (source != null) parts.add(java.nio.file.Path.of(source.getLocation().toURI()).toString());
        } catch (java.net.URISyntaxException | SecurityException | IllegalArgumentException ignored) {
            // fall back to java.class.path alone
        }
        parts.remove("");
        return String.join(java.io.File.pathSeparator, parts);
    }

    public static Class<?> compile(String className, String source) {
        JavaCompiler javac = ToolProvider.getSystemJavaCompiler();
        if (javac == null) throw new IllegalStateException("the jvm backend needs a JDK (javax.tools), but this is a JRE");
        var diagnostics = new DiagnosticCollector<JavaFileObject>();
        var classes = new HashMap<String, ByteArrayOutputStream>();
        JavaFileManager files = new ForwardingJavaFileManager<>(javac.getStandardFileManager(diagnostics, null, null)) {
            @Override
            public JavaFileObject getJavaFileForOutput(Location location, String name, JavaFileObject.Kind kind, FileObject sibling) {
                var bytes = new ByteArrayOutputStream();
                classes.put(name, bytes);
                return new SimpleJavaFileObject(URI.create("mem:///" + name.replace('.', '/') + kind.extension), kind) {
                    @Override public OutputStream openOutputStream() { return bytes; }
                };
            }
        };
        var unit = new SimpleJavaFileObject(URI.create("string:///" + className.replace('.', '/') + ".java"), JavaFileObject.Kind.SOURCE) {
            @Override public CharSequence getCharContent(boolean ignore) { return source; }
        };
        List<String> options = List.of("--add-modules", "jdk.incubator.vector", "-Xlint:-incubating", "-nowarn", "-g:none",
                "-classpath", classpath());
        boolean ok = javac.getTask(null, files, diagnostics, options, null, List.of(unit)).call();
        if (!ok) {
            var msg = new StringBuilder("generated kernel source for " + className + " failed to compile (a cmc bug):");
            for (var d : diagnostics.getDiagnostics()) {
                if (d.getKind() == Diagnostic.Kind.ERROR) msg.append("\n  line ").append(d.getLineNumber()).append(": ").append(d.getMessage(Locale.ROOT));
            }
            throw new IllegalStateException(msg.toString());
        }
        var loader = new ClassLoader(InMemoryJavaCompiler.class.getClassLoader()) {
            @Override
            protected Class<?> findClass(String name) throws ClassNotFoundException {
                ByteArrayOutputStream b = classes.get(name);
                if (b == null) throw new ClassNotFoundException(name);
                byte[] bytes = b.toByteArray();
                return defineClass(name, bytes, 0, bytes.length);
            }
        };
        try {
            return loader.loadClass(className);
        } catch (ClassNotFoundException e) {
            throw new IllegalStateException("compiled " + className + " but cannot load it", e);
        }
    }
}
