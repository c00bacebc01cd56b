"""The job's phases: `PHASES` (one list, in dependency order) and the body of each.

    embed     per input partition (a piece each, pipeline/partitions.py):  reads input files, input.*, embedder.model, scorers.lang
              read -> validate -> signals -> embed (actor pool, content cache)
    clusters  k-means + cluster sizes on a hash-ordered sample           reads clustering, seed      (or fit.from_run's, by content)
    fit       every fitted scorer of the registry (pipeline/scorers.py)  reads those scorers' specs and side corpora, seed  (or frozen)
    dedup     exact + MinHash near duplicates (pieces; shuffles on workers)  reads scorers.dedup, the pool's arrivals' order (pipeline/seen.py)
    semdedup  SemDeDup within each k-means cluster                        reads scorers.semdedup, seed
    score     every score column, duplicate flags (a piece per partition)  reads the unfitted scorers' specs (rules)
    search    QuaDMix parameters from proxy runs (when selection.search)   reads selection, its validation files, seed  (or frozen)
    select    histograms -> strategy.fit -> doc_id + sel_* per file       reads selection (from_search by content), seed
              (subset strategies: a pick pass per group in between, pipeline/picks.py)

A phase's body is given its `Slice` of the spec, the same object its cache
key is the hash of (`pipeline/plan.py`), never the whole spec: a new input
file re-embeds, a rule threshold rescores without refitting k-means, a new
budget reselects only, and a body cannot read what its key does not cover.
How a job runs (batch sizes, actors, the device, Ray) is in the `Context`.
`pipeline/runner.py` runs the list; `pipeline/output.py` writes the output.
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
import pyarrow.compute as pc
import pyarrow.parquet as pq
import ray
import ray.data

from thresher.operators import schema as S
from thresher.operators.dedup import MINHASH_FAMILY, ExactDuplicates, NearDuplicates, SavedFlags, candidate_probability, normalised_words
from thresher.operators.embed import TOKENS, Embedder, ModelRef, TokenizerRef, embed_batch, encode_rows, from_fixed_list, model_version, to_fixed_list, tokenize_batch, tokenizer_for
from thresher.operators.histogram import DomainHistograms
from thresher.operators.kmeans import KMeans
from thresher.operators.langid import lang_batch
from thresher.operators.quadmix_search import SEARCH_RULE
from thresher.operators.selection import TOPK_CUT, filter_reasons, select
from thresher.operators.semdedup import SemanticDuplicates, SemDeDup, semdedup_group
from thresher.operators.signals import add_signals
from thresher.operators.validate import ValidateConfig, validate

from . import content_cache, dedup_shuffle, frozen, ids, io, partitions, picks, seen, shuffle
from .confine import Roots
from .errors import JobError
from .events import OnEvent
from .plan import LAYOUT_VERSION, Phase, Slice, WorkDir
from .progress import PhaseProgress, count_rows
from .scorers import SideInputs
from .scoring import HIT, Clusters, FittedScorers, Scorers, fit_clusters, fit_scorers, row_keys, score_batch, scorer_sample_columns
from .search import search_phase
from .settings import Settings
from .spec import CorpusRef, EmbedderSpec, InputSpec, JobSpec
from .tables import Lift, domain_source, file_tables, fit_sample, map_files, read_dataset, read_spans, row_count, row_group_spans, rows_per_task, span_dataset, valid_rows, with_domain

PREPARE_TASK_BYTES = 256 * 2**20
SIGN_ROWS, SIGN_MIN_ROWS = 20_000, 5_000  # rows per dedup signature task: at most ~20 s of one core's MinHash; at least ~5 s, more than a new worker's start-up
SCAN_ROWS, SCAN_MIN_ROWS = 20_000, 4_096  # rows per score / cluster-count read task: a few seconds of one core; at least one batch
SCORE_BATCH = 4_096  # rows scored at a time: the batches a task's spans are cut into, as Ray Data cut them before


@dataclass
class Context:
    """How a job runs, shared by every phase: where, with what, and what it reports; never what it computes."""

    work: WorkDir
    log: Callable[[str], None]
    emit: OnEvent
    inputs: io.InputFiles
    side: dict[str, io.InputFiles]  # side corpora by spec field
    lift: Lift
    embedder: EmbedderSpec  # batch sizes, actors, device (its model is in the embed phase's slice)
    model: ModelRef | None = None  # embedder.model, resolved on the driver
    timings: dict[str, dict] = field(default_factory=dict)
    warnings: list[str] = field(default_factory=list)
    progress: PhaseProgress | None = None  # the running phase's row count
    phase: str | None = None  # the phase running now ("write" while publishing)
    settings: Settings = field(default_factory=Settings)  # the operator's, not the spec's (proxy commands)
    roots: Roots = field(default_factory=Roots)  # where every file the job opens must lie (empty = anywhere)
    content_cache: Path | None = None  # embeddings by text digest (pipeline/content_cache.py); set by the runner
    frozen: Path | None = None  # fit.from_run's state/ directory, resolved and checked (pipeline/frozen.py)
    arrivals: seen.Arrivals | None = None  # the pool against the previous index; set after embed when dedup is on (pipeline/seen.py)

    def warn(self, message: str) -> None:
        self.warnings.append(message)
        self.log(f"warning: {message}")
        self.emit({"event": "warning", "message": message})

    def side_texts(self, ref: CorpusRef) -> list[str]:
        return io.read_texts(ref.paths, ref.format, ref.text_column, ref.max_docs, self.roots)


def _reads_embed(spec: JobSpec, fp: dict) -> Slice:
    return Slice("embed", input=spec.input.model_copy(update={"paths": []}), files=fp["input"], model=spec.embedder.model, lang=spec.scorers.lang)


def _frozen_digest(spec: JobSpec, fp: dict, phase: str) -> str | None:
    """The content hash of the state a frozen phase copies (in its key instead of what it would have read), or None."""
    return fp["frozen"][phase] if spec.fit else None


def _is_frozen(spec: JobSpec) -> bool:
    return spec.fit is not None


def _reads_clusters(spec: JobSpec, fp: dict) -> Slice:
    if spec.fit:
        return Slice("clusters", frozen=_frozen_digest(spec, fp, "clusters"))
    return Slice("clusters", clustering=spec.clustering, seed=spec.seed, frozen=None)


def _reads_fit(spec: JobSpec, fp: dict) -> Slice:
    fitted = dict(spec.scorers.fitted())
    if spec.fit:
        return Slice("fit", scorers=fitted, frozen=_frozen_digest(spec, fp, "fit"))  # scorers: what the states must cover
    side = {k: v for k, v in fp.items() if k.startswith("scorers.")}
    return Slice("fit", scorers=fitted, sample_size=spec.scorers.fit_sample_size, side_files=side, seed=spec.seed, frozen=None)


def _reads_dedup(spec: JobSpec, fp: dict) -> Slice:
    # arrivals: the keep rule's order by run (pipeline/seen.py); minhash: the hash family, so an upgrade re-signs
    return Slice("dedup", dedup=spec.scorers.dedup, arrivals=fp.get("arrivals"), minhash=MINHASH_FAMILY)


def _reads_semdedup(spec: JobSpec, fp: dict) -> Slice:
    return Slice("semdedup", semdedup=spec.scorers.semdedup, seed=spec.seed)


def _reads_score(spec: JobSpec, fp: dict) -> Slice:
    return Slice("score", scorers={n: s for n, s in spec.scorers.enabled() if not s.fitted}, lang=spec.scorers.lang)  # lang: in the score cache's namespace


def _reads_search(spec: JobSpec, fp: dict) -> Slice:
    if spec.fit:
        return Slice("search", selection=spec.selection, frozen=_frozen_digest(spec, fp, "search"))
    validation = fp.get("selection.search.validation") or fp.get("selection.refine.validation")
    return Slice("search", selection=spec.selection, validation=validation, proxy_command=fp.get("selection.search.proxy"), seed=spec.seed, frozen=None, rule=SEARCH_RULE)


def _search_phase(ctx: Context, s: Slice, d: Path, needed: dict) -> dict:
    return frozen.restore(ctx.frozen / "search", d, ctx.roots) if s.frozen else search_phase(ctx, s, d, needed)


def _reads_selection(spec: JobSpec, fp: dict) -> Slice:
    from_search = getattr(spec.selection, "from_search", None)
    content = _file_sha256(from_search) if from_search else None  # the file's content, not its name, decides
    # previous: the version a remembering strategy (UDS's memory) starts from; a new version is a new selection
    previous = {"previous": fp["previous_selection"]} if "previous_selection" in fp else {}
    return Slice("select", selection=spec.selection, from_search_sha256=content, seed=spec.seed, cut=TOPK_CUT, **previous)


def _file_sha256(path: str) -> str:
    import hashlib

    try:
        return hashlib.sha256(Path(path).read_bytes()).hexdigest()
    except OSError:
        raise JobError(f"selection.from_search: cannot read {path}") from None


def embed_phase(ctx: Context, s: Slice, d: Path, needed: dict) -> dict:
    """Per partition: read -> validate -> signals (-> language) -> embed, each partition a piece reused while its file is
    unchanged; then the repeated ids over every piece, and the phase's data/ assembled from the pieces (pipeline/partitions.py).

    Rows are embedded before repeated ids are known (a piece must not depend on
    other files), so a row that repeats an earlier id is embedded and then
    quarantined; a repeated *text* costs nothing, the content cache has it.
    """
    cfg = validate_config(s.input)
    order = {f: i for i, f in enumerate(ctx.inputs.files)}
    # A piece's rows are read in the input's unified schema (a column only another file has is null here), so a new
    # file that adds a column makes every piece anew, as a from-scratch run would read them.
    schema = [(f.name, str(f.type)) for f in ctx.inputs.schema] if ctx.inputs.schema is not None else None
    reads = {**{k: v for k, v in s.key_data().items() if k != "files"}, "schema": schema}
    parts = partitions.plan(ctx.inputs)
    keys = [partitions.piece_key("embed", reads, p) for p in parts]
    store = partitions.PieceStore(ctx.work.path)
    store.clear_staging()
    todo = [(p, k) for p, k in zip(parts, keys) if not store.done("embed", k)]
    facts = {"partitions": len(parts), "partitions_reused": len(parts) - len(todo), "embedded": 0, "cache_hits": 0}
    ctx.progress.total = sum(p.hi - p.lo for p, _ in todo) if ctx.inputs.format == "parquet" else None  # what this run reads
    if todo:
        facts |= _embed_pieces(ctx, s, cfg, todo, store)
    files = [f for k in keys for f in store.files("embed", k)]
    reason = ids.REASON_DUPLICATE_ID if cfg.id_column else ids.REASON_DUPLICATE_TEXT
    names = [f"embed-{k}" for k in keys]  # a piece's id files; its data files in pieces of an older thresher
    repeats = ids.repeated([f for n, k in zip(names, keys) for f in store.ids_files(n) or store.files("embed", k)], order, d)
    if repeats.size:
        ctx.log(f"[embed] {repeats.size} rows repeat an earlier row's id; quarantined")
    _assemble(files, d / "data", repeats, order, reason)
    (d / partitions.LIST).write_text(json.dumps(names))
    return {"rows": row_count(d / "data"), "files": len(ctx.inputs.files), "repeated_ids": int(repeats.size), "device": _device(ctx.embedder), "model": s.model, **facts}


def _embed_pieces(ctx: Context, s: Slice, cfg: ValidateConfig, todo: list, store: partitions.PieceStore) -> dict:
    """Compute the pieces of the partitions in `todo` in one pass: vectors the content cache has are reused, the rest embedded and added to it."""
    items = [item for p, _ in todo for item in p.items]
    cache = content_cache.ContentCache(ctx.content_cache, f"embed-{model_version(ctx.model)}")
    hits = None
    if cache.files():  # a narrow pass first: which of these texts has the cache seen? (looked up on the workers)
        hits = ctx.work.path / f"{partitions.TMP_PREFIX}embed-hits"
        shutil.rmtree(hits, ignore_errors=True)
        rows = sum(p.hi - p.lo for p, _ in todo) if ctx.inputs.format == "parquet" else shuffle.PART_ROWS * shuffle.partition_count()
        with shuffle.exchange(ctx.work.path / f"{partitions.TMP_PREFIX}embed-lookup", shuffle.reduce_partitions(rows)) as ex:
            lookup = content_cache.Lookup(cache, ex)
            io.read_raw(ctx.inputs, cfg, items).map_batches(_want_digests, fn_kwargs={"cfg": cfg, "lookup": lookup}, batch_format="pyarrow",
                                                            batch_size=ctx.embedder.batch_size).materialize()
            lookup.resolve(hits)
    lang_chars = s.lang.max_chars if s.lang else 0
    ds = io.read_raw(ctx.inputs, cfg, items).map_batches(prepare_batch, fn_kwargs={"cfg": cfg, "lang_chars": lang_chars, "digest": True}, batch_format="pyarrow",
                                                      batch_size=ctx.embedder.batch_size, memory=PREPARE_TASK_BYTES)
    owners: dict[str, list] = {}
    for p, k in todo:
        (store.staging("embed", k) / partitions.IDS).mkdir()  # present even when no row of the piece is valid
        owners.setdefault(p.path, []).append((p.lo, p.hi, f"{partitions.TMP_PREFIX}embed-{k}"))
    task = {"owners": owners, "root": str(store.root), "cache_dir": str(cache.dir)}
    try:
        written = _embedding(ctx, ds, hits=hits).map_batches(store_batch, fn_kwargs=task, batch_format="pyarrow").take_all()
    finally:
        if hits is not None:
            shutil.rmtree(hits, ignore_errors=True)
    rows: dict[str, int] = {}
    for w in written:
        for piece, n in json.loads(w["pieces"]).items():
            rows[piece] = rows.get(piece, 0) + n
    for p, k in todo:
        store.commit("embed", k, {"rows": rows.get(f"{partitions.TMP_PREFIX}embed-{k}", 0), "partition": p.fingerprint()})
    embedded = sum(w["embedded"] for w in written)
    return {"embedded": embedded, "cache_hits": sum(w["valid"] for w in written) - embedded}


def _want_digests(batch: pa.Table, cfg: ValidateConfig, lookup: content_cache.Lookup) -> pa.Table:
    """Ray task: the valid rows' text digests, with their input places, handed to the content cache's lookup."""
    t = validate(batch, cfg)
    t = content_cache.with_digests(t.filter(t.column(S.INVALID_REASON).is_null()))
    return pa.table({"rows": [lookup.want(t)]})


def store_batch(batch: pa.Table, owners: dict, root: str, cache_dir: str) -> pa.Table:
    """Ray task: the embedded rows' new vectors into the content cache, every row into its partition's piece, and
    the valid rows' ids and text digests into the piece's id files (what `ids.repeated` and `seen.for_job` read)."""
    content_cache.add(batch, cache_dir)
    written = partitions.write_rows(batch, owners, root, drop=[content_cache.H0, content_cache.H1, content_cache.MISS])
    narrow = batch.filter(batch.column(S.INVALID_REASON).is_null()).select([S.DOC_ID, S.INPUT_FILE, S.INPUT_OFFSET, content_cache.H0, content_cache.H1])
    partitions.write_rows(narrow.rename_columns([S.DOC_ID, S.INPUT_FILE, S.INPUT_OFFSET, *seen.CONTENT]), owners, root, subdir=partitions.IDS)
    valid = int(batch.column(S.INVALID_REASON).null_count)
    embedded = int(pc.sum(batch.column(content_cache.MISS)).as_py() or 0) if content_cache.MISS in batch.column_names else valid
    return pa.table({"pieces": [json.dumps(written)], "embedded": [embedded], "valid": [valid]})  # one row per batch


def _assemble(files: list[Path], data: Path, repeats: np.ndarray, order: dict, reason: str) -> None:
    """A phase's data/ from its pieces' files: a hard link to each, or a copy with the repeated ids marked where it holds
    one (a task per file looks, by the rows' places, when the pool has repeats; here for a pool of at most
    `shuffle.PART_ROWS` rows)."""
    data.mkdir()
    calls = [(str(f), str(data / f"part-{i:05d}-{f.parent.name.split('-', 1)[1]}.parquet"), repeats, order, reason) for i, f in enumerate(files)]  # the piece's key
    here = not repeats.size or sum(pq.ParquetFile(f).metadata.num_rows for f in files) <= shuffle.PART_ROWS
    shuffle.run(len(calls), lambda stage: stage(_assemble_file, calls), here=here)


def _assemble_file(f: str, target: str, repeats: np.ndarray, order: dict, reason: str) -> None:
    """Ray task: one piece file into a phase's data/: a hard link, or a copy with its repeated ids marked."""
    narrow = pq.read_table(f, columns=[S.INPUT_FILE, S.INPUT_OFFSET, S.INVALID_REASON]) if repeats.size else None
    if narrow is not None and ids.mark(narrow, repeats, order, reason) is not narrow:  # the file holds a repeat: read it whole
        pq.write_table(ids.mark(pq.read_table(f), repeats, order, reason), target, compression="zstd")
        return
    try:
        os.link(f, target)
    except OSError:  # no hard links on this filesystem
        shutil.copyfile(f, target)


