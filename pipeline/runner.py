"""A job, phase by phase, on Ray Data.

    embed   read -> validate -> signals -> embed (actor pool)      work/embed-KEY/
    fit     k-means + quality normaliser on a doc_id-keyed sample  work/fit-KEY/
    score   cluster, centroid distance, quality, domain            work/score-KEY/
    select  histograms -> strategy.fit -> copies per document      work/select-KEY/
    write   shards, rejected/, quarantine/, manifest -> rename     OUTPUT/

Each phase writes to a directory named by the hash of the spec parts it
depends on and marks it complete with `_SUCCESS`, so a killed job resumes at
the first incomplete phase and a nightly reselection with a new budget reuses
the embeddings, fitted states and scores.
"""

from __future__ import annotations

import json
import os
import shutil
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import ray
import ray.data

from thresher.operators import schema as S
from thresher.operators.embed import Embedder, ModelRef, embed_batch, from_fixed_list, resolve_model
from thresher.operators.dedup import DuplicateMap, ExactDuplicates, NearDuplicates
from thresher.operators.dsir import DSIR, DSIRResample
from thresher.operators.kmeans import KMeans
from thresher.operators.semdedup import SemanticDuplicates, SemDeDup, semdedup_group
from thresher.operators.histogram import DomainHistograms
from thresher.operators.quadmix import QuaDMix, QuaDMixParams
from thresher.operators.selection import FlagFilter, ThresholdFilter, TopK, Uniform, filter_reasons, select, uniform_from_ids
from thresher.operators.signals import SIGNALS, add_signals
from thresher.operators.validate import ValidateConfig, validate

from . import io, output
from .scoring import Scorers, fit_states, sample_columns, score_batch
from .spec import JobSpec

SUCCESS = "_SUCCESS"
READ_TASK_BYTES = 32 * 2**20
PREPARE_TASK_BYTES = 256 * 2**20


class JobError(RuntimeError):
    """A job that cannot go on; the message is meant for the user."""


@dataclass
class Context:
    spec: JobSpec
    work: Path
    log: Callable[[str], None]
    inputs: io.InputFiles
    timings: dict[str, dict] = field(default_factory=dict)
    model: ModelRef | None = None


# --- stages mapped over batches -------------------------------------------------


def prepare_batch(batch: pa.Table, cfg: ValidateConfig) -> pa.Table:
    return add_signals(validate(batch, cfg))


class EmbedStage:
    """Actor: loads the model once per worker, then embeds every batch it is given."""

    def __init__(self, ref: ModelRef, device: str, model_batch_size: int, threads: int):
        if device == "cpu":
            import torch

            torch.set_num_threads(threads)
        self.embedder = Embedder(ref, device=device, batch_size=model_batch_size)

    def __call__(self, batch: pa.Table) -> pa.Table:
        return embed_batch(batch, self.embedder)


# --- phases ---------------------------------------------------------------------


def run(spec: JobSpec, log: Callable[[str], None] = print, progress: bool = True) -> dict:
    """Run a job to completion (resuming from its work directory) and return its manifest."""
    out_path = Path(spec.output.path)
    if out_path.exists() and not spec.output.overwrite:
        raise JobError(f"output {out_path} already exists (set output.overwrite: true to replace it)")
    work = Path(spec.output.work_dir or f"{out_path}.work")
    t0 = time.perf_counter()
    ctx = Context(spec, work, log, io.locate(spec.input.paths, spec.input.format, validate_config(spec)))
    _check_columns(spec, ctx.inputs)
    work.mkdir(parents=True, exist_ok=True)
    _init_ray(spec, progress)
    keys = phase_keys(spec)
    t = time.perf_counter()
    ctx.model = resolve_model(spec.embedder.model)  # extract / distill once, on the driver
    ctx.timings["model"] = {"seconds": round(time.perf_counter() - t, 3), "path": ctx.model.path}
    embed_dir = _phase(ctx, "embed", keys["embed"], embed_phase)
    fit_dir = _phase(ctx, "fit", keys["fit"], lambda c, d: fit_phase(c, d, embed_dir))
    dedup_dir = _phase(ctx, "dedup", keys["dedup"], lambda c, d: dedup_phase(c, d, embed_dir, fit_dir))
    score_dir = _phase(ctx, "score", keys["score"], lambda c, d: score_phase(c, d, embed_dir, fit_dir, dedup_dir))
    select_dir = _phase(ctx, "select", keys["select"], lambda c, d: select_phase(c, d, score_dir, fit_dir))
    return output.publish(spec, Path(select_dir), Path(embed_dir), ctx.timings, log, started=t0)


