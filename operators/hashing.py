"""Stable 64-bit mixing shared by the hashed-feature operators (DSIR buckets, MinHash shingles)."""

from __future__ import annotations

import numpy as np


def fmix64(h: np.ndarray) -> np.ndarray:
    """MurmurHash3's 64-bit finaliser: a bijection on uint64 that spreads every input bit.

    Unlike Python's salted `hash()` or polars' version-dependent hashing, the
    result is the same in every process, machine and release.
    """
    h = h ^ (h >> np.uint64(33))
    h = h * np.uint64(0xFF51AFD7ED558CCD)
    h = h ^ (h >> np.uint64(33))
    h = h * np.uint64(0xC4CEB9FE1A85EC53)
    return h ^ (h >> np.uint64(33))