def clusters_phase(ctx: Context, s: Slice, d: Path, needed: dict) -> dict:
    if s.frozen:
        return frozen.restore(ctx.frozen / "clusters", d, ctx.roots)
    valid = valid_rows(needed["embed"])
    sample = fit_sample(needed["embed"], [S.DOC_ID, S.INVALID_REASON, S.EMB], s.clustering.sample_size, valid, s.seed, ctx.lift, ctx.progress)
    clusters, info = fit_clusters(s.clustering, s.seed, sample, valid)
    if sample.num_rows < valid:  # the sample's shares only estimate the pool's: count every document's cluster
        clusters.sizes = _count_clusters(needed["embed"], clusters.kmeans)
    info["sizes"] = "counted over the pool" if sample.num_rows < valid else "the sample is the pool"
    clusters.save(d)
    return {"rows": sample.num_rows, **info}


def _count_clusters(embed_dir: Path, kmeans: KMeans) -> np.ndarray:
    """Documents per cluster over every valid document: a Ray Data pass over the vectors, one bincount per batch summed on the driver."""
    files = sorted((embed_dir / "data").glob("*.parquet"))
    ds = span_dataset(files, rows_per_task(row_count(embed_dir / "data"), shuffle.partition_count(), SCAN_ROWS, SCAN_MIN_ROWS), [S.INVALID_REASON, S.EMB])
    counts = np.zeros(kmeans.centroids_.shape[0], np.int64)
    for row in ds.map_batches(cluster_counts, fn_kwargs={"kmeans": kmeans}, batch_format="pyarrow", batch_size=8192).iter_rows():
        counts += np.asarray(row["counts"], np.int64)
    return counts