def scored_columns(spec: JobSpec) -> set[str]:
    """Columns the score phase will have written, for checking a spec before any work."""
    sc = spec.scorers
    cols = {*SIGNALS, S.N_TOKENS, S.Q_HEURISTIC, S.D_CLUSTER, S.D_CENTROID_DIST, S.D_CLUSTER_SIZE, S.D_CLUSTER_RARITY}
    cols |= {f"q_{c.column}" for c in sc.columns}
    for enabled, col in ((sc.classifier, S.Q_CLASSIFIER), (sc.dsir, S.U_DSIR), (sc.target_sim, S.U_TARGET_SIM), (sc.semdedup, S.D_SEMDUP)):
        if enabled:
            cols.add(col)
    if sc.rules:
        names = {"gopher_quality": S.Q_RULE_GOPHER_QUALITY, "gopher_repetition": S.Q_RULE_GOPHER_REPETITION, "c4": S.Q_RULE_C4, "fineweb": S.Q_RULE_FINEWEB}
        cols |= {col for family, col in names.items() if getattr(sc.rules, family) is not None}
    if sc.dedup and sc.dedup.exact:
        cols.add(S.D_EXACT_DUP)
    if sc.dedup and sc.dedup.near:
        cols.add(S.D_NEAR_DUP)
    return cols


def _check_columns(spec: JobSpec, inputs: io.InputFiles) -> None:
    """Columns the selection reads must exist before any work starts."""
    sel = spec.selection
    computed = scored_columns(spec)
    if inputs.format == "parquet":
        given = set(pq.read_schema(inputs.files[0], filesystem=inputs.fs).names)
    else:  # JSONL keys are only known after parsing; the domain key is lifted out explicitly
        given = {sel.domain}
    if sel.domain != "cluster" and sel.domain not in given:
        raise JobError(f"selection.domain: no input column {sel.domain!r}")
    for i, f in enumerate(sel.filters):
        if f.column not in computed | given:
            raise JobError(f"selection.filters.{i}.column: no column {f.column!r}")
    for i, col in enumerate(sel.exclude):
        if col not in computed:
            raise JobError(f"selection.exclude.{i}: no decision column {col!r} (is its scorer enabled?)")
    for p in [sel.quadmix, *sel.domains.values()]:
        for col in p.alpha:
            if col not in computed | given:
                raise JobError(f"selection.quadmix.alpha: no quality column {col!r}")


def phase_keys(spec: JobSpec) -> dict[str, str]:
    """Each phase's cache key: a hash of exactly the spec parts its output depends on.

    Batch sizes, actor counts and Ray settings are left out: they change how a
    job runs, never what it produces.
    """
    import hashlib

    spec_json = spec.model_dump(mode="json")
    scorers = dict(spec_json["scorers"])
    duplicates = {k: scorers.pop(k) for k in ("dedup", "semdedup")}
    parts = {
        "embed": [spec_json["input"], spec.embedder.model],
        "fit": [spec_json["clustering"], scorers, spec.seed],
        "dedup": [duplicates],
        "score": [spec.selection.domain],
        "select": [spec_json["selection"]],
    }
    keys, chain = {}, []
    for name, extra in parts.items():
        chain.append(extra)
        keys[name] = hashlib.sha256(json.dumps(chain, sort_keys=True).encode()).hexdigest()[:16]
    return keys


def _phase(ctx: Context, name: str, key: str, body: Callable[[Context, Path], dict]) -> str:
    d = ctx.work / f"{name}-{key}"
    marker = d / SUCCESS
    if marker.exists():
        info = json.loads(marker.read_text())
        ctx.timings[name] = info | {"reused": True}
        ctx.log(f"[{name}] reusing {d}")
        return str(d)
    shutil.rmtree(d, ignore_errors=True)
    d.mkdir(parents=True)
    ctx.log(f"[{name}] running")
    t = time.perf_counter()
    info = body(ctx, d)
    info["seconds"] = round(time.perf_counter() - t, 3)
    if info.get("rows"):
        info["docs_per_s"] = round(info["rows"] / max(info["seconds"], 1e-9), 1)
    marker.write_text(json.dumps(info))
    ctx.timings[name] = info
    ctx.log(f"[{name}] done in {info['seconds']:.1f}s")
    return str(d)


