package dev.cmc.runtime;

import java.lang.foreign.*;
import java.lang.invoke.MethodHandle;
import java.util.Optional;

/**
 * A C library bound through Java's FFM API, the way every device runtime binds its driver: look the library
 * up once, make one downcall handle per function (null where the library or the symbol is missing), and
 * call through one place that says why when it cannot.
 */
public final class NativeLibrary {
    private static final Linker LINKER = Linker.nativeLinker();

    private final Optional<SymbolLookup> lookup;
    private final String whyMissing;

    private NativeLibrary(Optional<SymbolLookup> lookup, String whyMissing) {
        this.lookup = lookup;
        this.whyMissing = whyMissing;
    }

    /** Opens a shared library by name (libOpenCL.so.1, libcuda.so.1); whyMissing is the message when it is absent. */
    public static NativeLibrary open(String name, String whyMissing) {
        try {
            return new NativeLibrary(Optional.of(SymbolLookup.libraryLookup(name, Arena.global())), whyMissing);
        } catch (IllegalArgumentException e) {
            return new NativeLibrary(Optional.empty(), whyMissing);
        }
    }

    public boolean present() { return lookup.isPresent(); }

    public String whyMissing() { return whyMissing; }

    /** A downcall handle, or null if the library or the function is missing. */
    public MethodHandle function(String name, MemoryLayout ret, MemoryLayout... args) {
        return lookup.flatMap(l -> l.find(name)).map(addr -> LINKER.downcallHandle(addr, FunctionDescriptor.of(ret, args))).orElse(null);
    }

    /** Calls a handle of this library, unwrapping what it throws. */
    public Object call(MethodHandle h, Object... args) {
        if (h == null) throw new IllegalStateException(present() ? "the installed library lacks a function cmc needs (too old?)" : whyMissing);
        try {
            return h.invokeWithArguments(args);
        } catch (RuntimeException | Error e) {
            throw e;
        } catch (Throwable t) {
            throw new IllegalStateException(t);
        }
    }
}
