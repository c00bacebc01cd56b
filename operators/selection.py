"""Selection: strategies turn scores into expected copies; copies are drawn per document.

Every strategy has one shape: `keys_and_scores` feeds the corpus-wide
histograms, `fit` reads them (and the budget), `transform` gives each document
its expected number of copies S (the `Strategy` protocol below). `select` then draws
copies = floor(S) + Bernoulli(frac(S)) with a uniform derived from
(seed, doc_id) alone, so a selection never depends on batch order,
partitioning, worker count or a resume.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from typing import Protocol

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from . import schema as S
from .budget import without_replacement
from .histogram import DomainHistograms, bin_of
from .merged_quality import merged_quality

ALL = "*"


def uniform_from_ids(seed: int, doc_ids: list[str]) -> np.ndarray:
    """A uniform in [0, 1) per document: BLAKE2b keyed by the seed, over the doc_id."""
    key = str(seed).encode()
    raw = b"".join(hashlib.blake2b(d.encode(), digest_size=8, key=key).digest() for d in doc_ids)
    return (np.frombuffer(raw, dtype="<u8") >> np.uint64(11)).astype(np.float64) / float(1 << 53)


def draw_copies(expected: np.ndarray, u: np.ndarray) -> np.ndarray:
    """floor(S) + Bernoulli(frac(S)), the Bernoulli decided by u < frac(S)."""
    expected = np.maximum(np.nan_to_num(expected), 0.0)
    whole = np.floor(expected)
    return (whole + (u < expected - whole)).astype(np.int32)


@dataclass(frozen=True)
class ThresholdFilter:
    """Keep a document only when `min <= column <= max`; the reason names the bound it broke."""

    column: str
    min: float | None = None
    max: float | None = None

    def reasons(self, batch: pa.Table) -> np.ndarray:
        x = np.asarray(batch.column(self.column).to_numpy(zero_copy_only=False), np.float64)
        out = np.full(len(x), None, dtype=object)
        if self.max is not None:
            out[~(x <= self.max)] = f"filter: {self.column} > {self.max}"
        if self.min is not None:
            out[~(x >= self.min)] = f"filter: {self.column} < {self.min}"
        return out


@dataclass(frozen=True)
class ValueFilter:
    """Keep a document only when its column's value is one of `values` (null never is)."""

    column: str
    values: tuple[str, ...]

    def reasons(self, batch: pa.Table) -> np.ndarray:
        col = batch.column(self.column).cast(pa.string())
        keep = np.asarray(pc.is_in(col, value_set=pa.array(self.values, pa.string())).fill_null(False).to_numpy(zero_copy_only=False), bool)
        return np.where(keep, None, f"filter: {self.column} not in {list(self.values)}").astype(object)


@dataclass(frozen=True)
class FlagFilter:
    """Exclude a document when a decision column is set: a rule's reason string or a true flag."""

    column: str

    def reasons(self, batch: pa.Table) -> np.ndarray:
        col = batch.column(self.column)
        if pa.types.is_boolean(col.type):
            hit = np.asarray(col.fill_null(False).to_numpy(zero_copy_only=False), bool)
            return np.where(hit, self.column, None).astype(object)
        values = np.asarray(col.cast(pa.string()).to_numpy(zero_copy_only=False), dtype=object)
        return np.array([None if v is None else f"{self.column}: {v}" for v in values], dtype=object)


def filter_reasons(batch: pa.Table, filters: list) -> np.ndarray:
    """The first failed filter per row as a reason string, None where all pass."""
    reasons = np.full(batch.num_rows, None, dtype=object)
    for f in filters:
        free = np.equal(reasons, None)
        reasons[free] = f.reasons(batch)[free]
    return reasons


class Strategy(Protocol):
    """What the select phase and `select` need from a selection strategy.

    `columns`: the batch columns `keys_and_scores` and `transform` read,
    besides domain and n_tokens. `needs_budget`: whether `fit` refuses to run
    without a budget. `max_copies`: the most expected copies `transform`
    gives any document. `fit` never raises because the pool is smaller than
    the budget: it selects what it can and `facts()` (budget, unit, expected,
    shortfall, max_copies, and the strategy's own figures) says by how much
    it fell short, so the caller decides between a warning and an error.
    """

    name: str
    columns: tuple[str, ...]
    needs_budget: bool
    max_copies: int

    def keys_and_scores(self, batch: pa.Table) -> tuple[np.ndarray, np.ndarray]: ...

    def fit(self, hist: DomainHistograms, budget_unit: str | None, budget: float | None) -> "Strategy": ...

    def transform(self, batch: pa.Table) -> tuple[np.ndarray, np.ndarray | None]: ...

    def facts(self) -> dict: ...


def _pool(hist: DomainHistograms, budget_unit: str | None) -> np.ndarray:
    """Weight per score bin, all domains together, in the budget's unit."""
    return hist.weights(budget_unit == "tokens").sum(axis=0)


def top_threshold(w: np.ndarray, budget: float, bins: int) -> float:
    """The score above which a histogram row (weight per bin over [0, 1]) holds `budget`; -inf when the row holds less.

    Inside the bin holding the threshold, weight is taken as spread evenly,
    so the interpolated threshold meets the budget up to ties within one bin.
    """
    above = w[::-1].cumsum()[::-1] - w  # weight strictly above each bin
    reach = np.nonzero(above + w >= budget)[0]
    if len(reach) == 0:
        return -np.inf  # the budget exceeds the row: take everything
    b = reach[-1]
    need = budget - above[b]
    return (b + 1.0 - need / w[b]) / bins if w[b] > 0 else (b + 1.0) / bins


