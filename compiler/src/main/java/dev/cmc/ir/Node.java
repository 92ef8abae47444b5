package dev.cmc.ir;

import java.util.List;

/**
 * One immutable node of the tensor IR. {@code name} names inputs and parameters; {@code values} holds a
 * constant's data (row-major).
 */
public record Node(int id, Op op, List<Node> inputs, Shape shape, String name, double[] values) {
    public Node in(int i) { return inputs.get(i); }

    @Override
    public boolean equals(Object o) { return o instanceof Node n && n.id == id; }

    @Override
    public int hashCode() { return id; }

    @Override
    public String toString() {
        String label = name != null ? " " + name : values != null && values.length == 1 ? " " + values[0] : "";
        return "%" + id + " = " + op.name().toLowerCase() + label + shape
                + (inputs.isEmpty() ? "" : " " + inputs.stream().map(n -> "%" + n.id()).toList());
    }
}
