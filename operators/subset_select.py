"""Facility location, max-min diversity and ODiS as selection strategies.

These choose a subset by looking at a whole group of documents at once, so,
unlike the streaming strategies, they cannot decide a document from its own
row. The select phase runs them in three steps:

1. `keys_and_scores` puts every eligible document in its group with score 0,
   so the phase's histograms hold each group's size in documents and tokens;
   `fit` splits the budget over the groups kMQ-style (`subset.kmq_budgets`:
   `equal` or `proportional`, a small group taken whole and its spare share
   given to the rest), in the budget's unit.
2. The pick pass (`pipeline/picks.py`) hands each group's eligible documents,
   with `pick_columns` from the phase output named by `source`, to `pick`, one
   Ray task per group, and gives the picked rows to `set_picks`.
3. `transform` gives a picked document one copy and every other none.
   Membership is a sorted array of 64-bit BLAKE2b digests of the picked
   doc_ids (8 bytes per pick, shipped to every select task); a false hit
   needs two doc_ids with the same 64-bit digest, about n * picks / 2**64.

A group is the selection's domain (the k-means cluster by default); ODiS
takes the whole pool as one group unless `per_domain` is set.

Budgets in documents give each group exactly its share (the group's size when
smaller), so the selection is exactly min(budget, pool). Budgets in tokens:
a group's picks are the shortest prefix of its greedy order whose tokens
reach (>=) the group's share, or the whole group when even that falls short;
a group overshoots its share by less than its last pick. The greedy order is
asked for as many picks as the share could need: the count of the group's
smallest documents whose tokens reach it (`most_docs`). Facility location and
max-min are greedy, so a shorter run is a prefix of a longer one; ODiS is
not (its budget is split over axes), so ODiS bisects on the document count
instead (`ODiS.reach`).

Deviations from the papers:
- facility location (INGENIOUS, Renduchintala et al. 2023) runs per group on a
  kNN graph of the embeddings, and its greedy order is taken as is, once;
  INGENIOUS samples from the greedy gains and refreshes the subset while
  training;
- max-min (DivPrune, Alvar et al. 2025, which prunes an image's visual tokens)
  runs per group on the document embeddings, starting at the document farthest
  from the group's mean direction (`subset.max_min_diversity`);
- ODiS (He et al. 2025) as `subset.odis`: axes fitted on the scores of the
  group itself, equal split over the axes, round-robin back-fill.
"""

from __future__ import annotations

import hashlib

import numpy as np
import pyarrow as pa

from . import schema as S
from .embed import from_fixed_list
from .histogram import DomainHistograms
from .budget import shortfall, without_replacement
from .merged_quality import merged_quality
from .selection import ALL, uniform_from_ids
from .subset import MODES, facility_location, kmq_budgets, max_min_diversity, odis, uds_stream


def digests(doc_ids: list[str]) -> np.ndarray:
    """An unkeyed 64-bit BLAKE2b digest per doc_id (uint64): a compact stand-in for the id in membership tests."""
    raw = b"".join(hashlib.blake2b(d.encode(), digest_size=8).digest() for d in doc_ids)
    return np.frombuffer(raw, dtype="<u8").astype(np.uint64)


def member(sorted_digests: np.ndarray, d: np.ndarray) -> np.ndarray:
    """Whether each digest of d is in the sorted array, and its position there (valid where true)."""
    if len(sorted_digests) == 0:
        return np.zeros(len(d), bool), np.zeros(len(d), np.int64)
    at = np.minimum(np.searchsorted(sorted_digests, d), len(sorted_digests) - 1)
    return sorted_digests[at] == d, at


def most_docs(tokens: np.ndarray, budget: int) -> int:
    """The most documents any subset needs to reach `budget` tokens: that many of the smallest (all when they fall short).

    A prefix that first reaches the budget with m documents holds m - 1 that
    fall short of it, and m - 1 documents weigh at least the m - 1 smallest.
    """
    c = np.cumsum(np.sort(np.asarray(tokens, np.int64)))
    return min(int(np.searchsorted(c, budget, side="left")) + 1, len(c))


