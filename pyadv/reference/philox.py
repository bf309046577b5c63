"""Philox4x32-10 in numpy, the reference of csrc/common/philox.h (same counter layout)."""
from __future__ import annotations

import numpy as np

_M0, _M1 = np.uint64(0xD2511F53), np.uint64(0xCD9E8D57)
_W0, _W1 = 0x9E3779B9, 0xBB67AE85
_MASK = np.uint64(0xFFFFFFFF)


def philox4x32_10(c0, c1, c2, c3, k0: int, k1: int):
    """Vectorised over arrays of counter words; returns four uint32 arrays."""
    c = [np.asarray(v, dtype=np.uint64) & _MASK for v in (c0, c1, c2, c3)]
    k0, k1 = np.uint64(k0 & 0xFFFFFFFF), np.uint64(k1 & 0xFFFFFFFF)
    for _ in range(10):
        p0 = _M0 * c[0]
        p1 = _M1 * c[2]
        hi0, lo0 = p0 >> np.uint64(32), p0 & _MASK
        hi1, lo1 = p1 >> np.uint64(32), p1 & _MASK
        c = [hi1 ^ c[1] ^ k0, lo1, hi0 ^ c[3] ^ k1, lo0]
        k0 = np.uint64((int(k0) + _W0) & 0xFFFFFFFF)
        k1 = np.uint64((int(k1) + _W1) & 0xFFFFFFFF)
    return [v.astype(np.uint32) for v in c]


def draw(seed: int, step: int, index, stream: int):
    """The four words for (seed, step, index, stream), index an integer array."""
    index = np.asarray(index, dtype=np.uint64)
    return philox4x32_10(index & _MASK, index >> np.uint64(32), np.full_like(index, step),
                         np.full_like(index, stream), seed & 0xFFFFFFFF, seed >> 32)


def to_unit_float(a) -> np.ndarray:
    return (np.asarray(a, dtype=np.uint32) >> np.uint32(8)).astype(np.float32) * np.float32(1.0 / 16777216.0)


def to_unit_double(a, b) -> np.ndarray:
    x = (np.asarray(a, dtype=np.uint64) << np.uint64(21)) ^ (np.asarray(b, dtype=np.uint64) >> np.uint64(11))
    return (x & np.uint64((1 << 53) - 1)).astype(np.float64) * (1.0 / 9007199254740992.0)


def uniform2(words, dtype):
    """Two uniforms in [0, 1) per draw, as Uniform2<T> in philox.h."""
    if dtype == np.float32:
        return to_unit_float(words[0]), to_unit_float(words[1])
    return to_unit_double(words[0], words[1]), to_unit_double(words[2], words[3])


def below(word, n) -> np.ndarray:
    return ((np.asarray(word, dtype=np.uint64) * np.uint64(n)) >> np.uint64(32)).astype(np.int64)
