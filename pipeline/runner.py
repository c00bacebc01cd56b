"""A job on Ray Data: the plan (`PHASES`, one list) and the body of each phase.

    embed     read -> validate -> signals -> embed (actor pool)          reads input files, input.*, embedder.model
    clusters  k-means + cluster sizes on a hash-ordered sample           reads clustering, seed
    fit       rank normalisers, classifier, DSIR, target set              reads scorers (fits), their side corpora, seed
    dedup     exact + MinHash near duplicates                             reads scorers.dedup
    semdedup  SemDeDup within each k-means cluster                        reads scorers.semdedup, seed
    score     every score column, duplicate flags                         reads scorers.rules
    select    histograms -> strategy.fit -> doc_id + sel_* per file       reads selection, seed
    write     shards (score + select joined), rejected/, quarantine/, manifest -> rename

Each phase's cache key is the hash of what it reads plus the keys of the
phases it needs (`pipeline/plan.py`), so a new input file re-embeds, a rule
threshold rescores without refitting k-means, and a new budget reselects only.
"""

from __future__ import annotations

import contextlib
import os
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Iterator

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import ray
import ray.data

from thresher.operators import schema as S
from thresher.operators.dedup import DuplicateMap, ExactDuplicates, NearDuplicates
from thresher.operators.embed import Embedder, ModelRef, embed_batch, from_fixed_list, resolve_model
from thresher.operators.histogram import DomainHistograms
from thresher.operators.kmeans import KMeans
from thresher.operators.selection import FlagFilter, ThresholdFilter, filter_reasons, select, uniform_from_ids
from thresher.operators.semdedup import SemanticDuplicates, SemDeDup, semdedup_group
from thresher.operators.signals import SIGNALS, add_signals
from thresher.operators.validate import ValidateConfig, lift_json_keys, validate

from . import io, output
from .errors import InputError, JobError, SpecError
from .events import OnEvent, RunStatus
from .plan import Phase, WorkDir, downstream, phase_keys
from .progress import PhaseProgress, count_rows
from .scoring import Clusters, FittedScorers, Scorers, fit_clusters, fit_scorers, score_batch, scorer_sample_columns
from .spec import CorpusRef, JobSpec

READ_TASK_BYTES = 32 * 2**20
PREPARE_TASK_BYTES = 256 * 2**20
JSONL_SAMPLE_LINES = 1000


@dataclass
class Lift:
    """JSONL keys a phase reads, lifted out of the `metadata` column (nothing for Parquet)."""

    numeric: list[str] = field(default_factory=list)
    text: list[str] = field(default_factory=list)

    def apply(self, t: pa.Table, wanted: set[str]) -> pa.Table:
        num = [k for k in self.numeric if k in wanted and k not in t.column_names]
        txt = [k for k in self.text if k in wanted and k not in t.column_names]
        return lift_json_keys(t, num, txt) if num or txt else t


@dataclass
class Context:
    spec: JobSpec
    work: WorkDir
    log: Callable[[str], None]
    emit: OnEvent
    inputs: io.InputFiles
    side: dict[str, io.InputFiles]  # side corpora by spec field
    lift: Lift
    model: ModelRef | None = None
    timings: dict[str, dict] = field(default_factory=dict)
    warnings: list[str] = field(default_factory=list)
    progress: PhaseProgress | None = None  # the running phase's row count

    def warn(self, message: str) -> None:
        self.warnings.append(message)
        self.log(f"warning: {message}")
        self.emit({"event": "warning", "message": message})


# --- the plan -------------------------------------------------------------------


def _side_corpora(spec: JobSpec) -> dict[str, CorpusRef]:
    sc = spec.scorers
    refs = {
        "scorers.classifier.reference": sc.classifier.reference if sc.classifier else None,
        "scorers.dsir.target": sc.dsir.target if sc.dsir else None,
        "scorers.target_sim.target": sc.target_sim.target if sc.target_sim else None,
    }
    return {k: v for k, v in refs.items() if v is not None}


