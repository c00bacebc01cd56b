"""Running a job: checks before any work, then the plan (`phases.PHASES`) phase by phase.

`run` validates what it can without Ray (`preflight`), takes the work
directory's lock, computes every phase's key from the spec and the input
fingerprints, reuses the phases whose key is complete, runs the others, and
publishes the output (`pipeline/output.py`).
"""

from __future__ import annotations

import contextlib
import errno
import json
import os
import shutil
import signal
import sys
import tempfile
import time
import traceback
from pathlib import Path
from typing import Callable, Iterator

import ray
import ray.data

from thresher.operators.embed import resolve_model
from thresher.operators.validate import ValidateConfig

from . import frozen, io, local_ray, output, reaper, seen, versions
from .confine import Roots
from .errors import InputError, Interrupted, JobError, SpecError
from .events import OnEvent, RunStatus
from .phases import PHASE_NAMES, PHASES, Context, validate_config
from .plan import TMP_PREFIX, Phase, Slice, WorkDir, downstream, phase_keys
from .progress import PhaseProgress
from .search import proxy_fingerprint
from .settings import Settings, load_settings
from .spec import JobSpec
from .tables import Lift

READ_TASK_BYTES = 32 * 2**20
JSONL_SAMPLE_LINES = 1000
_REAPER: list = []  # the watcher of the local Ray this process started, if any
STOPPED_BY: dict[str, int | None] = {"signal": None}  # the signal `stop_on_signals` caught during this run, if any


def stop_on_signals() -> None:
    """Make SIGTERM stop a job as Ctrl-C does (KeyboardInterrupt in the main thread), remembering which came.

    Installed after Ray starts, since `ray.init` sets a SIGTERM handler of its own.
    """

    def handler(signum, frame):
        STOPPED_BY["signal"] = signum
        raise KeyboardInterrupt

    STOPPED_BY["signal"] = None

    for signum in (signal.SIGINT, signal.SIGTERM):
        signal.signal(signum, handler)


def run(
    spec: JobSpec,
    log: Callable[[str], None] = print,
    progress: bool = True,
    on_event: OnEvent | None = None,
    force: tuple[str, ...] = (),
    capture_output: bool = False,
    handle_signals: bool = False,
    settings: Settings | None = None,
) -> dict:
    """Run a job to completion (resuming from its work directory) and return its manifest.

    `force` names phases to rerun even when complete (and so every phase after
    them); `on_event` receives the run events (also written to WORK/status.json
    and WORK/events.jsonl); log lines also go to WORK/job.log. With
    `capture_output`, everything written to file descriptors 1 and 2 while the
    job runs (Ray's logs and warnings, model banners) goes to WORK/job.log too.
    With `handle_signals`, SIGINT and SIGTERM stop the job with `Interrupted`
    (exit 130 / 143 from the CLI); the phases already complete are kept.
    `settings`: the operator's (proxy commands); default from the environment
    and THRESHER_CONFIG.
    """
    t0 = time.perf_counter()
    settings = settings if settings is not None else load_settings()
    unknown = sorted(set(force) - set(PHASE_NAMES))
    if unknown:
        raise SpecError(f"--force: no phase {unknown[0]!r} (phases: {', '.join(PHASE_NAMES)})")
    out_path = Path(spec.output.path)
    work_path = Path(spec.output.work_path())
    roots = Roots.of(settings.allowed_roots)
    inputs, side = preflight(spec, out_path, work_path, roots)
    proxy_fingerprint(spec, settings)  # a proxy command the settings lack stops the job here, before any work
    roots.makedirs(WORK_FIELD, work_path)
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

        ctx = Context(work, log_line, emit, inputs, side, lift_for(spec, inputs), spec.embedder, settings=settings, roots=roots,
                      content_cache=settings.content_cache or work.path / "content-cache")
        if spec.fit is not None:
            ctx.frozen = frozen.state_dir(spec.fit.from_run, roots)
        if inputs.empty:
            ctx.warn(f"{len(inputs.empty)} input files have no rows and were skipped: {', '.join(inputs.empty[:5])}{' ...' if len(inputs.empty) > 5 else ''}")
        try:
            manifest = _run_plan(ctx, spec, progress, set(force), t0, handle_signals)
        except BaseException as e:
            # A signal's KeyboardInterrupt can surface as another error: Ray Data's clean-up of an interrupted
            # read or actor pool raises its own, with the interrupt only as context. Either way the job was stopped.
            stopped = STOPPED_BY["signal"] if handle_signals else None
            if isinstance(e, KeyboardInterrupt) or stopped is not None:
                emit({"event": "job_failed", "error": f"interrupted in phase {ctx.phase or 'start-up'}"})
                raise Interrupted(ctx.phase or "start-up", stopped or signal.SIGINT) from None
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


