"""A job as declared data: phases, what each reads, and the work directory that caches them.

A `Phase` names what it needs (other phases), the exact spec slice and input
fingerprints it reads (a `Slice`, which is also all its body is given), and
its body. Its cache key is the hash of its own
slice plus the keys of what it needs, so a key changes exactly when something
the phase's output depends on changes: a graph, not a chain. Nothing else
decides reuse.

`WorkDir` holds the phases' outputs. A phase is built under a temporary name
and renamed into place with its `_SUCCESS` marker already inside, so a
directory named `NAME-KEY` is always complete; an exclusive lock keeps a second
job from using the same work directory at the same time.
"""

from __future__ import annotations

import dataclasses
import fcntl
import hashlib
import json
import os
import shutil
import socket
import time
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

from .errors import JobError

SUCCESS = "_SUCCESS"
NOT_PHASES = ("pieces", "content-cache")  # what else a work directory holds (pipeline/partitions.py, content_cache.py)
LOCK = ".lock"
TMP_PREFIX = ".tmp-"


def _always(spec: Any) -> bool:
    return True


def _never(spec: Any) -> bool:
    return False


class SliceError(Exception):
    """A phase body reached for a part of the spec its slice (and so its key) does not hold: a bug in the phase."""


class Slice:
    """What a phase body may read of the spec, and exactly what its cache key is the hash of.

    Parts are read as attributes (`s.clustering.n_clusters`); any other name
    raises `SliceError` naming the phase, so a body cannot depend on what its
    key does not cover. Parts are spec models, plain values or file
    fingerprints; `key_data()` is their JSON form.
    """

    def __init__(self, phase: str, **parts: Any):
        object.__setattr__(self, "_phase", phase)
        object.__setattr__(self, "_parts", parts)

    def __getattr__(self, name: str) -> Any:
        if name.startswith("__"):  # pickle and copy look for optional dunders: not a part
            raise AttributeError(name)
        parts = object.__getattribute__(self, "_parts")
        if name in parts:
            return parts[name]
        phase = object.__getattribute__(self, "_phase")
        raise SliceError(f"phase {phase} read {name!r}, which is not in its slice ({', '.join(parts)}); add it to the phase's reads so its key covers it")

    def __setattr__(self, name: str, value: Any) -> None:
        raise SliceError("a phase's slice is read-only")

    def __reduce__(self):
        return (_slice, (object.__getattribute__(self, "_phase"), object.__getattribute__(self, "_parts")))

    def key_data(self) -> dict:
        return {k: _jsonable(v) for k, v in object.__getattribute__(self, "_parts").items()}


def _slice(phase: str, parts: dict) -> Slice:
    return Slice(phase, **parts)


def _jsonable(value: Any) -> Any:
    if hasattr(value, "model_dump"):
        return value.model_dump(mode="json")
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return dataclasses.asdict(value)
    if isinstance(value, dict):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_jsonable(v) for v in value]
    return value


@dataclass(frozen=True)
class Phase:
    """One cached step of a job.

    `reads(spec, fingerprints)` returns the phase's `Slice`: the parts of the
    spec (and the fingerprints of the files) its output depends on. `run(ctx,
    slice, out, needed)` writes the phase into `out`, given only that slice and
    the directories of the phases it needs (None for a need that is off), and
    returns facts for the manifest. `when(spec)` says whether the phase is on;
    `frozen(spec)` whether it copies a state of an earlier run instead of
    computing it (pipeline/frozen.py), needing none of this run's phases.
    """

    name: str
    needs: tuple[str, ...]
    reads: Callable[[Any, dict], Slice]
    run: Callable[[Any, Slice, Path, dict[str, Path | None]], dict]
    when: Callable[[Any], bool] = _always
    frozen: Callable[[Any], bool] = _never  # whether its output is a state copied from an earlier run (it then needs nothing)

    def needs_for(self, spec: Any) -> tuple[str, ...]:
        return () if self.frozen(spec) else self.needs


def check_plan(phases: list[Phase]) -> None:
    """Every need names an earlier phase: the list order is a valid execution order."""
    seen: set[str] = set()
    for p in phases:
        missing = [n for n in p.needs if n not in seen]
        if missing:
            raise ValueError(f"phase {p.name} needs {missing} before it in the plan")
        seen.add(p.name)


# What phase outputs hold; bumped when that changes, so an older work directory is never read as current
# (5: embed is assembled from per-partition pieces; fitted phases may be frozen copies;
#  6: embed pieces hold ids/ for the pool index, score is assembled from pieces).
LAYOUT_VERSION = 6


