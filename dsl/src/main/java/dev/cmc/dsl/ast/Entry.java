package dev.cmc.dsl.ast;

import dev.cmc.dsl.Position;

/** {@code key = value;} inside a block. */
public record Entry(String key, Position keyPosition, Value value) {}
