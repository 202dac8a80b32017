"""Label Studio's brush RLE: the format of `brushlabels` regions (`value.format: "rle"`).

Label Studio stores a brush mask as the flattened RGBA image (height x width x 4 bytes,
row-major, 255 where painted) compressed as a bit stream: a header of 32 bits (number of
values), 5 bits (word size - 1 = 7) and 4 x 4 bits (the four run-length field sizes - 1),
then runs of `1 bit repeat flag, 2 bits field size index, length - 1, value(s)`. Only
repeat runs are written here (a mask is long runs of 0 and 255); the decoder Label Studio
ships (label_studio_sdk.converter.brush.decode_rle) reads them back exactly
(tests/tools/test_labelstudio.py).
"""
from __future__ import annotations

import numpy as np

WORD_BITS = 8
FIELD_BITS = (3, 4, 8, 16)


def _bits(value: int, width: int) -> str:
    return format(value, f"0{width}b")


def encode(mask: np.ndarray) -> list[int]:
    """Label Studio brush RLE (a list of byte values) of a 2-D mask (non-zero = painted)."""
    if mask.ndim != 2:
        raise ValueError("mask must be 2-D")
    flat = np.repeat(np.where(mask.ravel() > 0, 255, 0).astype(np.uint8), 4)
    n = flat.size
    out = [_bits(n, 32), _bits(WORD_BITS - 1, 5)] + [_bits(b - 1, 4) for b in FIELD_BITS]
    if n:
        change = np.flatnonzero(flat[1:] != flat[:-1]) + 1
        starts = np.concatenate(([0], change))
        lengths = np.diff(np.concatenate((starts, [n])))
        longest = 1 << FIELD_BITS[-1]
        for start, length in zip(starts.tolist(), lengths.tolist(), strict=False):
            value = _bits(int(flat[start]), WORD_BITS)
            while length:
                chunk = min(length, longest)
                index = next(i for i, b in enumerate(FIELD_BITS) if chunk - 1 < (1 << b))
                out.append("1" + _bits(index, 2) + _bits(chunk - 1, FIELD_BITS[index]) + value)
                length -= chunk
    bits = "".join(out)
    bits += "0" * (-len(bits) % 8)
    return [int(bits[i:i + 8], 2) for i in range(0, len(bits), 8)]