def _reads_embed(spec: JobSpec, fp: dict) -> dict:
    return {"input": spec.input.model_dump(mode="json", exclude={"paths"}), "files": fp["input"], "model": spec.embedder.model}


def _reads_fit(spec: JobSpec, fp: dict) -> dict:
    sc = spec.scorers.model_dump(mode="json", include={"fit_sample_size", "classifier", "columns", "dsir", "target_sim"})
    return {"scorers": sc, "side_files": {k: v for k, v in fp.items() if k != "input"}, "seed": spec.seed}


def _reads_selection(spec: JobSpec, fp: dict) -> dict:
    return {"selection": spec.selection.model_dump(mode="json"), "seed": spec.seed}


def embed_phase(ctx: Context, d: Path, needed: dict) -> dict:
    spec = ctx.spec
    cfg = validate_config(spec)
    ds = io.read_raw(ctx.inputs, cfg)
    # Ray Data fuses consecutive maps whose remote args are equal. Prepare's
    # memory request (a batch of text and its polars intermediates) makes them
    # differ, so prepare stays out of the embedding actor: fused, a CPU actor
    # would validate and compute signals between its batches instead of
    # leaving that to another core (50k static docs: embed phase 102.7 s
    # fused, 84.7 s not; bench/RESULTS.md).
    ds = ds.map_batches(prepare_batch, fn_kwargs={"cfg": cfg}, batch_format="pyarrow", batch_size=spec.embedder.batch_size, memory=PREPARE_TASK_BYTES)
    _embedding(ctx, ds).write_parquet(str(d / "data"))
    return {"rows": _count(d / "data"), "files": len(ctx.inputs.files), "device": _device(spec), "model": spec.embedder.model}


def clusters_phase(ctx: Context, d: Path, needed: dict) -> dict:
    valid = _valid_rows(needed["embed"])
    sample = _fit_sample(ctx, needed["embed"], [S.DOC_ID, S.INVALID_REASON, S.EMB], ctx.spec.clustering.sample_size, valid)
    clusters, info = fit_clusters(ctx.spec, sample, valid)
    clusters.save(d)
    return {"rows": sample.num_rows, **info}


def fit_phase(ctx: Context, d: Path, needed: dict) -> dict:
    spec = ctx.spec
    sample = _fit_sample(ctx, needed["embed"], scorer_sample_columns(spec), spec.scorers.fit_sample_size, _valid_rows(needed["embed"]))
    fitted, info = fit_scorers(spec, sample, lambda ref: _side_texts(ctx, ref), lambda texts, sig: embed_texts(ctx, texts, sig))
    fitted.save(d)
    return {"rows": sample.num_rows, **info}


def dedup_phase(ctx: Context, d: Path, needed: dict) -> dict:
    """Exact and near duplicates: text streams through the driver, hashes and MinHash signatures are kept."""
    p = ctx.spec.scorers.dedup
    finders = [(n, f) for n, f, on in (("exact", ExactDuplicates(), p.exact), ("near", NearDuplicates(p.threshold, p.num_perm, p.ngram), p.near)) if on]
    for t in _iter_tables(needed["embed"], [S.DOC_ID, S.TEXT, S.INVALID_REASON]):
        ctx.progress.add(t.num_rows)
        t = t.filter(t.column(S.INVALID_REASON).is_null())
        for _, f in finders:
            f.add(t)
    info = {"rows": ctx.progress.rows()}
    for name, f in finders:
        f.resolve()
        f.save(d / name)
        info[f"{name}_duplicates"] = len(f.duplicate_ids_)
    return info


