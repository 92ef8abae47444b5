package dev.cmc.dsl.schema;

import dev.cmc.dsl.ast.Value;

import java.util.List;

/** What a key accepts. {@link #check} returns null when the value fits, else what would be valid. */
public sealed interface KeyType {
    String check(Value v);

    /** An integer in [min, max]. */
    record Int(long min, long max) implements KeyType {
        public String check(Value v) {
            if (!(v instanceof Value.Num n) || !n.integral()) return "expected an integer, got " + v.kindName();
            if (n.value() < min || n.value() > max) return "must be " + range(min, max) + ", got " + n.text();
            return null;
        }
    }

    /** A real number in the interval; open or closed at each end. */
    record Real(double min, boolean minOpen, double max, boolean maxOpen) implements KeyType {
        public String check(Value v) {
            if (!(v instanceof Value.Num n)) return "expected a number, got " + v.kindName();
            double x = n.value();
            boolean low = minOpen ? x > min : x >= min;
            boolean high = maxOpen ? x < max : x <= max;
            if (!low || !high) return "must be in " + (minOpen ? "(" : "[") + fmt(min) + ", " + fmt(max) + (maxOpen ? ")" : "]") + ", got " + n.text();
            return null;
        }
    }

    /** One of a few identifiers. */
    record OneOf(List<String> options) implements KeyType {
        public String check(Value v) {
            String name = v instanceof Value.Ident i ? i.name() : v instanceof Value.Str s ? s.value() : v instanceof Value.Auto ? "auto" : null;
            if (name == null || !options.contains(name)) {
                String hint = name == null ? "" : Suggest.didYouMean(name, options);
                return "expected one of " + String.join(" | ", options) + ", got " + (name == null ? v.kindName() : "'" + name + "'") + hint;
            }
            return null;
        }
    }

    record Text() implements KeyType {
        public String check(Value v) {
            return v instanceof Value.Str ? null : "expected a \"string\", got " + v.kindName();
        }
    }

    record Flag() implements KeyType {
        public String check(Value v) {
            return v instanceof Value.Bool ? null : "expected true or false, got " + v.kindName();
        }
    }

    /** A non-empty list of positive numbers. */
    record Reals() implements KeyType {
        public String check(Value v) {
            if (!(v instanceof Value.ListOf l)) return "expected a list of numbers such as [80.0, 0.8], got " + v.kindName();
            if (l.items().isEmpty()) return "expected at least one number in the list";
            for (Value item : l.items()) {
                if (!(item instanceof Value.Num n)) return "expected a list of numbers, but one item is " + item.kindName();
                if (!(n.value() > 0)) return "every item must be > 0, got " + n.text();
            }
            return null;
        }
    }

    /** Either auto or the inner type. */
    record OrAuto(KeyType inner) implements KeyType {
        public String check(Value v) {
            if (v instanceof Value.Auto) return null;
            String problem = inner.check(v);
            return problem == null ? null : problem + " (or auto)";
        }
    }

    private static String range(long min, long max) {
        if (max == Long.MAX_VALUE) return ">= " + min;
        return "in [" + min + ", " + max + "]";
    }

    private static String fmt(double d) {
        if (Double.isInfinite(d)) return d > 0 ? "inf" : "-inf";
        return d == Math.rint(d) && Math.abs(d) < 1e15 ? Long.toString((long) d) : Double.toString(d);
    }
}
