"""The learned states of a job: fitted once on a sample, saved, then mapped over every batch.

`fit_states` runs on the driver over the bounded fit sample; `Scorers.score`
runs in Ray tasks. Every state saves to and loads from the job's work
directory, so a resumed job or a nightly reselection reuses it.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pyarrow as pa

from thresher.operators import schema as S
from thresher.operators.classifier import QualityClassifier
from thresher.operators.dedup import DuplicateMap
from thresher.operators.diversity import add_cluster_features
from thresher.operators.dsir import DSIR
from thresher.operators.embed import Embedder, ModelRef, embed_batch, from_fixed_list
from thresher.operators.heuristic_rules import apply_rules, rule_configs
from thresher.operators.kmeans import KMeans
from thresher.operators.quality import HIGHER, LOWER, RankQuality
from thresher.operators.signals import add_signals
from thresher.operators.target_sim import TargetSimilarity

from . import io
from .spec import CorpusRef, JobSpec


@dataclass
class Scorers:
    kmeans: KMeans
    quality: RankQuality
    domain: str = "cluster"
    columns: list[RankQuality] = field(default_factory=list)
    classifier: QualityClassifier | None = None
    dsir: DSIR | None = None
    target_sim: TargetSimilarity | None = None
    cluster_sizes: np.ndarray | None = None  # estimated documents per cluster in the pool
    rules: dict | None = None  # heuristic rule family configs, none = off
    duplicates: list[DuplicateMap] = field(default_factory=list)  # set per job from the dedup phase

    def score(self, batch: pa.Table) -> pa.Table:
        """Cluster, distance, size and rarity; every quality and utility score; domain. Drops `emb`."""
        emb = from_fixed_list(batch.column(S.EMB))
        invalid = ~np.asarray(batch.column(S.INVALID_REASON).is_null().to_numpy(zero_copy_only=False))
        cluster, dist = self.kmeans.transform(emb)
        out = batch.append_column(S.D_CLUSTER, pa.array(cluster, mask=invalid))
        out = out.append_column(S.D_CENTROID_DIST, pa.array(dist, mask=invalid))
        out = add_cluster_features(out, self.cluster_sizes)
        for step in [self.classifier, self.target_sim]:
            if step is not None:
                out = step.transform(out)
        out = out.drop_columns([S.EMB])
        if self.rules is not None:
            out = apply_rules(out, **rule_configs(self.rules))
        for step in [self.quality, *self.columns, self.dsir, *self.duplicates]:
            if step is not None:
                out = step.transform(out)
        dom = out.column(S.D_CLUSTER) if self.domain == "cluster" else out.column(self.domain)
        return out.append_column(S.DOMAIN, dom.cast(pa.string()))

    def save(self, d: Path) -> None:
        self.kmeans.save(d / "kmeans")
        self.quality.save(d / "quality")
        for i, c in enumerate(self.columns):
            c.save(d / f"column-{i}")
        for name in ("classifier", "dsir", "target_sim"):
            if getattr(self, name) is not None:
                getattr(self, name).save(d / name)
        np.save(d / "cluster_sizes.npy", self.cluster_sizes)
        (d / "scorers.json").write_text(json.dumps({"domain": self.domain, "columns": len(self.columns), "rules": self.rules}))

    @classmethod
    def load(cls, d: Path) -> "Scorers":
        meta = json.loads((d / "scorers.json").read_text())
        return cls(
            kmeans=KMeans.load(d / "kmeans"),
            quality=RankQuality.load(d / "quality"),
            domain=meta["domain"],
            rules=meta["rules"],
            columns=[RankQuality.load(d / f"column-{i}") for i in range(meta["columns"])],
            classifier=QualityClassifier.load(d / "classifier") if (d / "classifier").exists() else None,
            dsir=DSIR.load(d / "dsir") if (d / "dsir").exists() else None,
            target_sim=TargetSimilarity.load(d / "target_sim") if (d / "target_sim").exists() else None,
            cluster_sizes=np.load(d / "cluster_sizes.npy"),
        )


def fit_states(spec: JobSpec, sample: pa.Table, pool_size: int, model: ModelRef, device: str) -> tuple[Scorers, dict]:
    """Fit every learned state on the sample (sorted by doc_id); returns the states and facts for the manifest."""
    c, sc = spec.clustering, spec.scorers
    emb = from_fixed_list(sample.column(S.EMB))
    km = KMeans(c.n_clusters, c.n_iter, c.n_redo, seed=spec.seed).fit(emb[: c.sample_size])
    assigned, _ = km.transform(emb)
    counts = np.bincount(assigned, minlength=km.centroids_.shape[0]).astype(np.float64)
    info: dict = {"clusters": int(km.centroids_.shape[0]), "inertia": km.inertia_}
    scorers = Scorers(
        kmeans=km,
        quality=RankQuality().fit(sample.slice(0, sc.fit_sample_size)),
        domain=spec.selection.domain,
        columns=[
            RankQuality({col.column: HIGHER if col.higher_is_better else LOWER}, output=f"q_{col.column}").fit(sample)
            for col in sc.columns
        ],
        rules=sc.rules.model_dump() if sc.rules else None,
        cluster_sizes=np.round(counts * pool_size / max(len(assigned), 1)).astype(np.int64),
    )
    if sc.dsir:
        target = _side_texts(sc.dsir.target)
        scorers.dsir = DSIR(sc.dsir.num_buckets, sc.dsir.ngrams).fit(sample.column(S.TEXT), target)
        info["dsir_target_docs"] = len(target)
    if sc.target_sim or sc.classifier:
        embedder = Embedder(model, device=device)
    if sc.target_sim:
        target = _side_texts(sc.target_sim.target)
        scorers.target_sim = TargetSimilarity(sc.target_sim.k).fit(embedder.encode(target))
        info["target_sim_docs"] = len(target)
    if sc.classifier:
        texts = _side_texts(sc.classifier.reference)
        ref = pa.table({S.TEXT: texts, S.INVALID_REASON: pa.nulls(len(texts), pa.string())})
        ref = embed_batch(add_signals(ref), embedder)
        clf = QualityClassifier(model=sc.classifier.model, seed=spec.seed)
        scorers.classifier = clf.fit(ref, sample.slice(0, sc.classifier.pool_sample_size))
        info["classifier"] = {"model": clf.model_, "auc": clf.auc_, "reference_docs": clf.n_reference_, "pool_docs": clf.n_pool_}
    return scorers, info


def sample_columns(spec: JobSpec) -> list[str]:
    """Columns the fit sample needs from the embed phase's output."""
    from thresher.operators.signals import SIGNALS

    cols = [S.DOC_ID, S.INVALID_REASON, S.EMB, *SIGNALS, *(c.column for c in spec.scorers.columns)]
    if spec.scorers.dsir:
        cols.append(S.TEXT)
    return cols


def _side_texts(ref: CorpusRef) -> list[str]:
    return io.read_texts(ref.paths, ref.format, ref.text_column, ref.max_docs)


def score_batch(batch: pa.Table, scorers: Scorers) -> pa.Table:
    """The function Ray maps over batches (Ray passes the batch first)."""
    return scorers.score(batch)