def semdedup_phase(ctx: Context, d: Path, needed: dict) -> dict:
    """SemDeDup as a Ray Data group-by on the k-means cluster: memory bounded by the largest cluster (in blocks)."""
    p = ctx.spec.scorers.semdedup
    kmeans = Clusters.load(needed["clusters"]).kmeans
    groups = (
        _read(needed["embed"], [S.DOC_ID, S.EMB, S.INVALID_REASON])
        .map_batches(assign_clusters, fn_args=[kmeans], batch_format="pyarrow", batch_size=4096)
        .groupby(S.D_CLUSTER)
        .map_groups(semdedup_group, fn_args=[SemDeDup(p.epsilon, p.order, ctx.spec.seed, p.block)], batch_format="pyarrow")
    )
    pairs = list(groups.iter_batches(batch_format="pyarrow", batch_size=None))
    empty = pa.table({S.DOC_ID: pa.array([], pa.string()), S.D_SEMDUP_OF: pa.array([], pa.string())})
    table = pa.concat_tables(pairs) if pairs else empty
    SemanticDuplicates.from_pairs(table.column(S.DOC_ID).combine_chunks(), table.column(S.D_SEMDUP_OF).combine_chunks()).save(d / "semdedup")
    return {"semantic_duplicates": table.num_rows}


def score_phase(ctx: Context, d: Path, needed: dict) -> dict:
    sc = ctx.spec.scorers
    duplicates: list[DuplicateMap] = []
    if needed.get("dedup"):
        duplicates += [cls.load(needed["dedup"] / n) for n, cls in (("exact", ExactDuplicates), ("near", NearDuplicates)) if (needed["dedup"] / n).exists()]
    if needed.get("semdedup"):
        duplicates.append(SemanticDuplicates.load(needed["semdedup"] / "semdedup"))
    scorers = Scorers(
        Clusters.load(needed["clusters"]),
        FittedScorers.load(needed["fit"]),
        rules=sc.rules.model_dump() if sc.rules else None,
        duplicates=duplicates,
        lift_numeric=[c.column for c in sc.columns if c.column in ctx.lift.numeric],
    )
    ds = _read(needed["embed"]).map_batches(score_batch, fn_args=[scorers, ctx.progress.counter], batch_format="pyarrow", batch_size=4096)
    ds.write_parquet(str(d / "data"))
    return {"rows": _count(d / "data")}


def select_phase(ctx: Context, d: Path, needed: dict) -> dict:
    """Fit the strategy on corpus-wide histograms, then write doc_id + domain + sel_* beside each score file.

    The output is narrow and row-group aligned with the score files (same file
    names, same row groups), so a new budget or strategy costs a few bytes per
    document in the work directory, and the writer joins the two while it streams.
    """
    spec = ctx.spec
    sel = spec.selection
    filters = [*(FlagFilter(c) for c in sel.exclude), *(ThresholdFilter(f.column, f.min, f.max) for f in sel.filters)]
    strategy = sel.build(needed["fit"], spec.seed)
    cols = sorted({S.DOC_ID, S.INVALID_REASON, S.N_TOKENS, _domain_source(sel.domain), *(f.column for f in filters), *strategy.columns})
    hist = DomainHistograms(sel.percentile_bins)
    for t in _iter_tables(needed["score"], cols, ctx.lift):
        ctx.progress.add(t.num_rows)
        t = with_domain(t.filter(t.column(S.INVALID_REASON).is_null()), sel.domain)
        t = t.filter(pa.array(np.equal(filter_reasons(t, filters), None)))
        if t.num_rows:
            keys, scores = strategy.keys_and_scores(t)
            hist.add(keys, scores, np.asarray(t.column(S.N_TOKENS).to_numpy(zero_copy_only=False)))
    budget = sel.budget
    strategy.fit(hist, budget.unit if budget else None, budget.amount if budget else None)
    facts = strategy.facts()
    if facts.get("shortfall"):
        message = (
            f"the eligible pool fills {facts['expected']:.6g} of the {budget.amount:.6g} {budget.unit} budget "
            f"({sel.strategy}, at most {facts['max_copies']} copies per document)"
        )
        if sel.on_shortfall == "error":
            raise JobError(message + "; lower selection.budget, loosen the filters or set selection.on_shortfall: warn")
        ctx.warn(message)
    hist.save(d / "histograms.json")
    files = sorted((needed["score"] / "data").glob("*.parquet"))
    (d / "data").mkdir()
    task = {"strategy": strategy, "seed": spec.seed, "filters": filters, "columns": cols, "domain": sel.domain, "lift": ctx.lift, "out": str(d / "data"), "counter": ctx.progress.counter}
    ray.data.from_items([{"file": str(f)} for f in files], override_num_blocks=max(1, len(files))).map(select_file, fn_kwargs=task).take_all()
    return {"rows": _count(d / "data"), "strategy": sel.strategy, **facts}


