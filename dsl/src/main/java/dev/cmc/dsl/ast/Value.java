package dev.cmc.dsl.ast;

import dev.cmc.dsl.Position;

import java.util.List;
import java.util.stream.Collectors;

/** A value on the right of {@code key = value;}, with where it was written. */
public sealed interface Value {
    Position position();

    /** How the user would name this kind of value in an error message. */
    String kindName();

    record Num(Position position, String text, double value, boolean integral) implements Value {
        public String kindName() { return integral ? "an integer" : "a number"; }
        public String toString() { return text; }
    }

    record Str(Position position, String value) implements Value {
        public String kindName() { return "a string"; }
        public String toString() { return '"' + value + '"'; }
    }

    record Ident(Position position, String name) implements Value {
        public String kindName() { return "the identifier '" + name + "'"; }
        public String toString() { return name; }
    }

    record Bool(Position position, boolean value) implements Value {
        public String kindName() { return "a boolean"; }
        public String toString() { return Boolean.toString(value); }
    }

    record Auto(Position position) implements Value {
        public String kindName() { return "'auto'"; }
        public String toString() { return "auto"; }
    }

    record ListOf(Position position, List<Value> items) implements Value {
        public String kindName() { return "a list"; }
        public String toString() { return items.stream().map(Object::toString).collect(Collectors.joining(", ", "[", "]")); }
    }
}
