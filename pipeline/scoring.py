"""The learned states of a job: fitted once on a sample, saved, then mapped over every batch.

Two phases fit them, so each refits only when what it reads changes:
`fit_clusters` (k-means and the estimated cluster sizes; reads `clustering`)
and `fit_scorers` (rank normalisers, classifier, DSIR, target set; reads
`scorers`). `Scorers.score` runs in Ray tasks over every batch with both.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import numpy as np
import pyarrow as pa

from thresher.operators import schema as S
from thresher.operators.classifier import QualityClassifier
from thresher.operators.dedup import DuplicateMap
from thresher.operators.diversity import add_cluster_features
from thresher.operators.dsir import DSIR
from thresher.operators.embed import from_fixed_list
from thresher.operators.heuristic_rules import apply_rules, rule_configs
from thresher.operators.kmeans import KMeans
from thresher.operators.quality import HIGHER, LOWER, RankQuality
from thresher.operators.signals import SIGNALS
from thresher.operators.target_sim import TargetSimilarity
from thresher.operators.validate import lift_json_keys

from .spec import JobSpec

# Embeds a list of side-corpus texts (with signals when asked) on the job's embedding actors.
EmbedTexts = Callable[[list[str], bool], pa.Table]


@dataclass
class Clusters:
    kmeans: KMeans
    sizes: np.ndarray  # estimated documents per cluster in the pool

    def save(self, d: Path) -> None:
        self.kmeans.save(d / "kmeans")
        np.save(d / "cluster_sizes.npy", self.sizes)

    @classmethod
    def load(cls, d: Path) -> "Clusters":
        return cls(KMeans.load(d / "kmeans"), np.load(d / "cluster_sizes.npy"))


@dataclass
class FittedScorers:
    quality: RankQuality
    columns: list[RankQuality] = field(default_factory=list)
    classifier: QualityClassifier | None = None
    dsir: DSIR | None = None
    target_sim: TargetSimilarity | None = None

    def save(self, d: Path) -> None:
        self.quality.save(d / "quality")
        for i, c in enumerate(self.columns):
            c.save(d / f"column-{i}")
        for name in ("classifier", "dsir", "target_sim"):
            if getattr(self, name) is not None:
                getattr(self, name).save(d / name)
        (d / "scorers.json").write_text(json.dumps({"columns": len(self.columns)}))

    @classmethod
    def load(cls, d: Path) -> "FittedScorers":
        meta = json.loads((d / "scorers.json").read_text())
        return cls(
            quality=RankQuality.load(d / "quality"),
            columns=[RankQuality.load(d / f"column-{i}") for i in range(meta["columns"])],
            classifier=QualityClassifier.load(d / "classifier") if (d / "classifier").exists() else None,
            dsir=DSIR.load(d / "dsir") if (d / "dsir").exists() else None,
            target_sim=TargetSimilarity.load(d / "target_sim") if (d / "target_sim").exists() else None,
        )


@dataclass
class Scorers:
    """Everything the score phase maps over batches."""

    clusters: Clusters
    fitted: FittedScorers
    rules: dict | None = None  # heuristic rule family configs, none = off
    duplicates: list[DuplicateMap] = field(default_factory=list)
    lift_numeric: list[str] = field(default_factory=list)  # JSONL keys the score columns read

    def score(self, batch: pa.Table) -> pa.Table:
        """Cluster, distance, size and rarity; every quality and utility score; duplicate flags. Drops `emb`."""
        f = self.fitted
        emb = from_fixed_list(batch.column(S.EMB))
        invalid = ~np.asarray(batch.column(S.INVALID_REASON).is_null().to_numpy(zero_copy_only=False))
        cluster, dist = self.clusters.kmeans.transform(emb)
        out = batch.append_column(S.D_CLUSTER, pa.array(cluster, mask=invalid))
        out = out.append_column(S.D_CENTROID_DIST, pa.array(dist, mask=invalid))
        out = add_cluster_features(out, self.clusters.sizes)
        for step in [f.classifier, f.target_sim]:
            if step is not None:
                out = step.transform(out)
        out = out.drop_columns([S.EMB])
        if self.rules is not None:
            out = apply_rules(out, **rule_configs(self.rules))
        out = lift_json_keys(out, numeric=self.lift_numeric)  # JSONL keys the score columns read, dropped below
        for step in [f.quality, *f.columns]:
            out = step.transform(out)
        out = out.drop_columns(self.lift_numeric)
        for step in [f.dsir, *self.duplicates]:
            if step is not None:
                out = step.transform(out)
        return out


def fit_clusters(spec: JobSpec, sample: pa.Table, pool_size: int) -> tuple[Clusters, dict]:
    """k-means on the sample (in hash order); cluster sizes estimated from the sample's assignments."""
    c = spec.clustering
    emb = from_fixed_list(sample.column(S.EMB))
    km = KMeans(c.n_clusters, c.n_iter, c.n_redo, seed=spec.seed).fit(emb)
    assigned, _ = km.transform(emb)
    counts = np.bincount(assigned, minlength=km.centroids_.shape[0]).astype(np.float64)
    sizes = np.round(counts * pool_size / max(len(assigned), 1)).astype(np.int64)
    return Clusters(km, sizes), {"clusters": int(km.centroids_.shape[0]), "inertia": km.inertia_, "sample": sample.num_rows}


def fit_scorers(spec: JobSpec, sample: pa.Table, side_texts: Callable, embed_texts: EmbedTexts) -> tuple[FittedScorers, dict]:
    """Fit every score normaliser and learned scorer on the sample (in hash order)."""
    sc = spec.scorers
    info: dict = {"sample": sample.num_rows}
    fitted = FittedScorers(
        quality=RankQuality().fit(sample),
        columns=[
            RankQuality({col.column: HIGHER if col.higher_is_better else LOWER}, output=f"q_{col.column}").fit(sample)
            for col in sc.columns
        ],
    )
    if sc.dsir:
        target = side_texts(sc.dsir.target)
        fitted.dsir = DSIR(sc.dsir.num_buckets, sc.dsir.ngrams).fit(sample.column(S.TEXT), target)
        info["dsir_target_docs"] = len(target)
    if sc.target_sim:
        target = side_texts(sc.target_sim.target)
        fitted.target_sim = TargetSimilarity(sc.target_sim.k).fit(from_fixed_list(embed_texts(target, False).column(S.EMB)))
        info["target_sim_docs"] = len(target)
    if sc.classifier:
        ref = embed_texts(side_texts(sc.classifier.reference), True)
        clf = QualityClassifier(model=sc.classifier.model, seed=spec.seed)
        fitted.classifier = clf.fit(ref, sample.slice(0, sc.classifier.pool_sample_size))
        info["classifier"] = {"model": clf.model_, "auc": clf.auc_, "reference_docs": clf.n_reference_, "pool_docs": clf.n_pool_}
    return fitted, info


def scorer_sample_columns(spec: JobSpec) -> list[str]:
    """Columns the scorers' fit sample needs from the embed phase's output."""
    cols = [S.DOC_ID, S.INVALID_REASON, S.EMB, *SIGNALS, *(c.column for c in spec.scorers.columns)]
    if spec.scorers.dsir:
        cols.append(S.TEXT)
    return cols


def score_batch(batch: pa.Table, scorers: Scorers, counter=None) -> pa.Table:
    """The function Ray maps over batches (Ray passes the batch first); counts its rows for progress."""
    from .progress import count_rows

    out = scorers.score(batch)
    count_rows(counter, batch.num_rows)
    return out