def group_domains(batch: pa.Table) -> np.ndarray:
    return np.asarray(batch.column(S.DOMAIN).cast(pa.string()).fill_null("").to_numpy(zero_copy_only=False)).astype(str)


class GroupPick:
    """What the three subset strategies share: kMQ budgets per group, picks from `order`, membership by digest.

    Subclasses set `name`, `source` (the phase output `pick` reads: "embed"
    for embeddings, "score" for score columns) and `pick_columns`, and define
    `order(group, k)`: k positions of the group table in pick order, with
    facts for the manifest.
    """

    name = "group_pick"
    needs_budget = True
    needs_picks = True  # the select phase runs the pick pass (pipeline/picks.py) between fit and transform
    max_copies = 1
    columns: tuple[str, ...] = (S.DOC_ID,)
    source = "embed"
    pick_columns: tuple[str, ...] = (S.EMB,)

    def __init__(self, split: str = "equal"):
        if split not in MODES:
            raise ValueError(f"split must be one of {MODES}, got {split!r}")
        self.split = split
        self.picks_ = np.zeros(0, np.uint64)
        self.picked_: dict[str, dict] = {}
        self.group_facts_: dict[str, dict] = {}

    def group_keys(self, batch: pa.Table) -> np.ndarray:
        return group_domains(batch)

    def keys_and_scores(self, batch: pa.Table) -> tuple[np.ndarray, np.ndarray]:
        return self.group_keys(batch), np.zeros(batch.num_rows)

    def fit(self, hist: DomainHistograms, budget_unit: str | None, budget: float | None) -> "GroupPick":
        if budget is None:
            raise ValueError(f"{self.name} needs a budget")
        w = hist.weights(budget_unit == "tokens")
        sizes = np.rint(w.sum(axis=1)).astype(np.int64)
        self.keys_ = list(hist.keys)
        self.budgets_ = kmq_budgets(sizes, int(round(budget)), self.split)
        self.budget_, self.unit_, self.pool_ = budget, budget_unit or "docs", float(w.sum())
        return self

    def budgets(self) -> dict[str, int]:
        """Each group's share of the budget, in the budget's unit."""
        return {k: int(b) for k, b in zip(self.keys_, self.budgets_)}

    def order(self, group: pa.Table, k: int) -> tuple[np.ndarray, dict]:
        raise NotImplementedError

    def pick(self, group: pa.Table, budget: int, unit: str = "docs") -> tuple[np.ndarray, dict]:
        """Positions of the group's picks in pick order, for a share of `budget` docs or tokens (the rule in the module docstring)."""
        n, budget = group.num_rows, int(budget)
        if budget <= 0 or n == 0:
            return np.zeros(0, np.int64), {}
        if unit == "docs":
            return self.order(group, min(budget, n))
        return self.reach(group, np.asarray(group.column(S.N_TOKENS).to_numpy(zero_copy_only=False), np.int64), budget)

    def reach(self, group: pa.Table, tokens: np.ndarray, budget: int) -> tuple[np.ndarray, dict]:
        """The shortest prefix of the greedy order whose tokens reach the budget."""
        pos, facts = self.order(group, most_docs(tokens, budget))
        reached = np.cumsum(tokens[pos]) >= budget
        return pos[: int(np.argmax(reached)) + 1 if reached.any() else len(pos)], facts

    def set_picks(self, picks: pa.Table, group_facts: dict[str, dict] | None = None) -> "GroupPick":
        """Take the pick pass's result: rows of doc_id, domain (the group) and n_tokens."""
        self.picks_ = np.sort(digests(picks.column(S.DOC_ID).to_pylist()))
        groups = np.asarray(picks.column(S.DOMAIN).to_pylist(), dtype=object).astype(str)
        tokens = np.asarray(picks.column(S.N_TOKENS).to_numpy(zero_copy_only=False), np.int64)
        self.picked_ = {str(g): {"docs": int((groups == g).sum()), "tokens": int(tokens[groups == g].sum())} for g in np.unique(groups)}
        self.group_facts_ = dict(group_facts or {})
        return self

    def transform(self, batch: pa.Table) -> tuple[np.ndarray, np.ndarray | None]:
        hit, _ = member(self.picks_, digests(batch.column(S.DOC_ID).to_pylist()))
        return hit.astype(np.float64), None

    def facts(self) -> dict:
        picked = sum(p[self.unit_] for p in self.picked_.values())
        return {
            **without_replacement(self.budget_, self.unit_, self.pool_),
            "expected": float(picked),  # exact: every pick gets one copy
            "shortfall": shortfall(self.budget_, picked),
            "split": self.split,
            "domain_budgets": self.budgets(),
            "domain_picks": {k: p["docs"] for k, p in sorted(self.picked_.items())},
            **self.own_facts(),
        }

    def own_facts(self) -> dict:
        return {}