def cluster_counts(batch: pa.Table, kmeans: KMeans) -> pa.Table:
    """Ray task: a batch's valid documents per cluster (one row)."""
    valid = batch.filter(batch.column(S.INVALID_REASON).is_null())
    assigned = kmeans.transform(from_fixed_list(valid.column(S.EMB)))[0] if valid.num_rows else np.zeros(0, np.int64)
    return pa.table({"counts": [np.bincount(assigned, minlength=kmeans.centroids_.shape[0]).tolist()]})


def fit_phase(ctx: Context, s: Slice, d: Path, needed: dict) -> dict:
    if s.frozen:
        facts = frozen.restore(ctx.frozen / "fit", d, ctx.roots)
        have, want = sorted(FittedScorers.load(d).states), sorted(s.scorers)
        if have != want:
            raise JobError(f"fit.from_run: {ctx.frozen} holds fitted states for {', '.join(have) or 'no scorer'}, this spec fits {', '.join(want) or 'none'}; "
                           "give a run with the same fitted scorers, or drop fit.from_run to fit anew")
        return facts
    columns = scorer_sample_columns(s.scorers)
    sample = fit_sample(needed["embed"], columns, s.sample_size, valid_rows(needed["embed"]), s.seed, ctx.lift, ctx.progress)
    fitted, info = fit_scorers(s.scorers, sample, SideInputs(ctx.side_texts, lambda texts, sig: embed_texts(ctx, texts, sig)), s.seed)
    fitted.save(d)
    return {"rows": sample.num_rows, **info}


