"""Per-domain weighted histograms of a score in [0, 1]: the selection's global view.

Selection needs corpus-wide facts (a document's quality percentile within its
domain, the expected size of a selection) while documents stream past in
batches. Histograms are built per batch, summed, and then answer those
questions in bounded memory: domains x bins, whatever the corpus size.

Domains are rows of two (domains x bins) arrays, indexed by an integer code:
the domain's position in the sorted `keys`. Sorted, not first-seen, so the
state is the same whatever order batches are added or merged in, and a batch's
domain values map to codes with one binary search.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np


def domain_order(key: str) -> tuple:
    """Sort key for domain names: numbers (cluster ids) in numeric order first, so 2 comes before 10, then the rest."""
    return (0, int(key), "") if key.lstrip("-").isdigit() else (1, 0, key)


def index_of(keys: np.ndarray, values: np.ndarray) -> np.ndarray:
    """Position of each value in the sorted string array `keys`, -1 where it is absent."""
    values = np.asarray(values).astype(str)
    if len(keys) == 0:
        return np.full(values.shape, -1, np.int64)
    at = np.minimum(np.searchsorted(keys, values), len(keys) - 1)
    return np.where(keys[at] == values, at, -1)


def bin_of(scores: np.ndarray, bins: int) -> np.ndarray:
    """The bin of each score in [0, 1] among `bins` equal bins (scores outside fall in the end bins)."""
    return np.clip((np.asarray(scores, np.float64) * bins).astype(np.int64), 0, bins - 1)


class DomainHistograms:
    """Documents and tokens per (domain, score bin); `docs[code]` is the row of domain `keys[code]`."""

    def __init__(self, bins: int = 4096):
        self.bins = bins
        self.keys: list[str] = []
        self.docs = np.zeros((0, bins))
        self.tokens = np.zeros((0, bins))
        self._cache: dict = {}

    def __getstate__(self) -> dict:
        """Pickled without the cache: a Ray task that receives these rebuilds what it uses, once."""
        return {**self.__dict__, "_cache": {}}

    def add(self, domains: np.ndarray, scores: np.ndarray, tokens: np.ndarray) -> "DomainHistograms":
        """Count documents (and their tokens) by domain and score bin."""
        new, inverse = np.unique(np.asarray(domains).astype(str), return_inverse=True)
        self._include(new)
        cell = self.codes(new)[inverse] * self.bins + self.bin_of(scores)
        np.add.at(self.docs.reshape(-1), cell, 1.0)
        np.add.at(self.tokens.reshape(-1), cell, np.asarray(tokens, np.float64))
        return self

    def merge(self, other: "DomainHistograms") -> "DomainHistograms":
        if other.bins != self.bins:
            raise ValueError(f"cannot merge histograms of {other.bins} bins into {self.bins}")
        self._include(np.asarray(other.keys, str))
        rows = self.codes(other.keys)
        self.docs[rows] += other.docs
        self.tokens[rows] += other.tokens
        return self

    def _include(self, new: np.ndarray) -> None:
        """Give rows to the domains in `new` (sorted, unique) that have none, keeping `keys` sorted.

        Every add and merge starts here, so this is where the cached codes and ranks are dropped.
        """
        keys = np.union1d(np.asarray(self.keys, str), new)
        if len(keys) > len(self.keys):
            at = np.searchsorted(keys, np.asarray(self.keys, str))
            docs, tokens = np.zeros((len(keys), self.bins)), np.zeros((len(keys), self.bins))
            docs[at], tokens[at] = self.docs, self.tokens
            self.keys, self.docs, self.tokens = keys.tolist(), docs, tokens
        self._cache = {}

    def codes(self, domain_values) -> np.ndarray:
        """Each domain value's row (int64), -1 for a domain these histograms never saw."""
        if "keys" not in self._cache:
            self._cache["keys"] = np.asarray(self.keys, str)
        return index_of(self._cache["keys"], domain_values)

    def bin_of(self, scores: np.ndarray) -> np.ndarray:
        return bin_of(scores, self.bins)

    def weights(self, by_tokens: bool) -> np.ndarray:
        """(domains x bins) tokens or documents."""
        return self.tokens if by_tokens else self.docs

    def _ranks(self, by_tokens: bool) -> tuple[np.ndarray, np.ndarray]:
        """(weight strictly above each bin, domain total): computed once, until the next add or merge."""
        key = ("ranks", by_tokens)
        if key not in self._cache:
            w = self.weights(by_tokens)
            total = w.sum(axis=1, keepdims=True)
            self._cache[key] = (total - np.cumsum(w, axis=1), total[:, 0])
        return self._cache[key]

    def top_fraction(self, domains: np.ndarray, scores: np.ndarray, by_tokens: bool = True) -> np.ndarray:
        """Mid-rank share of the domain's weight scoring above each document, in [0, 1].

        0 = the best document of its domain; NaN for a domain never added.
        Documents in the same bin are ordered by linear interpolation inside
        the bin (exact when each bin holds one document at its centre).
        """
        return self.top_fraction_at(self.codes(domains), scores, by_tokens)

    def top_fraction_at(self, codes: np.ndarray, scores: np.ndarray, by_tokens: bool = True) -> np.ndarray:
        """`top_fraction` for domain codes instead of values; codes and scores broadcast."""
        codes, scores = np.broadcast_arrays(np.asarray(codes, np.int64), np.asarray(scores, np.float64))
        above, total = self._ranks(by_tokens)
        out = np.full(scores.shape, np.nan)
        known = codes >= 0
        c, x = codes[known], scores[known]
        idx = self.bin_of(x)
        cell = c * self.bins + idx  # flat indices: one gather instead of a 2-D fancy index
        w = self.weights(by_tokens).reshape(-1)[cell]
        out[known] = (above.reshape(-1)[cell] + w * (1.0 - (x * self.bins - idx))) / np.maximum(total[c], 1e-300)
        return out

    def centre_ranks(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(domain code, bin, token-weighted `top_fraction` at the bin centre) of every cell holding a document.

        The grid a fit sums over, cached until the next add or merge: a
        parameter search fits the same histograms many times.
        """
        if "centres" not in self._cache:
            d, b = np.nonzero(self.docs)
            self._cache["centres"] = d, b, self.top_fraction_at(d, (b + 0.5) / self.bins, by_tokens=True)
        return self._cache["centres"]

    def save(self, path: str | Path) -> None:
        """JSON holding only the non-empty (domain, bin) cells: most are empty when domains are many."""
        rows, cols = np.nonzero((self.docs != 0) | (self.tokens != 0))
        state = {
            "bins": self.bins,
            "keys": self.keys,
            "row": rows.tolist(),
            "bin": cols.tolist(),
            "docs": self.docs[rows, cols].tolist(),
            "tokens": self.tokens[rows, cols].tolist(),
        }
        Path(path).write_text(json.dumps(state))

    @classmethod
    def load(cls, path: str | Path) -> "DomainHistograms":
        state = json.loads(Path(path).read_text())
        h = cls(state["bins"])
        h.keys = list(state["keys"])
        h.docs, h.tokens = np.zeros((len(h.keys), h.bins)), np.zeros((len(h.keys), h.bins))
        cells = np.asarray(state["row"], np.int64), np.asarray(state["bin"], np.int64)
        h.docs[cells], h.tokens[cells] = state["docs"], state["tokens"]
        return h