def _fingerprints(inputs: io.InputFiles, side: dict[str, io.InputFiles], spec: JobSpec, settings: Settings) -> dict:
    found: dict = {"input": inputs.fingerprint(), **{k: v.fingerprint() for k, v in side.items()}}
    command = proxy_fingerprint(spec, settings)
    if command is not None:
        found["selection.search.proxy"] = command
    if getattr(spec.selection, "memory", None) == "previous":  # the version UDS's memory starts from (None: no version yet)
        out = Path(spec.output.path)
        found["previous_selection"] = str(versions.resolve(out)) if versions.is_versioned(out) and versions.current(out) else None
    if spec.fit is not None:  # the frozen states, by content
        state = frozen.state_dir(spec.fit.from_run, Roots.of(settings.allowed_roots))
        found["frozen"] = {name: frozen.digest(state / name) for name in frozen.PHASES if (state / name).is_dir()}
    return found


def keys_for(spec: JobSpec, settings: Settings | None = None) -> dict[str, str | None]:
    """Each phase's key for a spec, with the inputs (and proxy command) as they are now (None for a phase that is off).

    The dedup phase's key and those after it hold the pool's arrivals (pipeline/seen.py), known once the embed
    phase is complete: before, they are the keys a job would start with."""
    settings = settings if settings is not None else load_settings()
    inputs = io.locate(spec.input.paths, spec.input.format, validate_config(spec.input))
    side = {k: io.locate(r.paths, r.format, ValidateConfig(text_column=r.text_column)) for k, r in spec.side_corpora().items()}
    fingerprints = _fingerprints(inputs, side, spec, settings)
    keys = phase_keys(PHASES, spec, fingerprints)
    work = WorkDir(Path(spec.output.work_path()))
    if keys["dedup"] is not None and work.done("embed", keys["embed"]) is not None:
        with tempfile.TemporaryDirectory() as tmp:  # no Ray here: the shuffle runs in this process
            found = seen.for_job(Path(spec.output.path), work.phase_dir("embed", keys["embed"]), work.path, inputs.files, Roots.of(settings.allowed_roots), Path(tmp) / "arrivals", here=True)
        keys = phase_keys(PHASES, spec, fingerprints | {"arrivals": found.fingerprint})
    return keys


def job_phase_dirs(spec: JobSpec) -> list[str]:
    """The phase directory names a spec's job uses in its work directory."""
    return [f"{name}-{key}" for name, key in keys_for(spec).items() if key]


def _run_plan(ctx: Context, spec: JobSpec, progress: bool, force: set[str], t0: float, handle_signals: bool) -> dict:
    fingerprints = _fingerprints(ctx.inputs, ctx.side, spec, ctx.settings)
    keys = phase_keys(PHASES, spec, fingerprints)
    forced = downstream(PHASES, force)
    t = time.perf_counter()
    ctx.timings["ray"] = {**_init_ray(spec, progress), "seconds": round(time.perf_counter() - t, 3)}
    if handle_signals:
        stop_on_signals()
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
            info = _run_phase(ctx, phase, phase.reads(spec, fingerprints), key, {n: dirs[n] for n in phase.needs_for(spec)})
        ctx.timings[phase.name] = info | {"key": key}
        dirs[phase.name] = ctx.work.phase_dir(phase.name, key)
        if phase.name == "embed" and keys["dedup"] is not None:  # the pool is known now: which run first saw each document
            t = time.perf_counter()
            scratch = ctx.work.path / f"{TMP_PREFIX}arrivals"  # a killed job's is removed when the next one locks the work directory
            ctx.arrivals = seen.for_job(Path(spec.output.path), dirs["embed"], ctx.work.path, ctx.inputs.files, ctx.roots, scratch)
            ctx.timings["arrivals"] = {"seconds": round(time.perf_counter() - t, 3), "reduce_tasks": ctx.arrivals.parts, "on_driver": ctx.arrivals.here}
            fingerprints["arrivals"] = ctx.arrivals.fingerprint
            keys = phase_keys(PHASES, spec, fingerprints)
    facts = {
        "inputs": {"format": ctx.inputs.format, "files": fingerprints["input"], "empty_files": list(ctx.inputs.empty), "side": {k: v for k, v in fingerprints.items() if k != "input"}},
        "warnings": ctx.warnings,
    }
    ctx.phase = "write"
    ctx.emit({"event": "phase_start", "phase": "write"})
    try:
        return output.publish(spec, dirs, ctx.timings, facts, ctx.log, started=t0, roots=ctx.roots, arrivals=ctx.arrivals)
    except Exception as e:
        if _disk_full(e):
            raise JobError(f"no space left on the device of the output {Path(spec.output.path).parent} (writing the output); free space and rerun") from None
        raise
    finally:
        if ctx.arrivals is not None:
            shutil.rmtree(ctx.arrivals.dir, ignore_errors=True)