PHASES: list[Phase] = [
    Phase("embed", (), _reads_embed, embed_phase),
    Phase("clusters", ("embed",), lambda s, fp: {"clustering": s.clustering.model_dump(mode="json"), "seed": s.seed}, clusters_phase),
    Phase("fit", ("embed",), _reads_fit, fit_phase),
    Phase("dedup", ("embed",), lambda s, fp: s.scorers.dedup.model_dump(mode="json"), dedup_phase, when=lambda s: s.scorers.dedup is not None),
    Phase("semdedup", ("embed", "clusters"), lambda s, fp: {"semdedup": s.scorers.semdedup.model_dump(mode="json"), "seed": s.seed}, semdedup_phase, when=lambda s: s.scorers.semdedup is not None),
    Phase("score", ("embed", "clusters", "fit", "dedup", "semdedup"), lambda s, fp: {"rules": s.scorers.rules.model_dump(mode="json") if s.scorers.rules else None}, score_phase),
    Phase("select", ("score", "fit"), _reads_selection, select_phase),
]
PHASE_NAMES = [p.name for p in PHASES]


# --- running the plan --------------------------------------------------------------


def run(
    spec: JobSpec,
    log: Callable[[str], None] = print,
    progress: bool = True,
    on_event: OnEvent | None = None,
    force: tuple[str, ...] = (),
    capture_output: bool = False,
) -> dict:
    """Run a job to completion (resuming from its work directory) and return its manifest.

    `force` names phases to rerun even when complete (and so every phase after
    them); `on_event` receives the run events (also written to WORK/status.json
    and WORK/events.jsonl); log lines also go to WORK/job.log. With
    `capture_output`, everything written to file descriptors 1 and 2 while the
    job runs (Ray's logs and warnings, model banners) goes to WORK/job.log too.
    """
    t0 = time.perf_counter()
    unknown = sorted(set(force) - set(PHASE_NAMES))
    if unknown:
        raise SpecError(f"--force: no phase {unknown[0]!r} (phases: {', '.join(PHASE_NAMES)})")
    out_path = Path(spec.output.path)
    work_path = Path(spec.output.work_dir or f"{out_path}.work")
    inputs, side = preflight(spec, out_path, work_path)
    with WorkDir(work_path) as work, _output_to(work.path / "job.log", capture_output):
        status = RunStatus(work.path)

        def emit(event: dict) -> None:
            status(event)
            if on_event is not None:
                on_event(event)

        def log_line(message: str) -> None:
            with open(work.path / "job.log", "a") as fh:
                fh.write(f"{time.strftime('%Y-%m-%d %H:%M:%S')} {message}\n")
            log(message)

        ctx = Context(spec, work, log_line, emit, inputs, side, lift_for(spec, inputs))
        try:
            manifest = _run_plan(ctx, progress, set(force), t0)
        except BaseException as e:
            emit({"event": "job_failed", "error": f"{type(e).__name__}: {e}"})
            raise
        emit({"event": "job_end", "output": str(out_path), "counts": manifest["counts"]})
        return manifest


@contextlib.contextmanager
def _output_to(path: Path, enabled: bool) -> Iterator[None]:
    """Send file descriptors 1 and 2 (this process's and anything it starts) to PATH for the duration."""
    if not enabled:
        yield
        return
    sys.stdout.flush()
    sys.stderr.flush()
    saved = os.dup(1), os.dup(2)
    with open(path, "a") as fh:
        os.dup2(fh.fileno(), 1)
        os.dup2(fh.fileno(), 2)
    try:
        yield
    finally:
        sys.stdout.flush()
        sys.stderr.flush()
        for fd, copy in zip((1, 2), saved):
            os.dup2(copy, fd)
            os.close(copy)


