package dev.cmc.dsl.ast;

import java.util.List;

/** A parsed .cm file: its name, its text (for diagnostics) and its blocks, before validation. */
public record SpecFile(String fileName, String source, List<Block> blocks) {}