TOPK_CUT = "boundary-bin-sampled"  # in the select phase's key: a selection cut the older way (a tie taken whole) is not reused


class TopK:
    """The best documents by merged quality until the budget is filled (one copy each).

    `by` weighs the quality columns into one score, as QuaDMix's alpha does.
    The cut is read from a histogram: every document in a bin above the
    boundary bin is taken, and each document in the boundary bin with the
    probability that fills the rest of the budget (drawn from (seed, doc_id)
    as every copy is). So the budget is met in expectation even when many
    documents share one score (a binary column: a cut inside the tie used to
    take all of it); inside one of the histogram's bins the order is not
    kept. A budget above the pool takes the whole pool.
    """

    name = "topk"
    needs_budget = True
    max_copies = 1

    def __init__(self, by: dict[str, float]):
        self.by = dict(by)
        self.columns = tuple(self.by)

    def keys_and_scores(self, batch: pa.Table) -> tuple[np.ndarray, np.ndarray]:
        return np.full(batch.num_rows, ALL), merged_quality(batch, self.by)

    def fit(self, hist: DomainHistograms, budget_unit: str | None, budget: float | None) -> "TopK":
        if budget is None:
            raise ValueError(f"{self.name} needs a budget")
        w = _pool(hist, budget_unit)
        self.threshold_ = top_threshold(w, budget, hist.bins)  # where the cut falls, for the facts
        above = w[::-1].cumsum()[::-1] - w
        reach = np.nonzero(above + w >= budget)[0]
        self.cut_bin_ = int(reach[-1]) if len(reach) else -1  # -1: the whole pool
        self.cut_rate_ = float(min(1.0, (budget - above[self.cut_bin_]) / w[self.cut_bin_])) if len(reach) and w[self.cut_bin_] > 0 else 1.0
        self.bins_ = hist.bins
        self.budget_, self.unit_, self.pool_ = budget, budget_unit or "docs", float(w.sum())
        return self

    def transform(self, batch: pa.Table) -> tuple[np.ndarray, np.ndarray | None]:
        _, q = self.keys_and_scores(batch)
        b = bin_of(q, self.bins_)
        return np.where(b > self.cut_bin_, 1.0, np.where(b == self.cut_bin_, self.cut_rate_, 0.0)), None

    def facts(self) -> dict:
        threshold = None if np.isneginf(self.threshold_) else float(self.threshold_)  # None: the whole pool
        return {**without_replacement(self.budget_, self.unit_, self.pool_), "threshold": threshold}


class Uniform:
    """Every eligible document with the same probability min(1, budget / pool size).

    Without replacement: a budget above the pool takes the whole pool once.
    """

    name = "uniform"
    columns: tuple[str, ...] = ()
    needs_budget = True
    max_copies = 1

    def keys_and_scores(self, batch: pa.Table) -> tuple[np.ndarray, np.ndarray]:
        return np.full(batch.num_rows, ALL), np.zeros(batch.num_rows)

    def fit(self, hist: DomainHistograms, budget_unit: str | None, budget: float | None) -> "Uniform":
        if budget is None:
            raise ValueError(f"{self.name} needs a budget")
        self.budget_, self.unit_, self.pool_ = budget, budget_unit or "docs", float(_pool(hist, budget_unit).sum())
        self.rate_ = min(1.0, budget / self.pool_) if self.pool_ > 0 else 0.0
        return self

    def transform(self, batch: pa.Table) -> tuple[np.ndarray, np.ndarray | None]:
        return np.full(batch.num_rows, self.rate_), None

    def facts(self) -> dict:
        return {**without_replacement(self.budget_, self.unit_, self.pool_), "rate": self.rate_}


def select(batch: pa.Table, strategy: Strategy, seed: int, filters: list) -> pa.Table:
    """Append the `sel_*` columns: expected copies, drawn copies, percentile, strategy, reason."""
    n = batch.num_rows
    reasons = batch.column(S.INVALID_REASON).to_numpy(zero_copy_only=False).astype(object)
    valid = np.equal(reasons, None)
    frs = filter_reasons(batch, filters)
    reasons = np.where(valid, frs, reasons)
    eligible = np.equal(reasons, None)
    expected = np.zeros(n)
    percentile = np.full(n, np.nan)
    if eligible.any():
        sub = batch.filter(pa.array(eligible))
        s, r = strategy.transform(sub)
        expected[eligible] = s
        if r is not None:
            percentile[eligible] = r
    doc_ids = batch.column(S.DOC_ID).to_pylist()
    copies = draw_copies(expected, uniform_from_ids(seed, doc_ids))
    copies[~eligible] = 0
    reasons[eligible & (copies == 0)] = "not sampled"
    return (
        batch.append_column(S.SEL_VALUE, pa.array(expected.astype(np.float32)))
        .append_column(S.SEL_COPIES, pa.array(copies))
        .append_column(S.SEL_PERCENTILE, pa.array(percentile.astype(np.float32), from_pandas=True))
        .append_column(S.SEL_STRATEGY, pa.array([strategy.name] * n, pa.string()))
        .append_column(S.SEL_REASON, pa.array(reasons.tolist(), pa.string()))
    )