def _fingerprints(inputs: io.InputFiles, side: dict[str, io.InputFiles]) -> dict[str, list[dict]]:
    return {"input": inputs.fingerprint(), **{k: v.fingerprint() for k, v in side.items()}}


def keys_for(spec: JobSpec) -> dict[str, str | None]:
    """Each phase's key for a spec, with the inputs as they are now (None for a phase that is off)."""
    inputs = io.locate(spec.input.paths, spec.input.format, validate_config(spec))
    side = {k: io.locate(r.paths, r.format, ValidateConfig(text_column=r.text_column)) for k, r in _side_corpora(spec).items()}
    return phase_keys(PHASES, spec, _fingerprints(inputs, side))


def job_phase_dirs(spec: JobSpec) -> list[str]:
    """The phase directory names a spec's job uses in its work directory."""
    return [f"{name}-{key}" for name, key in keys_for(spec).items() if key]


def _run_plan(ctx: Context, progress: bool, force: set[str], t0: float) -> dict:
    spec = ctx.spec
    fingerprints = _fingerprints(ctx.inputs, ctx.side)
    keys = phase_keys(PHASES, spec, fingerprints)
    forced = downstream(PHASES, force)
    _init_ray(spec, progress)
    t = time.perf_counter()
    ctx.model = resolve_model(spec.embedder.model)  # extract / distill once, on the driver
    ctx.timings["model"] = {"seconds": round(time.perf_counter() - t, 3), "path": ctx.model.path}
    dirs: dict[str, Path | None] = {}
    for phase in PHASES:
        key = keys[phase.name]
        if key is None:
            dirs[phase.name] = None
            continue
        info = None if phase.name in forced else ctx.work.done(phase.name, key)
        if info is not None:
            ctx.log(f"[{phase.name}] reusing {ctx.work.phase_dir(phase.name, key)}")
            ctx.emit({"event": "phase_reused", "phase": phase.name, "key": key})
            info = info | {"reused": True}
        else:
            info = _run_phase(ctx, phase, key, {n: dirs[n] for n in phase.needs})
        ctx.timings[phase.name] = info | {"key": key}
        dirs[phase.name] = ctx.work.phase_dir(phase.name, key)
    facts = {
        "inputs": {"format": ctx.inputs.format, "files": fingerprints["input"], "side": {k: v for k, v in fingerprints.items() if k != "input"}},
        "warnings": ctx.warnings,
    }
    return output.publish(spec, dirs, ctx.timings, facts, ctx.log, started=t0)


def _run_phase(ctx: Context, phase: Phase, key: str, needed: dict[str, Path | None]) -> dict:
    ctx.log(f"[{phase.name}] running")
    ctx.emit({"event": "phase_start", "phase": phase.name, "key": key})
    t = time.perf_counter()

    def body(d: Path) -> dict:
        info = phase.run(ctx, d, needed)
        info["seconds"] = round(time.perf_counter() - t, 3)
        if info.get("rows"):
            info["docs_per_s"] = round(info["rows"] / max(info["seconds"], 1e-9), 1)
        return info

    with PhaseProgress(ctx.emit, phase.name, _rows_total(ctx, phase.name)) as ctx.progress:
        info = ctx.work.build(phase.name, key, body)
    ctx.progress = None
    ctx.emit({"event": "phase_end", "phase": phase.name, "key": key, **info})
    rows = f", {info['rows']} rows" if info.get("rows") else ""
    ctx.log(f"[{phase.name}] done in {info['seconds']:.1f}s{rows}")
    return info