def dedup_phase(ctx: Context, s: Slice, d: Path, needed: dict) -> dict:
    """Exact and near duplicates over the whole pool, from signature pieces: one per embed piece, computed once by a
    Ray task (hashes and MinHash signatures of its valid rows), so a night computes only its new partitions' signatures;
    the pool's groups are resolved by hash shuffles over Ray tasks (pipeline/dedup_shuffle.py), the driver holding
    paths and counts, never a pair. Of a group, the document seen in the
    earliest run is kept (pipeline/seen.py), then the first in input order: a copy arriving tonight names the document
    the pool already had (the output's duplicates.parquet names its doc_id and input file)."""
    p = s.dedup
    finders = [(n, f) for n, f, on in (("exact", ExactDuplicates(), p.exact), ("near", NearDuplicates(p.threshold, p.num_perm, p.ngram, p.bands, p.rows), p.near)) if on]
    store = partitions.PieceStore(ctx.work.path)
    sources = json.loads((needed["embed"] / partitions.LIST).read_text())
    reads = {"exact": p.exact, "near": {"num_perm": p.num_perm, "ngram": p.ngram, "hash": s.minhash} if p.near else None}
    keys = [partitions.derived_key("dedup", reads, name) for name in sources]
    todo = [(src, k) for src, k in zip(sources, keys) if not store.done("dedup", k)]
    t0 = time.perf_counter()
    if todo:
        rows = sum(store.facts("embed", src.removeprefix("embed-"))["rows"] for src, _ in todo)
        per_task = rows_per_task(rows, shuffle.partition_count(), SIGN_ROWS, SIGN_MIN_ROWS)
        tasks = [t for src, k in todo for t in sign_tasks(store.root / src, store.staging("dedup", k), k, per_task)]
        near = next((f for n, f in finders if n == "near"), None)
        rows = {k: 0 for _, k in todo}
        for r in ray.get([_SIGN.remote(t, p.exact, near) for t in tasks]):  # plain tasks: no Ray Data plan for a list of spans
            rows[r["key"]] += r["rows"]
        for k, n in rows.items():
            store.commit("dedup", k, {"rows": n})
    keep_order = ray.put(ctx.arrivals.order)  # small: each map task reads its own piece's order file
    order = {f: i for i, f in enumerate(ctx.inputs.files)}
    pool_rows = sum(store.facts("dedup", k)["rows"] for k in keys)
    ctx.progress.add(pool_rows)
    parts = shuffle.reduce_partitions(pool_rows)
    (d / partitions.LIST).write_text(json.dumps([f"dedup-{k}" for k in keys]))
    info = {"rows": ctx.progress.rows(), "partitions": len(keys), "partitions_reused": len(keys) - len(todo), "reduce_tasks": parts,
            "signatures_s": round(time.perf_counter() - t0, 3)}
    for name, f in finders:
        paths = [(str(f), i) for i, k in enumerate(keys) for f in sorted(store.path("dedup", k).glob(f"{name}*.parquet"))]  # NAME-PART; NAME.parquet in older pieces
        t0 = time.perf_counter()
        found = (dedup_shuffle.resolve_exact if name == "exact" else dedup_shuffle.resolve_near)(f, paths, order, keep_order, parts, d, d / name)
        info[f"{name}_resolve_s"] = round(time.perf_counter() - t0, 3)
        info[f"{name}_duplicates"] = found["duplicates"]
        if name == "near":
            info["lsh"] = {"bands": f.bands, "rows": f.rows, "chosen": "spec" if p.bands else "from threshold",
                           "candidate_probability_at_threshold": round(candidate_probability(p.threshold, f.bands, f.rows), 4)}
    return info


def sign_tasks(src: Path, dst: Path, key: str, rows_per_task: int) -> list[dict]:
    """An embed piece's rows cut into signature tasks of `rows_per_task` rows (`tables.row_group_spans`), so one large
    partition is signed by many workers; every task writes its own part files into the dedup piece `dst`."""
    spans = row_group_spans(sorted(src.glob("*.parquet")), rows_per_task)  # not its ids/ files
    return [{"spans": s, "dst": str(dst), "key": key, "part": i} for i, s in enumerate(spans)]


