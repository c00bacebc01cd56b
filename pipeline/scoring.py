"""The learned states of a job: fitted once on a sample, saved, then mapped over every batch.

Two phases fit them, so each refits only when what it reads changes:
`fit_clusters` (k-means and the estimated cluster sizes; reads `clustering`)
and `fit_scorers` (every fitted scorer of the registry, `pipeline/scorers.py`;
reads their specs). `score_batch` maps them over every batch in Ray tasks, taking what the
score cache (`pipeline/content_cache.py`, keyed by `row_keys`) already holds.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pyarrow as pa

from thresher.operators import schema as S
from thresher.operators.dedup import SavedFlags
from thresher.operators.diversity import add_cluster_features
from thresher.operators.embed import from_fixed_list
from thresher.operators.fitted import Fitted
from thresher.operators.kmeans import KMeans
from thresher.operators.signals import SIGNALS
from thresher.operators.validate import lift_json_keys

from . import content_cache
from .errors import JobError
from .scorers import SCORERS, ScorerSpec, SideInputs
from .spec import ClusteringSpec


HIT = "_score_hit"  # set by `score_batch` on rows whose columns came from the score cache (never written to a piece)
FAR_QUANTILE = 0.95  # drift: documents farther from their centroid than this share of the fitting sample was


@dataclass
class Clusters:
    kmeans: KMeans
    sizes: np.ndarray  # documents per cluster in the pool (counted by the clusters phase when the sample is not the pool)
    far: float | None = None  # the FAR_QUANTILE of the fitting sample's centroid distances (None in states made before it was kept)

    def save(self, d: Path) -> None:
        self.kmeans.save(d / "kmeans")
        np.save(d / "cluster_sizes.npy", self.sizes)
        (d / "reference.json").write_text(json.dumps({"quantile": FAR_QUANTILE, "distance": self.far}))

    @classmethod
    def load(cls, d: Path) -> "Clusters":
        ref = d / "reference.json"
        far = json.loads(ref.read_text())["distance"] if ref.exists() else None
        return cls(KMeans.load(d / "kmeans"), np.load(d / "cluster_sizes.npy"), far)


@dataclass
class FittedScorers:
    """The fit phase's output: each fitted scorer's state by name (quality, column-0, dsir, ...), in registry order.

    Saved as one directory per state (the `Fitted` mixin) and `scorers.json`,
    which names each state's scorer and the input columns it reads; the state's
    class comes from the scorer's registry entry, never from the file.
    """

    states: dict[str, Fitted] = field(default_factory=dict)
    scorer: dict[str, str] = field(default_factory=dict)  # state name -> registered scorer name
    reads: dict[str, list[str]] = field(default_factory=dict)  # state name -> input columns it reads besides the pool's own

    def save(self, d: Path) -> None:
        for name, state in self.states.items():
            state.save(d / name)
        index = [{"name": n, "scorer": self.scorer[n], "reads": self.reads[n]} for n in self.states]
        (d / "scorers.json").write_text(json.dumps({"states": index}))

    @classmethod
    def load(cls, d: Path) -> "FittedScorers":
        registry = {c.name: c for c in SCORERS}
        out = cls()
        for entry in json.loads((d / "scorers.json").read_text())["states"]:
            if entry["scorer"] not in registry:
                raise JobError(f"{d} holds a fitted {entry['scorer']!r} scorer, which is not registered in this process")
            out.states[entry["name"]] = registry[entry["scorer"]].state_class().load(d / entry["name"])
            out.scorer[entry["name"]], out.reads[entry["name"]] = entry["scorer"], entry["reads"]
        return out


@dataclass
class Scorers:
    """Everything the score phase maps over batches: clusters, the scorers in registry order, duplicate flags."""

    clusters: Clusters
    embedded: list  # fitted states or unfitted scorer specs that read `emb`, each with a `transform(batch)`
    rest: list  # the others, after `emb` is dropped
    duplicates: list[SavedFlags] = field(default_factory=list)  # loaded where a batch is flagged
    lift_numeric: list[str] = field(default_factory=list)  # JSONL keys the score columns read
    keyed: list[str] = field(default_factory=list)  # input columns besides the text a row's scores depend on (`row_keys`)

    @classmethod
    def build(cls, clusters: Clusters, fitted: FittedScorers, unfitted: dict[str, ScorerSpec], duplicates: list[SavedFlags], lift: list[str]) -> "Scorers":
        embedded, rest = [], []
        for scorer in SCORERS:
            steps = [s for n, s in fitted.states.items() if fitted.scorer[n] == scorer.name] if scorer.fitted else [s for n, s in unfitted.items() if n == scorer.name]
            (embedded if scorer.uses_embedding else rest).extend(steps)
        reads = {c for r in fitted.reads.values() for c in r} | {c for s in unfitted.values() for c in s.sample_columns()}
        lifted = [c for c in lift if c in reads]
        keyed = sorted(reads - {S.TEXT, *lifted}) + (["metadata"] if lifted else [])  # a lifted key is read from the JSONL line's metadata
        return cls(clusters, embedded, rest, duplicates, lifted, keyed)

    def flag(self, scored: pa.Table) -> pa.Table:
        """The duplicate flags: by doc_id, so never cached with the scores."""
        for step in self.duplicates:
            scored = step.transform(scored)
        return scored

    def content_scores(self, batch: pa.Table) -> pa.Table:
        """Cluster, distance, size and rarity; every scorer. A function of each row's text (what the embed phase derived
        from it: emb, signals, language) and its `keyed` columns, given the states: what the score cache holds."""
        emb = from_fixed_list(batch.column(S.EMB))
        invalid = ~np.asarray(batch.column(S.INVALID_REASON).is_null().to_numpy(zero_copy_only=False))
        cluster, dist = self.clusters.kmeans.transform(emb)
        out = batch.append_column(S.D_CLUSTER, pa.array(cluster, mask=invalid))
        out = out.append_column(S.D_CENTROID_DIST, pa.array(dist, mask=invalid))
        out = add_cluster_features(out, self.clusters.sizes)
        for step in self.embedded:
            out = step.transform(out)
        out = lift_json_keys(out.drop_columns([S.EMB]), numeric=self.lift_numeric)  # JSONL keys the scorers read, dropped below
        for step in self.rest:
            out = step.transform(out)
        return out.drop_columns(self.lift_numeric)


def fit_clusters(c: ClusteringSpec, seed: int, sample: pa.Table, pool_size: int) -> tuple[Clusters, dict]:
    """k-means on the sample (in hash order); cluster sizes estimated from the sample's assignments (exact when the
    sample is the pool; the clusters phase counts them otherwise)."""
    emb = from_fixed_list(sample.column(S.EMB))
    km = KMeans(c.n_clusters, c.n_iter, c.n_redo, seed=seed).fit(emb)
    assigned, dist = km.transform(emb)
    counts = np.bincount(assigned, minlength=km.centroids_.shape[0]).astype(np.float64)
    sizes = np.round(counts * pool_size / max(len(assigned), 1)).astype(np.int64)
    far = float(np.quantile(dist, FAR_QUANTILE)) if len(dist) else None
    return Clusters(km, sizes, far), {"clusters": int(km.centroids_.shape[0]), "inertia": km.inertia_, "sample": sample.num_rows}


def fit_scorers(scorers: dict[str, ScorerSpec], sample: pa.Table, side: SideInputs, seed: int) -> tuple[FittedScorers, dict]:
    """Fit each scorer (state name -> spec, in registry order) on the sample (in hash order)."""
    info: dict = {"sample": sample.num_rows}
    fitted = FittedScorers()
    for name, spec in scorers.items():
        state, facts = spec.fit(sample, side, seed)
        fitted.states[name], fitted.scorer[name] = state, spec.name
        fitted.reads[name] = sorted(spec.sample_columns())
        info.update(facts)
    return fitted, info


def scorer_sample_columns(scorers: dict[str, ScorerSpec]) -> list[str]:
    """Columns the scorers' fit sample needs from the embed phase's output."""
    extra = sorted({c for spec in scorers.values() for c in spec.sample_columns()})
    return [S.DOC_ID, S.INVALID_REASON, S.EMB, *SIGNALS, *extra]


def row_keys(batch: pa.Table, keyed: list[str]) -> tuple[np.ndarray, np.ndarray]:
    """A row's key in the score cache: its text's digest (`content_cache.digests`), or, when the scorers read other
    input columns too, a BLAKE2b-128 of that digest and those columns' values."""
    h0, h1 = content_cache.digests(batch.column(S.TEXT).to_pylist())
    if not keyed:
        return h0, h1
    values = zip(*(batch.column(c).to_pylist() for c in keyed))
    raw = b"".join(hashlib.blake2b(int(a).to_bytes(8, "little") + int(b).to_bytes(8, "little") + json.dumps(v, default=str).encode(), digest_size=16).digest()
                   for a, b, v in zip(h0, h1, values))
    halves = np.frombuffer(raw, dtype="<u8").reshape(-1, 2)
    return halves[:, 0].copy(), halves[:, 1].copy()