def _rows_total(ctx: Context, phase: str) -> int | None:
    """Rows a phase will count: the input's for embed (Parquet footers; unknown for JSONL), the embedded rows after."""
    if phase == "embed":
        return ctx.inputs.num_rows()
    rows = ctx.timings["embed"]["rows"]
    return 2 * rows if phase == "select" else None if phase == "semdedup" else rows  # select: histogram pass + write pass


# --- checks before any work ----------------------------------------------------------


def computed_columns(spec: JobSpec) -> set[str]:
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


def _referenced_input_columns(spec: JobSpec) -> list[tuple[str, str, str]]:
    """(spec field, column, use) of every input column the job reads besides text, id and tokens."""
    sel = spec.selection
    computed = computed_columns(spec)
    refs = [(f"scorers.columns.{i}.column", c.column, "numeric") for i, c in enumerate(spec.scorers.columns)]
    if sel.domain != "cluster":
        refs.append(("selection.domain", sel.domain, "text"))
    refs += [(f"selection.filters.{i}.column", f.column, "numeric") for i, f in enumerate(sel.filters) if f.column not in computed]
    refs += [(f"selection ({sel.strategy}) quality column", c, "numeric") for c in sorted(sel.columns()) if c not in computed]
    return refs


def preflight(spec: JobSpec, out_path: Path, work_path: Path) -> tuple[io.InputFiles, dict[str, io.InputFiles]]:
    """Every check that needs no Ray: paths, overlaps, columns and keys, side corpora. Raises naming the field."""
    if out_path.exists() and not out_path.is_dir():
        raise InputError(f"output.path {out_path} is an existing file, not a directory; give a directory path")
    if out_path.exists() and not spec.output.overwrite:
        raise JobError(f"output {out_path} already exists (set output.overwrite: true to replace it)")
    inputs = io.locate(spec.input.paths, spec.input.format, validate_config(spec))
    io.check_not_inside(inputs, str(out_path), str(work_path))
    given, where = io.input_columns(inputs, JSONL_SAMPLE_LINES)
    if inputs.format == "jsonl":
        for field_name, col in (("input.text_column", spec.input.text_column), ("input.id_column", spec.input.id_column), ("input.token_column", spec.input.token_column)):
            if col and col not in given:
                raise InputError(f"{field_name}: no JSON key {col!r} in {where} (keys: {', '.join(sorted(given)) or 'none'})")
    for field_name, col, _ in _referenced_input_columns(spec):
        if col not in given:
            kind = "JSON key" if inputs.format == "jsonl" else "input column"
            raise SpecError(f"{field_name}: no {kind} {col!r} in {where}")
    computed = computed_columns(spec)
    sel = spec.selection
    for i, col in enumerate(sel.exclude):
        if col not in computed:
            raise SpecError(f"selection.exclude.{i}: no decision column {col!r} (is its scorer enabled?)")
    side = {}
    for field_name, ref in _side_corpora(spec).items():
        try:
            found = io.locate(ref.paths, ref.format, ValidateConfig(text_column=ref.text_column))
        except InputError as e:
            raise InputError(f"{field_name}: {e}") from None
        if found.format == "jsonl":
            keys, at = io.input_columns(found, JSONL_SAMPLE_LINES)
            if ref.text_column not in keys:
                raise InputError(f"{field_name}.text_column: no JSON key {ref.text_column!r} in {at}")
        io.check_not_inside(found, str(out_path), str(work_path))
        side[field_name] = found
    return inputs, side


def lift_for(spec: JobSpec, inputs: io.InputFiles) -> Lift:
    """For JSONL, the keys to lift out of `metadata` and how each is used; nothing for Parquet."""
    if inputs.format != "jsonl":
        return Lift()
    refs = _referenced_input_columns(spec)
    return Lift(sorted({c for _, c, use in refs if use == "numeric"}), sorted({c for _, c, use in refs if use == "text"}))


# --- stages mapped over batches -------------------------------------------------


def validate_config(spec: JobSpec) -> ValidateConfig:
    i = spec.input
    return ValidateConfig(i.text_column, i.id_column, i.token_column, i.max_bytes, i.bytes_per_token)