def phase_keys(phases: list[Phase], spec: Any, fingerprints: dict) -> dict[str, str | None]:
    """Each enabled phase's key (None for a phase that is off), from its slice and its needs' keys."""
    check_plan(phases)
    keys: dict[str, str | None] = {}
    for p in phases:
        if not p.when(spec):
            keys[p.name] = None
            continue
        payload = {"phase": p.name, "format": LAYOUT_VERSION, "reads": p.reads(spec, fingerprints).key_data(), "needs": {n: keys[n] for n in p.needs_for(spec)}}
        keys[p.name] = hashlib.sha256(json.dumps(payload, sort_keys=True, default=str).encode()).hexdigest()[:16]
    return keys


def downstream(phases: list[Phase], names: set[str]) -> set[str]:
    """The named phases and every phase that needs one of them, directly or not."""
    out = set(names)
    for p in phases:
        if out & set(p.needs):
            out.add(p.name)
    return out


class WorkDir:
    """A job's work directory: locked while a job uses it, phases published by rename."""

    def __init__(self, path: Path):
        self.path = Path(path)
        self._lock_fh = None

    def __enter__(self) -> "WorkDir":
        self.path.mkdir(parents=True, exist_ok=True)
        fh = open(self.path / LOCK, "a+")
        try:
            fcntl.flock(fh, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            fh.seek(0)
            holder = fh.read().strip() or "another job"
            fh.close()
            raise JobError(f"work directory {self.path} is in use by {holder}; wait for it to finish or set output.work_dir") from None
        fh.seek(0)
        fh.truncate()
        fh.write(f"pid {os.getpid()} on {socket.gethostname()} since {time.strftime('%Y-%m-%d %H:%M:%S')}")
        fh.flush()
        self._lock_fh = fh
        for stale in self.path.glob(f"{TMP_PREFIX}*"):  # left by a killed job; we hold the lock, so no one is writing them
            shutil.rmtree(stale, ignore_errors=True)
        return self

    def __exit__(self, *exc) -> None:
        if self._lock_fh is not None:
            fcntl.flock(self._lock_fh, fcntl.LOCK_UN)
            self._lock_fh.close()
            self._lock_fh = None

    def phase_dir(self, name: str, key: str) -> Path:
        return self.path / f"{name}-{key}"

    def done(self, name: str, key: str) -> dict | None:
        """The facts of a completed phase, or None when it has not completed."""
        marker = self.phase_dir(name, key) / SUCCESS
        return json.loads(marker.read_text()) if marker.exists() else None

    def build(self, name: str, key: str, body: Callable[[Path], dict]) -> dict:
        """Run body into a temporary directory, mark it complete, rename it into place."""
        final = self.phase_dir(name, key)
        tmp = self.path / f"{TMP_PREFIX}{name}-{key}-{uuid.uuid4().hex[:8]}"
        tmp.mkdir()
        try:
            info = body(tmp)
            (tmp / SUCCESS).write_text(json.dumps(info))
            if final.exists():  # a forced rerun replaces the old copy
                old = self.path / f"{TMP_PREFIX}old-{name}-{key}-{uuid.uuid4().hex[:8]}"
                final.rename(old)
                shutil.rmtree(old, ignore_errors=True)
            tmp.rename(final)
        except BaseException:
            shutil.rmtree(tmp, ignore_errors=True)
            raise
        return info

    def phase_dirs(self) -> list[Path]:
        return sorted(p for p in self.path.iterdir() if p.is_dir() and not p.name.startswith(".") and p.name not in NOT_PHASES)


def gc(work: Path, keep: set[str], dry_run: bool = False) -> list[Path]:
    """Remove the phase directories of WORK whose names are not in keep, and the pieces no kept phase lists
    (its pieces.json); returns what was (or would be) removed. The content cache is kept whole."""
    with WorkDir(work) as wd:
        gone = [d for d in wd.phase_dirs() if d.name not in keep]
        listed = {name for d in wd.phase_dirs() if d.name in keep and (d / "pieces.json").exists() for name in json.loads((d / "pieces.json").read_text())}
        pieces = wd.path / "pieces"
        gone += sorted(p for p in (pieces.iterdir() if pieces.is_dir() else []) if p.is_dir() and p.name not in listed)
        if not dry_run:
            for d in gone:
                shutil.rmtree(d)
    return gone