class FacilityLocation(GroupPick):
    """Per group, the documents that best cover it (`subset.facility_location` on a kNN graph of `neighbors`)."""

    name = "facility_location"

    def __init__(self, neighbors: int = 32, split: str = "equal"):
        super().__init__(split)
        if neighbors < 1:
            raise ValueError(f"neighbors must be >= 1, got {neighbors}")
        self.neighbors = int(neighbors)

    def order(self, group: pa.Table, k: int) -> tuple[np.ndarray, dict]:
        return facility_location(from_fixed_list(group.column(S.EMB)), k, self.neighbors), {}

    def own_facts(self) -> dict:
        return {"neighbors": self.neighbors}


class MaxMin(GroupPick):
    """Per group, documents each farthest from those picked before it (`subset.max_min_diversity`)."""

    name = "max_min"

    def order(self, group: pa.Table, k: int) -> tuple[np.ndarray, dict]:
        return max_min_diversity(from_fixed_list(group.column(S.EMB)), k), {}


class ODiS(GroupPick):
    """The top documents along decorrelated quality axes (`subset.odis`), over the whole pool or per domain.

    A null or NaN score counts as its column's mean in the group (z-score 0).
    A group where no column varies cannot be ranked: its picks are its first
    documents by doc_id (the pick pass sorts every group by doc_id).
    """

    name = "odis"
    source = "score"

    def __init__(self, columns: list[str], components: int = 4, split: str = "equal", per_domain: bool = False):
        super().__init__(split)
        if not columns:
            raise ValueError("odis needs at least one score column")
        if components < 1:
            raise ValueError(f"components must be >= 1, got {components}")
        self.pick_columns = tuple(columns)
        self.components = int(components)
        self.per_domain = bool(per_domain)

    def group_keys(self, batch: pa.Table) -> np.ndarray:
        return group_domains(batch) if self.per_domain else np.full(batch.num_rows, ALL)

    def scores(self, group: pa.Table) -> np.ndarray:
        x = np.column_stack([np.asarray(group.column(c).cast(pa.float64()).to_numpy(zero_copy_only=False), np.float64) for c in self.pick_columns])
        missing = np.isnan(x)
        if missing.any():
            means = np.nanmean(np.where(missing.all(axis=0), 0.0, x), axis=0)
            x = np.where(missing, means, x)
        return x

    def order(self, group: pa.Table, k: int) -> tuple[np.ndarray, dict]:
        x = self.scores(group)
        if not (np.ptp(x, axis=0) > 0).any():
            return np.arange(min(k, len(x))), {"columns": [], "note": "no score column varies: the first documents by doc_id"}
        pos, f = odis(x, k, self.components)
        f = {**f, "columns": [self.pick_columns[i] for i in f["columns"]]}
        for key in ("explained_variance_ratio", "quality_corr", "loadings", "overlap"):
            f[key] = np.round(np.asarray(f[key], np.float64), 4).tolist()
        return pos, f

    def reach(self, group: pa.Table, tokens: np.ndarray, budget: int) -> tuple[np.ndarray, dict]:
        """The fewest documents k found by bisection whose ODiS subset reaches the budget (the subset of k - 1 does not).

        ODiS subsets of k and k + 1 documents need not be nested (the budget
        is split over the axes), so a prefix cut would favour the first axis.
        The subset's tokens are not monotone in k either, so bisection finds
        a k where the count crosses the budget, not always the smallest.
        """
        hi = most_docs(tokens, budget)
        pos, facts = self.order(group, hi)
        if tokens[pos].sum() < budget:
            return pos, facts  # the whole group falls short
        lo = 0
        while hi - lo > 1:
            mid = (lo + hi) // 2
            p, f = self.order(group, mid)
            if tokens[p].sum() >= budget:
                hi, pos, facts = mid, p, f
            else:
                lo = mid
        return pos, facts

    def own_facts(self) -> dict:
        return {"columns": list(self.pick_columns), "components": self.components, "per_domain": self.per_domain, "odis": dict(sorted(self.group_facts_.items()))}