def signature_piece(task: dict, exact: bool, near: NearDuplicates | None) -> dict:
    """Ray task: exact-PART.parquet (doc_id, position, 128-bit hash) and near-PART.parquet (doc_id, position, MinHash
    signature) of the valid rows of a `sign_tasks` task's spans, into its dedup piece's staging directory."""
    columns = [S.DOC_ID, S.TEXT, S.INVALID_REASON, S.INPUT_FILE, S.INPUT_OFFSET]
    if not task["spans"]:  # a piece without rows
        return {"key": task["key"], "rows": 0}
    t = read_spans(task["spans"], columns)
    t = t.filter(t.column(S.INVALID_REASON).is_null())
    where = t.select([S.DOC_ID, S.INPUT_FILE, S.INPUT_OFFSET])
    dst, part = Path(task["dst"]), f"{task['part']:05d}"
    words = normalised_words(t.column(S.TEXT))  # once for both finders
    if exact:
        kept, h = ExactDuplicates.signatures(t, words)
        pq.write_table(where.filter(pa.array(kept)).append_column("h0", pa.array(h[:, 0])).append_column("h1", pa.array(h[:, 1])), dst / f"exact-{part}.parquet")
    if near is not None:
        kept, sig = near.signatures(t, words)
        values = pa.array(sig.reshape(-1), pa.uint32())
        pq.write_table(where.filter(pa.array(kept)).append_column("sig", pa.FixedSizeListArray.from_arrays(values, near.num_perm)), dst / f"near-{part}.parquet")
    return {"key": task["key"], "rows": t.num_rows}


_SIGN = ray.remote(signature_piece)


def semdedup_phase(ctx: Context, s: Slice, d: Path, needed: dict) -> dict:
    """SemDeDup as a Ray Data group-by on the k-means cluster: memory bounded by the largest cluster (in blocks)."""
    p = s.semdedup
    kmeans = Clusters.load(needed["clusters"]).kmeans
    groups = (
        read_dataset(needed["embed"], [S.DOC_ID, S.EMB, S.INVALID_REASON, S.INPUT_FILE, S.INPUT_OFFSET])
        .map_batches(assign_clusters, fn_args=[kmeans], batch_format="pyarrow", batch_size=4096)
        .groupby(S.D_CLUSTER)
        .map_groups(semdedup_group, fn_args=[SemDeDup(p.epsilon, p.order, s.seed, p.block)], batch_format="pyarrow")
    )
    groups.write_parquet(str(d / "pairs"))  # on the workers; a task saves the map: the driver never holds the pairs
    calls = [(str(d / "pairs"), str(d / "semdedup"), _piece_ranges(ctx, needed["embed"]))]
    n = shuffle.run(1, lambda stage: stage(save_semantic, calls), here=row_count(needed["embed"] / "data") <= shuffle.PART_ROWS)[0]
    shutil.rmtree(d / "pairs", ignore_errors=True)
    return {"semantic_duplicates": n}


def save_semantic(pairs: str, out: str, pieces: partitions.PieceRanges) -> int:
    """SemDeDup's (duplicate, kept) doc_ids written by the group-by, saved as a SemanticDuplicates map with each
    duplicate's piece; returns their number."""
    found = sorted(Path(pairs).glob("*.parquet"))
    empty = pa.table({S.DOC_ID: pa.array([], pa.string()), S.D_SEMDUP_OF: pa.array([], pa.string()), S.INPUT_FILE: pa.array([], pa.string()), S.INPUT_OFFSET: pa.array([], pa.int64())})
    table = pa.concat_tables([pq.read_table(f) for f in found]) if found else empty
    table = table.sort_by(S.DOC_ID)  # the same saved map whatever order the workers wrote their files in
    SemanticDuplicates.from_pairs(table.column(S.DOC_ID).combine_chunks(), table.column(S.D_SEMDUP_OF).combine_chunks(), pa.array(pieces(table))).save(out)
    return table.num_rows


def _piece_ranges(ctx: Context, embed_dir: Path) -> partitions.PieceRanges:
    """The piece of each row of the pool, numbered as the embed phase lists its pieces (`seen.Order`'s numbering)."""
    store = partitions.PieceStore(ctx.work.path)
    return partitions.PieceRanges.of([store.facts("embed", n.removeprefix("embed-"))["partition"] for n in json.loads((embed_dir / partitions.LIST).read_text())])


def score_phase(ctx: Context, s: Slice, d: Path, needed: dict) -> dict:
    """Every score column and the duplicate flags, one piece per embed piece: a piece is keyed by the content of the
    clusters and fit states it scores with, its own slice, and a digest of its rows' ids, validity and duplicate flags, so with frozen
    states a night scores its new partitions and those whose flags changed, and reuses the rest."""
    store = partitions.PieceStore(ctx.work.path)
    pieces = _piece_ranges(ctx, needed["embed"])
    duplicates: list[SavedFlags] = []  # loaded by the tasks that apply them, a piece's pairs at a time: the driver never holds the pairs
    if needed.get("dedup"):
        duplicates += [SavedFlags(cls, needed["dedup"] / n, pieces) for n, cls in (("exact", ExactDuplicates), ("near", NearDuplicates)) if (needed["dedup"] / n).exists()]
    if needed.get("semdedup"):
        duplicates.append(SavedFlags(SemanticDuplicates, needed["semdedup"] / "semdedup", pieces))
    reads = {"score": s.key_data(), "states": {n: frozen.digest(needed[n]) for n in ("clusters", "fit")}}  # by content: fitted or frozen alike
    files = _embed_files_by_piece(needed["embed"])
    keys = {src: partitions.derived_key("score", reads, f"{src}:{digest}") for src, digest in _rows_digests(files, duplicates).items()}
    todo = [src for src, k in keys.items() if not store.done("score", k)]
    ctx.progress.add(sum(store.facts("score", k)["rows"] for src, k in keys.items() if src not in todo))
    facts = {"scored": 0, "cache_hits": 0}
    if todo:
        facts = _score_pieces(ctx, s, reads, needed, duplicates, {src: (keys[src], files[src]) for src in todo}, store)
    pieces = [f"score-{keys[src]}" for src in files]
    _assemble([f for name in pieces for f in sorted((store.root / name).glob("*.parquet"))], d / "data", np.zeros(0, np.int64), {}, "")
    (d / partitions.LIST).write_text(json.dumps(pieces))
    return {"rows": row_count(d / "data"), "partitions": len(pieces), "partitions_reused": len(pieces) - len(todo), **facts}