def _init_ray(spec: JobSpec, progress: bool) -> None:
    # Ray Data packs Parquet row groups into read tasks of this many uncompressed
    # bytes (default 128 MiB), and a fused read -> map -> write task holds its
    # whole output until the write (bench/RESULTS.md, memory): a smaller unit
    # bounds each worker.  Read on the driver when a read is planned.
    os.environ.setdefault("RAY_DATA_PARQUET_BIN_PACKING_BYTES", str(READ_TASK_BYTES))
    if not ray.is_initialized():
        if spec.ray.address:
            ray.init(address=spec.ray.address, log_to_driver=False)
        else:
            # Ray Data indexes Parquet footers with 32 actors per read (one Python
            # process each) whatever the machine; on a laptop-sized local Ray that
            # start-up costs more than our few files' footers (bench/RESULTS.md).
            # Workers inherit the driver's environment; a value the user set wins.
            cpus = spec.ray.num_cpus or os.cpu_count() or 1
            os.environ.setdefault("RAY_DATA_PARQUET_FOOTER_NUM_ACTORS", str(min(32, cpus)))
            ray.init(
                num_cpus=spec.ray.num_cpus,
                object_store_memory=spec.ray.object_store_mb * 2**20 if spec.ray.object_store_mb else None,
                include_dashboard=False,
                log_to_driver=False,
            )
    dctx = ray.data.DataContext.get_current()
    # Without a limit Ray Data lets a fast reader run ahead of a slow embedder
    # until half the object store is full: memory then follows the corpus up
    # to that point (bench/RESULTS.md, memory).
    dctx.execution_options.resource_limits = ray.data.ExecutionResources(object_store_memory=spec.ray.buffer_mb * 2**20)
    dctx.enable_progress_bars = progress
    dctx.print_on_execution_start = False


def validate_config(spec: JobSpec) -> ValidateConfig:
    i = spec.input
    domain = None if spec.selection.domain == "cluster" else spec.selection.domain
    return ValidateConfig(i.text_column, i.id_column, i.token_column, i.max_bytes, i.bytes_per_token, domain)


def embed_phase(ctx: Context, d: Path) -> dict:
    spec = ctx.spec
    cfg = validate_config(spec)
    ds = io.read_raw(ctx.inputs, cfg)
    device = _device(spec)
    # Ray Data fuses consecutive maps whose remote args are equal. Prepare's
    # memory request (a batch of text and its polars intermediates) makes them
    # differ, so prepare stays out of the embedding actor: fused, a CPU actor
    # would validate and compute signals between its batches instead of
    # leaving that to another core (50k static docs: embed phase 102.7 s
    # fused, 84.7 s not; bench/RESULTS.md).
    ds = ds.map_batches(
        prepare_batch,
        fn_kwargs={"cfg": cfg},
        batch_format="pyarrow",
        batch_size=spec.embedder.batch_size,
        memory=PREPARE_TASK_BYTES,
    )
    gpu = device.startswith("cuda")
    if not gpu:
        _check_cpu_budget(spec)
    ds = ds.map_batches(
        EmbedStage,
        fn_constructor_kwargs={
            "ref": ctx.model,
            "device": device,
            "model_batch_size": spec.embedder.model_batch_size,
            "threads": max(1, int(spec.embedder.cpus_per_actor)),
        },
        batch_format="pyarrow",
        batch_size=spec.embedder.batch_size,
        compute=ray.data.ActorPoolStrategy(size=spec.embedder.actors),
        num_gpus=1 if gpu else 0,
        num_cpus=0 if gpu else spec.embedder.cpus_per_actor,
    )
    ds.write_parquet(str(d / "data"))
    rows = _count(d / "data")
    return {"rows": rows, "files": len(ctx.inputs.files), "device": device, "model": spec.embedder.model}


def _device(spec: JobSpec) -> str:
    """auto = CUDA when the cluster has GPUs (the driver itself may be a CPU-only head node)."""
    if spec.embedder.device != "auto":
        return spec.embedder.device
    return "cuda" if ray.cluster_resources().get("GPU", 0) > 0 else "cpu"