def prepare_batch(batch: pa.Table, cfg: ValidateConfig) -> pa.Table:
    return add_signals(validate(batch, cfg))


class EmbedStage:
    """Actor: loads the model once per worker, then embeds every batch it is given."""

    def __init__(self, ref: ModelRef, device: str, model_batch_size: int, threads: int, counter=None):
        if device == "cpu":
            import torch

            torch.set_num_threads(threads)
        self.embedder = Embedder(ref, device=device, batch_size=model_batch_size)
        self.counter = counter

    def __call__(self, batch: pa.Table) -> pa.Table:
        out = embed_batch(batch, self.embedder)
        count_rows(self.counter, batch.num_rows)
        return out


def _embedding(ctx: Context, ds: ray.data.Dataset, counted: bool = True) -> ray.data.Dataset:
    """ds with `emb` appended by the job's embedding actor pool (one GPU each under CUDA)."""
    spec = ctx.spec
    device = _device(spec)
    gpu = device.startswith("cuda")
    if not gpu:
        _check_cpu_budget(spec)
    return ds.map_batches(
        EmbedStage,
        fn_constructor_kwargs={
            "ref": ctx.model,
            "device": device,
            "model_batch_size": spec.embedder.model_batch_size,
            "threads": max(1, int(spec.embedder.cpus_per_actor)),
            "counter": ctx.progress.counter if counted and ctx.progress else None,
        },
        batch_format="pyarrow",
        batch_size=spec.embedder.batch_size,
        compute=ray.data.ActorPoolStrategy(size=spec.embedder.actors),
        num_gpus=1 if gpu else 0,
        num_cpus=0 if gpu else spec.embedder.cpus_per_actor,
    )


def embed_texts(ctx: Context, texts: list[str], with_signals: bool) -> pa.Table:
    """A side corpus embedded by the same actor pool as the pool (never on the driver), in its input order."""
    table = pa.table({"_row": np.arange(len(texts)), S.TEXT: pa.array(texts, pa.string()), S.INVALID_REASON: pa.nulls(len(texts), pa.string())})
    ds = ray.data.from_arrow(table)
    if with_signals:
        ds = ds.map_batches(add_signals, batch_format="pyarrow", batch_size=ctx.spec.embedder.batch_size)
    batches = list(_embedding(ctx, ds, counted=False).iter_batches(batch_format="pyarrow", batch_size=None))
    return pa.concat_tables(batches).sort_by("_row").drop_columns(["_row"])


def _side_texts(ctx: Context, ref: CorpusRef) -> list[str]:
    return io.read_texts(ref.paths, ref.format, ref.text_column, ref.max_docs)


def assign_clusters(batch: pa.Table, kmeans: KMeans) -> pa.Table:
    """Valid rows with their cluster and centroid distance: the input of SemDeDup's group-by."""
    batch = batch.filter(batch.column(S.INVALID_REASON).is_null()).drop_columns([S.INVALID_REASON])
    cluster, dist = kmeans.transform(from_fixed_list(batch.column(S.EMB)))
    return batch.append_column(S.D_CLUSTER, pa.array(cluster)).append_column(S.D_CENTROID_DIST, pa.array(dist))


def _domain_source(domain: str) -> str:
    return S.D_CLUSTER if domain == "cluster" else domain


def with_domain(t: pa.Table, domain: str) -> pa.Table:
    """`domain` as a string column: the k-means cluster id or the named column ('' where null)."""
    return t.append_column(S.DOMAIN, t.column(_domain_source(domain)).cast(pa.string()).fill_null(""))


SELECT_OUTPUT = [S.DOC_ID, S.DOMAIN, S.SEL_VALUE, S.SEL_COPIES, S.SEL_PERCENTILE, S.SEL_STRATEGY, S.SEL_REASON]