def _score_pieces(ctx: Context, s: Slice, reads: dict, needed: dict, duplicates: list[SavedFlags], todo: dict[str, tuple[str, list[Path]]], store: partitions.PieceStore) -> dict:
    """Score the embed pieces in `todo` (name -> (score piece key, its data files)) in one Ray Data pass, each row written
    into its partition's score piece; rows the score cache has (by content, `scoring.row_keys`) are not scored again."""
    owners: dict[str, list] = {}
    for src, (key, _) in todo.items():
        store.staging("score", key)
        p = store.facts("embed", src.removeprefix("embed-"))["partition"]
        owners.setdefault(p["path"], []).append((p["range"][0], p["range"][1], f"{partitions.TMP_PREFIX}score-{key}"))
    written: dict[str, int] = {}
    facts = {"scored": 0, "cache_hits": 0}
    files = [f for _, fs in todo.values() for f in fs]
    if files:
        scorers = Scorers.build(Clusters.load(needed["clusters"]), FittedScorers.load(needed["fit"]), s.scorers, duplicates, ctx.lift.numeric)
        # What a row's scores depend on besides its text and keyed columns: the states, the scorers, how the embed phase
        # derived emb, signals and language from the text, and this code's layout.
        namespace = {**reads, "keyed": scorers.keyed, "model": model_version(ctx.model), "layout": LAYOUT_VERSION}
        cache = content_cache.ContentCache(ctx.content_cache, f"score-{partitions.derived_key('score-cache', namespace, '')}")
        hits = _score_cache_lookup(ctx, cache, files, scorers.keyed)
        task = {"scorers": scorers, "hits": None if hits is None else str(hits), "cache_dir": str(cache.dir), "counter": ctx.progress.counter}
        # plain Ray tasks of row-group spans (no Ray Data plan to start): a large partition is scored by many workers
        per_task = rows_per_task(sum(pq.ParquetFile(f).metadata.num_rows for f in files), shuffle.partition_count(), SCAN_ROWS, SCAN_MIN_ROWS)
        shared = ray.put(task)  # the scorers' states once in the object store, not once per task
        calls = [(spans, shared, owners, str(store.root)) for spans in row_group_spans(files, per_task)]
        try:
            for w in ray.get([_SCORE.remote(*c) for c in calls]):
                for piece, n in w["pieces"].items():
                    written[piece] = written.get(piece, 0) + n
                facts["scored"] += w["scored"]
                facts["cache_hits"] += w["hits"]
        finally:
            if hits is not None:
                shutil.rmtree(hits, ignore_errors=True)
    for key, _ in todo.values():
        store.commit("score", key, {"rows": written.get(f"{partitions.TMP_PREFIX}score-{key}", 0)})
    return facts


def _score_cache_lookup(ctx: Context, cache: content_cache.ContentCache, files: list[Path], keyed: list[str]) -> Path | None:
    """Look the valid rows of these files up in the score cache on the workers (a task per file keys its rows, then
    `content_cache.Lookup`); the hits' directory, None when the cache is empty."""
    if not cache.files():
        return None
    rows = sum(pq.ParquetFile(f).metadata.num_rows for f in files)
    hits = ctx.work.path / f"{partitions.TMP_PREFIX}score-hits"
    shutil.rmtree(hits, ignore_errors=True)
    with shuffle.exchange(ctx.work.path / f"{partitions.TMP_PREFIX}score-lookup", shuffle.reduce_partitions(rows)) as ex:
        lookup = content_cache.Lookup(cache, ex)
        here = rows <= shuffle.PART_ROWS
        shuffle.run(ex.parts, lambda stage: stage(_want_score_keys, [(str(f), keyed, lookup) for f in files]), here=here)
        lookup.resolve(hits, here=here)
    return hits


def _want_score_keys(file: str, keyed: list[str], lookup: content_cache.Lookup) -> int:
    """Ray task: the score cache keys of a file's valid rows (`row_keys`), with their input places, handed to the lookup."""
    t = pq.read_table(file, columns=[S.TEXT, S.INVALID_REASON, S.INPUT_FILE, S.INPUT_OFFSET, *keyed])
    t = t.filter(t.column(S.INVALID_REASON).is_null())
    h0, h1 = row_keys(t, keyed)
    return lookup.want(t.select([S.INPUT_FILE, S.INPUT_OFFSET]).append_column(content_cache.H0, pa.array(h0)).append_column(content_cache.H1, pa.array(h1)))


def score_spans(spans: list, task: dict, owners: dict, root: str) -> dict:
    """Ray task: a span task's rows scored SCORE_BATCH at a time (`score_batch`) and written into their partitions'
    score pieces; the rows written per piece, how many were scored and how many the score cache had."""
    out = {"pieces": {}, "scored": 0, "hits": 0}
    t = read_spans(spans) if spans else None
    for lo in range(0, t.num_rows if t is not None else 0, SCORE_BATCH):
        scored = score_batch(t.slice(lo, SCORE_BATCH), **task)
        hits = int(pc.sum(scored.column(HIT)).as_py() or 0)
        for piece, n in partitions.write_rows(scored, owners, root, drop=[HIT]).items():
            out["pieces"][piece] = out["pieces"].get(piece, 0) + n
        out["scored"] += scored.num_rows - hits
        out["hits"] += hits
    return out


_SCORE = ray.remote(score_spans)