def _disk_full(e: BaseException | None) -> bool:
    """Whether an error is, or was caused by, a full disk, also inside a Ray task's error.

    Ray's errors do not always chain the worker's exception (`UserCodeException`
    carries it only as text), so the text of the whole chain is read too.
    """
    seen, chain = 0, e
    while chain is not None and seen < 10:
        if isinstance(chain, OSError) and chain.errno in (errno.ENOSPC, errno.EDQUOT):
            return True
        chain = getattr(chain, "cause", None) or chain.__cause__ or chain.__context__
        seen += 1
    if e is None:
        return False
    text = "".join(traceback.format_exception(e))
    return any(s in text for s in ("No space left on device", f"[Errno {errno.ENOSPC}]", "Disk quota exceeded"))


def _run_phase(ctx: Context, phase: Phase, s: Slice, key: str, needed: dict[str, Path | None]) -> dict:
    ctx.log(f"[{phase.name}] running")
    ctx.emit({"event": "phase_start", "phase": phase.name, "key": key})
    t = time.perf_counter()

    def body(d: Path) -> dict:
        info = phase.run(ctx, s, d, needed)
        info["seconds"] = round(time.perf_counter() - t, 3)
        if info.get("rows"):
            info["docs_per_s"] = round(info["rows"] / max(info["seconds"], 1e-9), 1)
        return info

    ctx.phase = phase.name
    try:
        with PhaseProgress(ctx.emit, phase.name, _rows_total(ctx, phase.name)) as ctx.progress:
            info = ctx.work.build(phase.name, key, body)
    except Exception as e:
        if _disk_full(e):
            raise JobError(f"no space left on the device of the work directory {ctx.work.path} (phase {phase.name}); free space or set output.work_dir") from None
        raise
    ctx.progress = None
    ctx.emit({"event": "phase_end", "phase": phase.name, "key": key, **info})
    rows = f", {info['rows']} rows" if info.get("rows") else ""
    ctx.log(f"[{phase.name}] done in {info['seconds']:.1f}s{rows}")
    return info


def _rows_total(ctx: Context, phase: str) -> int | None:
    """Rows a phase will count: the input's for embed (Parquet footers; unknown for JSONL), the embedded rows after."""
    if phase == "embed":
        return ctx.inputs.rows
    rows = ctx.timings["embed"]["rows"]
    return 2 * rows if phase == "select" else None if phase == "semdedup" else rows  # select: histogram pass + write pass


# --- checks before any work ----------------------------------------------------------


def _referenced_input_columns(spec: JobSpec) -> list[tuple[str, str, str]]:
    """(spec field, column, use) of every input column the job reads besides text, id and tokens."""
    sel = spec.selection
    computed = spec.computed_columns()
    refs = [(f"scorers.columns.{i}.column", c.column, "numeric") for i, c in enumerate(spec.scorers.columns)]
    if sel.domain != "cluster" and sel.domain not in computed:
        refs.append(("selection.domain", sel.domain, "text"))
    refs += [(f"selection.filters.{i}.column", f.column, "numeric" if f.values is None else "text") for i, f in enumerate(sel.filters) if f.column not in computed]
    refs += [(f"selection ({sel.strategy}) quality column", c, "numeric") for c in sorted(sel.columns()) if c not in computed]
    return refs


WORK_FIELD = "output.work_dir"


