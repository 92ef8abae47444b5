package dev.cmc.dsl.ast;

import dev.cmc.dsl.Position;

import java.util.List;

/** {@code kind [label] { entries }}. */
public record Block(String kind, Position kindPosition, String label, List<Entry> entries) {}