def _check_cpu_budget(spec: JobSpec) -> None:
    """CPU actors hold their CPUs for the whole phase; reading needs one more, or the job stalls."""
    total = ray.cluster_resources().get("CPU", 0)
    held = spec.embedder.actors * spec.embedder.cpus_per_actor
    if held + 1 > total:
        raise JobError(
            f"embedder.actors x embedder.cpus_per_actor = {held:g} CPUs leaves none of the cluster's {total:g} "
            "for reading; lower them (fractions are fine) or raise ray.num_cpus"
        )


def _count(directory: Path) -> int:
    return sum(pq.ParquetFile(f).metadata.num_rows for f in sorted(directory.glob("*.parquet")))


def _read(directory: str | Path, columns: list[str] | None = None) -> ray.data.Dataset:
    """A phase's output as a Dataset (optionally only some columns)."""
    return ray.data.read_parquet(str(Path(directory) / "data"), columns=columns)


def _iter_tables(directory: str | Path, columns: list[str]):
    """Stream narrow columns of a phase's output on the driver, file by file, batch by batch."""
    for f in sorted((Path(directory) / "data").glob("*.parquet")):
        for rb in pq.ParquetFile(f).iter_batches(columns=columns, batch_size=65536):
            yield pa.Table.from_batches([rb])


def fit_phase(ctx: Context, d: Path, embed_dir: str) -> dict:
    """Fit every learned state on a sample chosen by doc_id hash.

    Choosing by hash (not by block) and sorting by doc_id make the sample, and
    so the centroids and every fitted score, independent of how the embed phase
    happened to partition the data.
    """
    spec = ctx.spec
    valid = sum(int(t.column(S.INVALID_REASON).null_count) for t in _iter_tables(embed_dir, [S.INVALID_REASON]))
    if valid == 0:
        raise JobError("no valid documents in the input: nothing to fit (see the quarantine counts)")
    target = max(spec.clustering.sample_size, spec.scorers.fit_sample_size)
    rate = min(1.0, target / valid)
    parts = []
    for t in _iter_tables(embed_dir, sample_columns(spec)):
        t = t.filter(t.column(S.INVALID_REASON).is_null())
        u = uniform_from_ids(f"fit-{spec.seed}", t.column(S.DOC_ID).to_pylist())
        parts.append(t.filter(pa.array(u < rate)))
    sample = pa.concat_tables(parts).sort_by(S.DOC_ID)
    scorers, info = fit_states(spec, sample, valid, ctx.model, _device(spec))
    scorers.save(d)
    return {"rows": sample.num_rows, **info}


def dedup_phase(ctx: Context, d: Path, embed_dir: str, fit_dir: str) -> dict:
    """Corpus-wide duplicate decisions, saved as doc_id -> kept doc_id maps.

    Exact and near duplicates stream text through the driver (hashes and
    MinHash signatures are kept, not text); SemDeDup runs as a Ray Data
    group-by on the k-means cluster, so memory is bounded by the largest
    cluster (processed in blocks), not by the corpus.
    """
    sc = ctx.spec.scorers
    info: dict = {}
    finders = []
    if sc.dedup and sc.dedup.exact:
        finders.append(("exact", ExactDuplicates()))
    if sc.dedup and sc.dedup.near:
        finders.append(("near", NearDuplicates(sc.dedup.threshold, sc.dedup.num_perm, sc.dedup.ngram)))
    if finders:
        for t in _iter_tables(embed_dir, [S.DOC_ID, S.TEXT, S.INVALID_REASON]):
            t = t.filter(t.column(S.INVALID_REASON).is_null())
            for _, f in finders:
                f.add(t)
        for name, f in finders:
            f.resolve()
            f.save(d / name)
            info[f"{name}_duplicates"] = len(f.duplicate_ids_)
    if sc.semdedup:
        p = sc.semdedup
        kmeans = KMeans.load(Path(fit_dir) / "kmeans")
        groups = (
            _read(embed_dir, [S.DOC_ID, S.EMB, S.INVALID_REASON])
            .map_batches(assign_clusters, fn_args=[kmeans], batch_format="pyarrow", batch_size=4096)
            .groupby(S.D_CLUSTER)
            .map_groups(semdedup_group, fn_args=[SemDeDup(p.epsilon, p.order, ctx.spec.seed, p.block)], batch_format="pyarrow")
        )
        pairs = [b for b in groups.iter_batches(batch_format="pyarrow", batch_size=None)]
        table = pa.concat_tables(pairs) if pairs else pa.table({S.DOC_ID: pa.array([], pa.string()), S.D_SEMDUP_OF: pa.array([], pa.string())})
        SemanticDuplicates.from_pairs(table.column(S.DOC_ID).combine_chunks(), table.column(S.D_SEMDUP_OF).combine_chunks()).save(d / "semdedup")
        info["semantic_duplicates"] = table.num_rows
    return info