def select_file(row: dict, strategy, seed: int, filters: list, columns: list[str], domain: str, lift: Lift, out: str, counter=None) -> dict:
    """Ray task: doc_id + domain + sel_* for one score file, one output row group per input row group."""
    src = pq.ParquetFile(row["file"])
    present = [c for c in columns if c in src.schema_arrow.names] + ([] if not lift.numeric + lift.text else ["metadata"])
    path = Path(out) / Path(row["file"]).name
    with pq.ParquetWriter(path, _select_schema(), compression="zstd") as writer:
        for rg in range(src.num_row_groups):
            t = lift.apply(src.read_row_group(rg, columns=sorted(set(present))), set(columns))
            t = select(with_domain(t, domain), strategy, seed, filters).select(SELECT_OUTPUT).cast(_select_schema())
            writer.write_table(t, row_group_size=max(1, t.num_rows))
            count_rows(counter, t.num_rows)
    written = pq.ParquetFile(path).metadata
    expected = [src.metadata.row_group(i).num_rows for i in range(src.num_row_groups)]
    if [written.row_group(i).num_rows for i in range(written.num_row_groups)] != [n for n in expected if n]:
        raise JobError(f"select output {path} is not row-group aligned with {row['file']}")
    return {"file": str(path)}


def _select_schema() -> pa.Schema:
    return pa.schema(
        [
            (S.DOC_ID, pa.string()),
            (S.DOMAIN, pa.string()),
            (S.SEL_VALUE, pa.float32()),
            (S.SEL_COPIES, pa.int32()),
            (S.SEL_PERCENTILE, pa.float32()),
            (S.SEL_STRATEGY, pa.string()),
            (S.SEL_REASON, pa.string()),
        ]
    )


# --- helpers ---------------------------------------------------------------------


def _fit_sample(ctx: Context, embed_dir: Path, columns: list[str], size: int, valid: int) -> pa.Table:
    """The `size` valid documents with the smallest hash uniform u(seed, doc_id), in that order.

    Ordering by u (not by doc_id) before any truncation keeps the sample
    unbiased whatever the ids look like, and independent of how the embed
    phase partitioned the data. Rows are pre-filtered at a rate a little
    above size / valid, so the driver holds about one sample.
    """
    if valid == 0:
        raise JobError("no valid documents in the input: nothing to fit (see the quarantine counts)")
    rate = min(1.0, (size + 6 * np.sqrt(size) + 16) / valid)
    parts, us = [], []
    for t in _iter_tables(embed_dir, columns, ctx.lift):
        ctx.progress.add(t.num_rows)
        t = t.filter(t.column(S.INVALID_REASON).is_null())
        u = uniform_from_ids(f"fit-{ctx.spec.seed}", t.column(S.DOC_ID).to_pylist())
        keep = u < rate
        parts.append(t.filter(pa.array(keep)))
        us.append(u[keep])
    sample = pa.concat_tables(parts)
    order = np.argsort(np.concatenate(us), kind="stable")[:size]
    return sample.take(pa.array(order))


def _valid_rows(embed_dir: Path) -> int:
    return sum(t.column(S.INVALID_REASON).null_count for t in _iter_tables(embed_dir, [S.INVALID_REASON]))


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


def _read(directory: Path, columns: list[str] | None = None) -> ray.data.Dataset:
    """A phase's output as a Dataset (optionally only some columns)."""
    return ray.data.read_parquet(str(directory / "data"), columns=columns)


def _iter_tables(directory: Path, columns: list[str], lift: Lift | None = None) -> Iterator[pa.Table]:
    """Stream narrow columns of a phase's output on the driver, file by file; JSONL keys lifted when asked."""
    for f in sorted((directory / "data").glob("*.parquet")):
        pf = pq.ParquetFile(f)
        names = set(pf.schema_arrow.names)
        missing = [c for c in columns if c not in names]
        read = [c for c in columns if c in names] + (["metadata"] if missing and "metadata" in names else [])
        for rb in pf.iter_batches(columns=read, batch_size=65536):
            t = pa.Table.from_batches([rb])
            yield (lift.apply(t, set(missing)) if lift and missing else t)


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