def _embed_files_by_piece(embed_dir: Path) -> dict[str, list[Path]]:
    """The embed phase's data files (hard links to its pieces' files, or copies with repeated ids marked) by piece, in input order."""
    found: dict[str, list[Path]] = {name: [] for name in json.loads((embed_dir / partitions.LIST).read_text())}
    for f in sorted((embed_dir / "data").glob("*.parquet")):
        found[f"embed-{f.stem.split('-', 2)[2]}"].append(f)
    return found


def _rows_digests(files: dict[str, list[Path]], duplicates: list[SavedFlags]) -> dict[str, str]:
    """Each piece's `_rows_digest`: one Ray task per piece, or here for a pool of at most `shuffle.PART_ROWS` rows (its
    duplicate maps are as small)."""
    rows = sum(pq.ParquetFile(f).metadata.num_rows for fs in files.values() for f in fs)
    calls = [(fs, duplicates) for fs in files.values()]
    found = shuffle.run(len(calls), lambda stage: stage(_rows_digest, calls), here=rows <= shuffle.PART_ROWS or not calls)
    return dict(zip(files, found))


def _rows_digest(files: list[Path], duplicates: list[SavedFlags]) -> str:
    """What a score piece depends on besides its embed piece and the states: its rows' ids and validity (a repeated id
    is marked by another file) and the duplicate flags the maps give them."""
    import hashlib

    h = hashlib.sha256()
    for f in files:
        t = pq.read_table(f, columns=[S.DOC_ID, S.INVALID_REASON, S.INPUT_FILE, S.INPUT_OFFSET])
        for m in duplicates:
            t = m.transform(t)
        for c in t.drop_columns([S.INPUT_FILE, S.INPUT_OFFSET]).columns:
            h.update(json.dumps(c.to_pylist()).encode())
    return h.hexdigest()[:16]


def select_phase(ctx: Context, s: Slice, d: Path, needed: dict) -> dict:
    """Fit the strategy on corpus-wide histograms, then write doc_id + domain + sel_* beside each score file.

    The output is narrow and row-group aligned with the score files (same file
    names, same row groups), so a new budget or strategy costs a few bytes per
    document in the work directory, and the writer joins the two while it streams.
    """
    sel = s.selection
    filters = sel.build_filters()
    strategy = sel.build(needed, s.seed)
    if getattr(strategy, "remembers", False):
        strategy.remember(*picks.previous_embeddings(s.previous, needed["embed"], strategy.queue, s.seed))
    cols = sorted({S.DOC_ID, S.INVALID_REASON, S.N_TOKENS, domain_source(sel.domain), *(f.column for f in filters), *strategy.columns})
    hist = DomainHistograms(sel.percentile_bins)
    eligible = picks.Eligible() if getattr(strategy, "needs_picks", False) else None
    task = (cols, ctx.lift, sel.domain, filters, strategy, sel.percentile_bins, eligible is not None)
    for part, found, rows in map_files(needed["score"], _histogram_files, task, row_count(needed["score"] / "data")):
        ctx.progress.add(rows)
        hist.merge(part)
        if eligible is not None:
            eligible.merge(found)
    budget = sel.budget
    strategy.fit(hist, budget.unit if budget else None, budget.amount if budget else None)
    if eligible is not None:  # a strategy that chooses its subset group by group: the pick pass, before any transform
        ctx.log(f"[select] picks: {picks.pick_pass(d, needed, strategy, eligible)}")
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
    here = row_count(needed["score"] / "data") <= shuffle.PART_ROWS  # a small pool is selected here: task starts cost more
    task = (strategy, s.seed, filters, cols, sel.domain, ctx.lift, str(d / "data"), ctx.progress.counter)
    shuffle.run(max(2, len(files)), lambda stage: stage(select_file, [({"file": str(f)}, *task) for f in files]), here=here)
    return {"rows": row_count(d / "data"), "strategy": sel.strategy, **facts}


def _histogram_files(files: list[str], columns: list[str], lift: Lift, domain: str, filters: list, strategy, bins: int, picks_needed: bool) -> tuple:
    """Ray task: the strategy's histograms (and, for a strategy that picks, the eligible documents) of some score files'
    eligible rows, and the rows read."""
    hist, eligible, rows = DomainHistograms(bins), picks.Eligible() if picks_needed else None, 0
    for f in files:
        for t in file_tables(f, columns, lift):
            rows += t.num_rows
            t = with_domain(t.filter(t.column(S.INVALID_REASON).is_null()), domain)
            t = t.filter(pa.array(np.equal(filter_reasons(t, filters), None)))
            if t.num_rows:
                keys, scores = strategy.keys_and_scores(t)
                hist.add(keys, scores, np.asarray(t.column(S.N_TOKENS).to_numpy(zero_copy_only=False)))
                if eligible is not None:
                    eligible.add(t.column(S.DOC_ID), keys, scores)
    return hist, eligible, rows


PHASES: list[Phase] = [
    Phase("embed", (), _reads_embed, embed_phase),
    Phase("clusters", ("embed",), _reads_clusters, clusters_phase, frozen=_is_frozen),
    Phase("fit", ("embed",), _reads_fit, fit_phase, frozen=_is_frozen),
    Phase("dedup", ("embed",), _reads_dedup, dedup_phase, when=lambda s: s.scorers.dedup is not None),
    Phase("semdedup", ("embed", "clusters"), _reads_semdedup, semdedup_phase, when=lambda s: s.scorers.semdedup is not None),
    Phase("score", ("embed", "clusters", "fit", "dedup", "semdedup"), _reads_score, score_phase),
    Phase("search", ("score", "fit"), _reads_search, _search_phase, when=lambda s: getattr(s.selection, "search", None) is not None or getattr(s.selection, "refine", None) is not None,
          frozen=_is_frozen),
    # embed: the pick pass of facility location and max-min reads the embeddings (the score files drop them)
    Phase("select", ("embed", "score", "fit", "search"), _reads_selection, select_phase),
]
PHASE_NAMES = [p.name for p in PHASES]


# --- stages and helpers ----------------------------------------------------------


def validate_config(i: InputSpec) -> ValidateConfig:
    return ValidateConfig(i.text_column, i.id_column, i.token_column, i.max_bytes, i.bytes_per_token)