class UDS(GroupPick):
    """UDS (utility-diversity sampling; gfyddha/UDS) over the eligible pool streamed in a seeded order (`subset.uds_stream`).

    Utility is the strategy's `by` quality (default q_uds, the percentile of the nuclear-norm utility, operators/uds.py),
    given to each document in the histogram pass; diversity is in the document embedding. Deviations from the
    reference, which selects online from the fine-tuning batches of one model: the stream is the pool in the order
    of a seeded hash of the doc_id; diversity is measured between document embeddings, not between JL projections
    of the model's logits; utility is a percentile in [0, 1] rather than the raw nuclear norm, so `alpha` is on
    another scale than the reference's 2.5e-3 (the default 5 weighs the spread of mean embedding distances, about
    0.1 for unit vectors, like the utility's 0..1); a token budget keeps the stream's first picks reaching it.
    With `remembers`, the memory starts with (up to `queue` of) the previous version's selection, found in this
    pool (the reference's memory is always empty at the start of training).
    """

    name = "uds"
    pick_columns = (S.EMB,)

    def __init__(self, by: dict[str, float], alpha: float = 5.0, batch: int = 64, queue: int = 1024, seed: int = 0, remembers: bool = False):
        super().__init__("equal")
        if alpha < 0 or batch < 1 or queue < 1:
            raise ValueError(f"uds needs alpha >= 0, batch >= 1 and queue >= 1, got {alpha}, {batch}, {queue}")
        self.by, self.alpha, self.batch, self.queue, self.seed = dict(by), float(alpha), int(batch), int(queue), int(seed)
        self.columns = (S.DOC_ID, *self.by)
        self.remembers = remembers  # seed the memory with the previous version's selection (`remember`)
        self.memory_, self.memory_facts_ = None, None

    def remember(self, emb: np.ndarray, facts: dict) -> "UDS":
        """Start the stream's memory with these embeddings (what an earlier run took), so tonight prefers what it lacks."""
        self.memory_, self.memory_facts_ = (emb if len(emb) else None), facts
        return self

    def group_keys(self, batch: pa.Table) -> np.ndarray:
        return np.full(batch.num_rows, ALL)

    def keys_and_scores(self, batch: pa.Table) -> tuple[np.ndarray, np.ndarray]:
        return self.group_keys(batch), merged_quality(batch, self.by)

    def order(self, group: pa.Table, k: int) -> tuple[np.ndarray, dict]:
        stream = np.argsort(uniform_from_ids(self.seed, group.column(S.DOC_ID).to_pylist()), kind="stable")
        utility = np.asarray(group.column(S.PICK_SCORE).to_numpy(zero_copy_only=False), np.float64)
        return uds_stream(from_fixed_list(group.column(S.EMB)), utility, stream, k, self.batch, self.queue, self.alpha, self.memory_), {}

    def own_facts(self) -> dict:
        memory = {"memory": self.memory_facts_} if self.remembers else {}
        return {"by": self.by, "alpha": self.alpha, "batch": self.batch, "queue": self.queue, **memory}
