package dev.cmc.kernel;

import dev.cmc.ir.Shape;

/**
 * A view of a device array: {@code array} names the allocation, {@code offset} is where this tensor starts in
 * it (parameters share one flat array), {@code shape} is row-major, or column-major when {@code transposed}.
 */
public record Buf(String array, int offset, Shape shape) {
    public static Buf whole(String array, Shape shape) { return new Buf(array, 0, shape); }

    @Override
    public String toString() {
        return array + (offset != 0 ? "@" + offset : "") + shape;
    }
}