def prepare_batch(batch: pa.Table, cfg: ValidateConfig, lang_chars: int | None = 0, digest: bool = False) -> pa.Table:
    """Validate, compute the signals (and the language, unless lang_chars is 0), and with `digest` the text digests the content cache is keyed by."""
    t = add_signals(validate(batch, cfg))
    t = t if lang_chars == 0 else lang_batch(t, max_chars=lang_chars)
    return content_cache.with_digests(t) if digest else t


class EmbedStage:
    """Actor: loads the model once per worker, then embeds every batch it is given.

    A batch carrying text digests (`content_cache.H0/H1`) takes the vectors the
    content cache's lookup found for its rows (`hits`, read a batch at a time by
    the rows' input places) and embeds only the other valid rows, marking them
    `content_cache.MISS`. Token ids from the tokenizer stage are consumed here
    and not passed on.
    """

    def __init__(self, ref: ModelRef, device: str, model_batch_size: int, threads: int, precision: str, tokenizer: TokenizerRef | None, counter=None,
                 hits: str | None = None):
        if device == "cpu" and ref.kind == "sentence-transformers":  # model2vec runs on NumPy: no torch import (2 s) for it
            import torch

            torch.set_num_threads(threads)
        self.embedder = Embedder(ref, device=device, batch_size=model_batch_size, precision=precision, tokenizer=tokenizer)
        self.counter = counter
        self.hits = hits

    def __call__(self, batch: pa.Table) -> pa.Table:
        if content_cache.H0 not in batch.column_names:
            out = embed_batch(batch, self.embedder)
        else:
            valid = np.asarray(batch.column(S.INVALID_REASON).is_null().to_numpy(zero_copy_only=False))
            row, found = content_cache.hits_for(self.hits, batch)
            hit, todo = valid & (row >= 0), valid & (row < 0)
            full = np.zeros((batch.num_rows, self.embedder.dim), np.float32)
            full[todo] = encode_rows(batch, todo, self.embedder)
            if hit.any():
                full[hit] = from_fixed_list(found.column(S.EMB))[row[hit]]
            batch = batch.drop_columns([TOKENS]) if TOKENS in batch.column_names else batch
            out = batch.append_column(S.EMB, to_fixed_list(full, mask=~valid)).append_column(content_cache.MISS, pa.array(todo))
        count_rows(self.counter, batch.num_rows)
        return out


def _embedding(ctx: Context, ds: ray.data.Dataset, counted: bool = True, hits: Path | None = None) -> ray.data.Dataset:
    """ds with `emb` appended by the job's embedding actor pool (`gpus_per_actor` of a GPU each under CUDA).

    A sentence-transformers model's tokenizer runs first as CPU tasks (token ids
    passed to the actors as Arrow lists), so the model's actors only run the model.
    """
    e = ctx.embedder
    device = _device(e)
    gpu = device.startswith("cuda")
    if not gpu:
        _check_cpu_budget(e)
    tokenizer = tokenizer_for(ctx.model)
    if tokenizer is not None:
        ds = ds.map_batches(tokenize_batch, fn_kwargs={"tokenizer": tokenizer}, batch_format="pyarrow", batch_size=e.batch_size, memory=PREPARE_TASK_BYTES)
    return ds.map_batches(
        EmbedStage,
        fn_constructor_kwargs={
            "ref": ctx.model,
            "device": device,
            "model_batch_size": e.model_batch_size,
            "threads": max(1, int(e.cpus_per_actor)),
            "precision": e.precision,
            "tokenizer": tokenizer,
            "counter": ctx.progress.counter if counted and ctx.progress else None,
            "hits": None if hits is None else str(hits),
        },
        batch_format="pyarrow",
        batch_size=e.batch_size,
        compute=ray.data.ActorPoolStrategy(size=e.actors),
        num_gpus=e.gpus_per_actor if gpu else 0,
        num_cpus=0 if gpu else e.cpus_per_actor,
    )


def embed_texts(ctx: Context, texts: list[str], with_signals: bool) -> pa.Table:
    """A side corpus embedded by the same actor pool as the pool (never on the driver), in its input order."""
    table = pa.table({"_row": np.arange(len(texts)), S.TEXT: pa.array(texts, pa.string()), S.INVALID_REASON: pa.nulls(len(texts), pa.string())})
    ds = ray.data.from_arrow(table)
    if with_signals:
        ds = ds.map_batches(add_signals, batch_format="pyarrow", batch_size=ctx.embedder.batch_size)
    batches = list(_embedding(ctx, ds, counted=False).iter_batches(batch_format="pyarrow", batch_size=None))
    return pa.concat_tables(batches).sort_by("_row").drop_columns(["_row"])


def assign_clusters(batch: pa.Table, kmeans: KMeans) -> pa.Table:
    """Valid rows with their cluster and centroid distance: the input of SemDeDup's group-by."""
    batch = batch.filter(batch.column(S.INVALID_REASON).is_null()).drop_columns([S.INVALID_REASON])
    cluster, dist = kmeans.transform(from_fixed_list(batch.column(S.EMB)))
    return batch.append_column(S.D_CLUSTER, pa.array(cluster)).append_column(S.D_CENTROID_DIST, pa.array(dist))


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


def _device(e: EmbedderSpec) -> str:
    """auto = CUDA when the cluster has GPUs (the driver itself may be a CPU-only head node)."""
    if e.device != "auto":
        return e.device
    return "cuda" if ray.cluster_resources().get("GPU", 0) > 0 else "cpu"


def _check_cpu_budget(e: EmbedderSpec) -> None:
    """CPU actors hold their CPUs for the whole phase; a read task needs one whole CPU besides, or the job stalls.

    Fractions are counted as fractions: 1 CPU with one 0.5-CPU actor leaves 0.5,
    less than a read task asks for; 2 CPUs with 0.5 leave 1.5, enough.
    """
    total = ray.cluster_resources().get("CPU", 0)
    held = e.actors * e.cpus_per_actor
    if total - held < 1:
        raise JobError(
            f"embedder.actors x embedder.cpus_per_actor = {held:g} CPUs leaves {max(total - held, 0):g} of the cluster's "
            f"{total:g}, and reading needs 1 free CPU; lower embedder.actors or embedder.cpus_per_actor, or raise ray.num_cpus"
        )
