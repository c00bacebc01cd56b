"""Per-domain weighted histograms of a score in [0, 1]: the selection's global view.

Selection needs corpus-wide facts (a document's quality percentile within its
domain, the expected size of a selection) while documents stream past in
batches. Histograms are built per batch, summed, and then answer those
questions in bounded memory: domains x bins, whatever the corpus size.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np


@dataclass
class DomainHistograms:
    bins: int = 4096
    docs: dict[str, np.ndarray] = field(default_factory=dict)
    tokens: dict[str, np.ndarray] = field(default_factory=dict)

    def add(self, domains: np.ndarray, scores: np.ndarray, tokens: np.ndarray) -> "DomainHistograms":
        """Count documents (and their tokens) by domain and score bin."""
        idx = self.bin_of(scores)
        for d in np.unique(domains):
            m = domains == d
            key = str(d)
            docs = np.bincount(idx[m], minlength=self.bins).astype(np.float64)
            toks = np.bincount(idx[m], weights=tokens[m].astype(np.float64), minlength=self.bins)
            self.docs[key] = self.docs.get(key, 0) + docs
            self.tokens[key] = self.tokens.get(key, 0) + toks
        return self

    def merge(self, other: "DomainHistograms") -> "DomainHistograms":
        for key in other.docs:
            self.docs[key] = self.docs.get(key, 0) + other.docs[key]
            self.tokens[key] = self.tokens.get(key, 0) + other.tokens[key]
        return self

    def bin_of(self, scores: np.ndarray) -> np.ndarray:
        return np.clip((np.asarray(scores, np.float64) * self.bins).astype(np.int64), 0, self.bins - 1)

    def weights(self, by_tokens: bool) -> dict[str, np.ndarray]:
        return self.tokens if by_tokens else self.docs

    def top_fraction(self, domains: np.ndarray, scores: np.ndarray, by_tokens: bool = True) -> np.ndarray:
        """Mid-rank share of the domain's weight scoring above each document, in [0, 1].

        0 = the best document of its domain. Documents in the same bin are
        ordered by linear interpolation inside the bin (exact when each bin
        holds one document at its centre).
        """
        scores = np.asarray(scores, np.float64)
        out = np.full(len(scores), np.nan)
        idx = self.bin_of(scores)
        pos = scores * self.bins - idx  # position inside the bin, 0..1
        for key, w in self.weights(by_tokens).items():
            m = domains.astype(str) == key
            if not m.any():
                continue
            total = w.sum()
            above = total - np.cumsum(w)  # weight in bins strictly above each bin
            out[m] = (above[idx[m]] + w[idx[m]] * (1.0 - pos[m])) / max(total, 1e-300)
        return out

    def save(self, path: str | Path) -> None:
        state = {"bins": self.bins, "docs": {k: v.tolist() for k, v in self.docs.items()}, "tokens": {k: v.tolist() for k, v in self.tokens.items()}}
        Path(path).write_text(json.dumps(state))

    @classmethod
    def load(cls, path: str | Path) -> "DomainHistograms":
        state = json.loads(Path(path).read_text())
        return cls(
            state["bins"],
            {k: np.asarray(v) for k, v in state["docs"].items()},
            {k: np.asarray(v) for k, v in state["tokens"].items()},
        )