def preflight(spec: JobSpec, out_path: Path, work_path: Path, roots: Roots = Roots()) -> tuple[io.InputFiles, dict[str, io.InputFiles]]:
    """Every check that needs no Ray: paths (inside the roots), overlaps, columns and keys, side corpora. Raises naming the field."""
    roots.check_output(out_path, work_path, WORK_FIELD if spec.output.work_dir else f"{WORK_FIELD} (default: OUTPUT.work)")
    for path, field_name in ((out_path, "output.path"), (work_path, WORK_FIELD)):
        blocker = next((p for p in (path, *path.parents) if p.exists() and not p.is_dir()), None)
        if blocker is not None and blocker != path:
            raise InputError(f"{field_name}: cannot create {path}: {blocker} is a file, not a directory")
    if out_path.exists() and not out_path.is_dir():
        raise InputError(f"output.path {out_path} is an existing file, not a directory; give a directory path")
    o, w = out_path.resolve(), work_path.resolve()
    if o == w or o in w.parents or w in o.parents:
        raise SpecError(f"output.work_dir {work_path} and output.path {out_path} overlap; replacing the output would delete the work directory")
    if spec.output.versions is not None:
        if (out_path / "manifest.json").exists():
            raise JobError(f"output.path {out_path} holds an unversioned output; give versioned outputs a new directory")
    elif versions.is_versioned(out_path):
        raise JobError(f"output.path {out_path} holds versions (OUTPUT/versions/); set output.versions to add one")
    elif out_path.exists() and not spec.output.overwrite:
        raise JobError(f"output {out_path} already exists (set output.overwrite: true to replace it)")
    model = spec.embedder.local_model()
    if model is not None and roots:  # the model's files are opened by the driver and every actor
        model = roots.check_tree("embedder.model", model)
        modules = Path(model) / "modules.json"
        try:
            listed = json.loads(modules.read_text()) if modules.is_file() else []
        except ValueError:
            listed = []  # not a sentence-transformers layout: loading it fails with the library's own error
        for m in listed if isinstance(listed, list) else []:
            roots.check("embedder.model", Path(model) / str(m.get("path", "") if isinstance(m, dict) else ""))
    inputs = io.locate(spec.input.paths, spec.input.format, validate_config(spec.input), roots)
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
    computed = spec.computed_columns()
    sel = spec.selection
    for i, col in enumerate(sel.exclude):
        if col not in computed:
            raise SpecError(f"selection.exclude.{i}: no decision column {col!r} (is its scorer enabled?)")
    if spec.fit is not None:
        state = frozen.state_dir(spec.fit.from_run, roots)
        searches = getattr(spec.selection, "search", None) is not None or getattr(spec.selection, "refine", None) is not None
        if searches and not (state / "search").is_dir():
            raise InputError(f"fit.from_run: {spec.fit.from_run} holds no searched parameters ({frozen.STATE}/search) and this spec searches; give a run that searched")
    from_search = getattr(spec.selection, "from_search", None)
    if from_search:
        roots.check("selection.from_search", from_search)
        if not Path(from_search).is_file():
            raise InputError(f"selection.from_search: {from_search} is not a file (give WORK/search-KEY/search.json of an earlier job)")
    side = {}
    for field_name, ref in spec.side_corpora().items():
        try:
            found = io.locate(ref.paths, ref.format, ValidateConfig(text_column=ref.text_column), roots, f"{field_name}.paths")
        except InputError as e:
            raise InputError(str(e) if str(e).startswith(field_name) else f"{field_name}: {e}") from None
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


def _init_ray(spec: JobSpec, progress: bool) -> dict:
    """Start or join the job's Ray; returns where it runs: the cluster's address (None for a local Ray it started, or
    one already running in this process), its alive nodes and CPUs."""
    # Ray Data packs Parquet row groups into read tasks of this many uncompressed
    # bytes (default 128 MiB), and a fused read -> map -> write task holds its
    # whole output until the write (bench/RESULTS.md, memory): a smaller unit
    # bounds each worker.  Read on the driver when a read is planned.
    os.environ.setdefault("RAY_DATA_PARQUET_BIN_PACKING_BYTES", str(READ_TASK_BYTES))
    address, started = None, {}
    if not ray.is_initialized():
        # RAY_ADDRESS: Ray's own convention, set for the entrypoint of `ray job submit -- thresher run ...`
        address = spec.ray.address or os.environ.get("RAY_ADDRESS")
        if address:
            ray.init(address=address, log_to_driver=False)
        else:
            # Ray Data indexes Parquet footers with 32 actors per read (one Python
            # process each) whatever the machine; on a laptop-sized local Ray that
            # start-up costs more than our few files' footers (bench/RESULTS.md).
            # Workers inherit the driver's environment; a value the user set wins.
            cpus = spec.ray.num_cpus or os.cpu_count() or 1
            os.environ.setdefault("RAY_DATA_PARQUET_FOOTER_NUM_ACTORS", str(min(32, cpus)))
            _REAPER.append(reaper.watch())  # this Ray is the job's: it must not outlive the driver (before init: it watches Ray start)
            full = local_ray.start(spec.ray.num_cpus, spec.ray.object_store_mb * 2**20 if spec.ray.object_store_mb else None)
            if full:
                started["full_head"] = f"{full}: started with its {', '.join(local_ray.LEFT_OUT)}"
    dctx = ray.data.DataContext.get_current()
    # Without a limit Ray Data lets a fast reader run ahead of a slow embedder
    # until half the object store is full: memory then follows the corpus up
    # to that point (bench/RESULTS.md, memory).
    dctx.execution_options.resource_limits = ray.data.ExecutionResources(object_store_memory=spec.ray.buffer_mb * 2**20)
    dctx.enable_progress_bars = progress
    dctx.print_on_execution_start = False
    return {"address": address, "nodes": sum(1 for n in ray.nodes() if n["Alive"]), "cpus": ray.cluster_resources().get("CPU", 0.0), **started}
