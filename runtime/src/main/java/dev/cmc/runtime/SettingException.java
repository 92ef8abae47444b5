package dev.cmc.runtime;

/** An environment setting cmc reads (CMC_CUDA_TILES, ...) holds a value it cannot use: the message names it and what is valid. */
public final class SettingException extends IllegalArgumentException {
    public SettingException(String message) { super(message); }
}