def assign_clusters(batch: pa.Table, kmeans: KMeans) -> pa.Table:
    """Valid rows with their cluster and centroid distance: the input of SemDeDup's group-by."""
    batch = batch.filter(batch.column(S.INVALID_REASON).is_null()).drop_columns([S.INVALID_REASON])
    cluster, dist = kmeans.transform(from_fixed_list(batch.column(S.EMB)))
    return batch.append_column(S.D_CLUSTER, pa.array(cluster)).append_column(S.D_CENTROID_DIST, pa.array(dist))


def load_duplicate_maps(dedup_dir: Path) -> list[DuplicateMap]:
    kinds = {"exact": ExactDuplicates, "near": NearDuplicates, "semdedup": SemanticDuplicates}
    return [cls.load(dedup_dir / name) for name, cls in kinds.items() if (dedup_dir / name).exists()]


def score_phase(ctx: Context, d: Path, embed_dir: str, fit_dir: str, dedup_dir: str) -> dict:
    scorers = Scorers.load(Path(fit_dir))
    scorers.duplicates = load_duplicate_maps(Path(dedup_dir))
    ds = _read(embed_dir).map_batches(score_batch, fn_args=[scorers], batch_format="pyarrow", batch_size=4096)
    ds.write_parquet(str(d / "data"))
    return {"rows": _count(d / "data")}


def make_strategy(spec: JobSpec, fit_dir: Path):
    sel = spec.selection

    def params(p) -> QuaDMixParams:
        return QuaDMixParams(p.lam, p.omega, p.eta, p.epsilon, dict(p.alpha))

    if sel.strategy == "quadmix":
        return QuaDMix(params(sel.quadmix), {k: params(v) for k, v in sel.domains.items()})
    if sel.strategy == "topk":
        return TopK(dict(sel.quadmix.alpha))
    if sel.strategy == "dsir":
        return DSIRResample.from_dsir(DSIR.load(fit_dir / "dsir"), seed=spec.seed)
    return Uniform()


def select_phase(ctx: Context, d: Path, score_dir: str, fit_dir: str) -> dict:
    spec = ctx.spec
    sel = spec.selection
    filters = [*(FlagFilter(c) for c in sel.exclude), *(ThresholdFilter(f.column, f.min, f.max) for f in sel.filters)]
    strategy = make_strategy(spec, Path(fit_dir))
    alpha_cols = {c for p in [sel.quadmix, *sel.domains.values()] for c in p.alpha}
    cols = sorted({S.DOC_ID, S.INVALID_REASON, S.DOMAIN, S.N_TOKENS, *alpha_cols, *(f.column for f in filters), *getattr(strategy, "columns", ())})
    hist = DomainHistograms(sel.percentile_bins)
    for t in _iter_tables(score_dir, cols):
        t = t.filter(t.column(S.INVALID_REASON).is_null())
        ok = np.equal(filter_reasons(t, filters), None)
        t = t.filter(pa.array(ok))
        if t.num_rows:
            keys, scores = strategy.keys_and_scores(t)
            hist.add(keys, scores, np.asarray(t.column(S.N_TOKENS).to_numpy(zero_copy_only=False)))
    budget = sel.budget
    strategy.fit(hist, budget.unit if budget else None, budget.amount if budget else None)
    hist.save(d / "histograms.json")
    ds = _read(score_dir).map_batches(
        select, fn_kwargs={"strategy": strategy, "seed": spec.seed, "filters": filters}, batch_format="pyarrow", batch_size=4096
    )
    ds.write_parquet(str(d / "data"))
    info = {"rows": _count(d / "data")}
    if hasattr(strategy, "scale_"):
        info["quadmix_scale"] = strategy.scale_
    return info
