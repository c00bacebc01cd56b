"""What a person judges a selection by, per domain: its most distinctive terms and a few documents kept and dropped.

`DomainProfiles` is fed the output's decisions batch by batch (the accounting
pass, `pipeline/output.py`) and keeps, per domain, the SAMPLE valid documents
of smallest hash of their doc_id (a uniform sample, the same on every run of
the same pool), their text cut at TEXT_CHARS. From the sample: the domain's
terms by c-TF-IDF (`operators/ctfidf.py`) and, as examples, the first
EXAMPLES kept and EXAMPLES dropped in that order with their copies, quality
scores and reason. Memory: domains x 2 SAMPLE texts at most.
"""

from __future__ import annotations

import numpy as np
import pyarrow as pa

from thresher.operators import schema as S
from thresher.operators.ctfidf import class_terms
from thresher.operators.selection import uniform_from_ids

SAMPLE = 200  # documents per domain the terms are counted over
TEXT_CHARS = 4_000  # of each sampled text
EXAMPLES = 3  # kept and dropped documents shown per domain
SNIPPET_CHARS = 280
TERMS = 8


class DomainProfiles:
    def __init__(self, quality: list[str], seed: int):
        self.quality, self.seed = quality, seed
        self._rows: dict[str, list[dict]] = {}

    def add(self, t: pa.Table, domains: np.ndarray, valid: np.ndarray) -> None:
        """A batch of decisions (doc_id, text, sel_copies, sel_reason, the quality columns) with its domain per row."""
        if not valid.any():
            return
        u = uniform_from_ids(self.seed, t.column(S.DOC_ID).to_pylist())
        for key in np.unique(domains[valid]):
            rows = np.flatnonzero((domains == key) & valid)
            kept = self._rows.setdefault(str(key), [])
            bar = kept[-1]["u"] if len(kept) >= SAMPLE else 2.0
            rows = rows[u[rows] < bar]
            if not rows.size:
                continue
            sub = t.take(pa.array(rows))
            texts = sub.column(S.TEXT).to_pylist()
            for i, r in enumerate(rows):
                kept.append({"u": float(u[r]), "doc_id": sub.column(S.DOC_ID)[i].as_py(), "text": (texts[i] or "")[:TEXT_CHARS],
                             "copies": int(sub.column(S.SEL_COPIES)[i].as_py() or 0), "reason": sub.column(S.SEL_REASON)[i].as_py(),
                             "scores": {c: _round(sub.column(c)[i].as_py()) for c in self.quality}})
            kept.sort(key=lambda row: row["u"])
            del kept[SAMPLE:]

    def merge(self, other: "DomainProfiles") -> None:
        """Add the samples of disjoint rows: each domain keeps the SAMPLE smallest hashes of both."""
        for key, rows in other._rows.items():
            kept = self._rows.setdefault(key, [])
            kept += rows
            kept.sort(key=lambda row: row["u"])
            del kept[SAMPLE:]

    def result(self) -> dict[str, dict]:
        """Per domain: `terms` [(term, weight)], `sampled`, and `kept` / `dropped` examples (doc_id, copies, reason, scores, snippet)."""
        names = class_terms({k: [r["text"] for r in rows] for k, rows in self._rows.items()}, top=TERMS)
        return {k: {"terms": [[t, round(w, 5)] for t, w in names[k]], "sampled": len(rows),
                    "kept": _shown([r for r in rows if r["copies"] > 0]), "dropped": _shown([r for r in rows if r["copies"] == 0])}
                for k, rows in self._rows.items()}


def _shown(rows: list[dict]) -> list[dict]:
    return [{"doc_id": r["doc_id"], "copies": r["copies"], "reason": r["reason"], "scores": r["scores"], "snippet": _snippet(r["text"])} for r in rows[:EXAMPLES]]


def _round(v):
    return round(v, 4) if isinstance(v, float) else v


def _snippet(text: str) -> str:
    flat = " ".join(text.split())
    return flat if len(flat) <= SNIPPET_CHARS else flat[: SNIPPET_CHARS - 1].rstrip() + "…"
