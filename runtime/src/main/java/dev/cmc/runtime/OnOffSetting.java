package dev.cmc.runtime;

/**
 * An environment setting that turns something on (1) or off (0), such as CMC_CUDA_PDL or CMC_CUDA_TUNE: unset
 * or blank leaves its default, and any other value is an error that names the setting and what each value does.
 */
public record OnOffSetting(String name, boolean byDefault, String whenOn, String whenOff) {
    /** The setting as this process's environment has it. */
    public boolean value() { return valueOf(System.getenv(name)); }

    public boolean valueOf(String set) {
        if (set == null || set.isBlank()) return byDefault;
        if (set.strip().equals("1")) return true;
        if (set.strip().equals("0")) return false;
        throw new SettingException(name + "=" + set + ": expected 1 (" + whenOn + (byDefault ? ", the default" : "") + ") or 0 ("
                + whenOff + (byDefault ? "" : ", the default") + ")");
    }
}