def score_batch(batch: pa.Table, scorers: Scorers, hits: str | None, cache_dir: str, counter=None) -> pa.Table:
    """The function Ray maps over batches (Ray passes the batch first): every score column, then the duplicate flags;
    drops `emb` and counts the batch's rows for progress.

    Valid rows the score cache's lookup found (`hits`, read by the batch's input places) take their columns from it,
    marked HIT; the rest are scored, and the valid ones among them added to the cache (`cache_dir`, by `row_keys`).
    """
    from .progress import count_rows

    valid = np.asarray(batch.column(S.INVALID_REASON).is_null().to_numpy(zero_copy_only=False))
    h0, h1 = row_keys(batch, scorers.keyed)
    row, found = content_cache.hits_for(hits, batch)
    hit = valid & (row >= 0)
    todo, taken = np.flatnonzero(~hit), np.flatnonzero(hit)
    base = [c for c in batch.column_names if c != S.EMB]
    parts = []
    if todo.size or not taken.size:  # (an empty batch is scored as it is, for its schema)
        scored = scorers.content_scores(batch.take(todo))
        if scored.column_names[: len(base)] != base:
            raise RuntimeError(f"a scorer reordered or replaced the batch's columns ({scored.column_names}); scorers may only append columns")
        added, new = scored.column_names[len(base):], valid[todo]
        rows = scored.filter(pa.array(new)).select(added)
        content_cache.write(rows.append_column(content_cache.H0, pa.array(h0[todo][new])).append_column(content_cache.H1, pa.array(h1[todo][new])), cache_dir, added)
        parts.append(scored)
    if taken.size:
        reused = batch.take(taken).drop_columns([S.EMB])
        values = found.take(pa.array(row[taken]))
        for name in values.column_names[2:]:  # after the input file and offset
            reused = reused.append_column(name, values.column(name))
        parts.append(reused.cast(parts[0].schema) if parts else reused)
    merged = pa.concat_tables(parts).take(pa.array(np.argsort(np.concatenate([todo, taken]), kind="stable")))
    count_rows(counter, batch.num_rows)
    return scorers.flag(merged).append_column(HIT, pa.array(hit))
