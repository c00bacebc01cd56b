"""Frozen fitted states: a run publishes what it fitted, and a later run (`fit: {from_run: ...}`) reuses it.

Every output holds `state/`: the clusters phase's k-means and cluster
sizes, the fit phase's scorer states (classifier, target similarity, DSIR,
normalisers) and, when the run searched, the search phase's result. A job
with `fit.from_run` copies them instead of fitting: the clusters, fit and
search phases then need nothing of this run's data, and their keys hash the
states' content, so a grown corpus does not move an old document's cluster,
features or scores, and every phase keyed on them is reused where its own
input did not change.

`from_run` names an output directory, one of its versions, a versioned
output's root (its `latest`), or a manifest.json in one of them.
"""

from __future__ import annotations

import hashlib
import os
import shutil
from pathlib import Path

from .confine import Roots
from .plan import SUCCESS
from .errors import InputError
from .versions import LATEST, current, is_versioned

STATE = "state"
PHASES = ("clusters", "fit", "search")  # the phases whose outputs are states


def state_dir(from_run: str, roots: Roots = Roots()) -> Path:
    """The state/ directory `from_run` names, checked against the roots; InputError naming the field when there is none."""
    path = Path(from_run)
    if path.name == "manifest.json":
        path = path.parent
    if is_versioned(path):
        if current(path) is None:
            raise InputError(f"fit.from_run: {from_run} has no published version yet")
        path = path / LATEST
    state = path / STATE
    real = roots.check("fit.from_run", state)
    if not (state / "clusters").is_dir() or not (state / "fit").is_dir():
        raise InputError(f"fit.from_run: {from_run} holds no fitted states ({STATE}/clusters and {STATE}/fit); give the output of a run of this thresher")
    return Path(real)


def digest(directory: Path) -> str:
    """The content hash of a state directory (or of a phase directory, less its completion marker): every file's relative name and bytes."""
    h = hashlib.sha256()
    for f in sorted(p for p in directory.rglob("*") if p.is_file() and p.name != SUCCESS):
        h.update(str(f.relative_to(directory)).encode() + b"\0")
        with open(f, "rb") as fh:
            for chunk in iter(lambda: fh.read(1 << 20), b""):
                h.update(chunk)
    return h.hexdigest()[:16]


def restore(source: Path, target: Path, roots: Roots) -> dict:
    """Copy a frozen state into a phase directory, each file read through a checked descriptor (pipeline/confine.py)."""
    for f in sorted(p for p in source.rglob("*") if p.is_file()):
        out = target / f.relative_to(source)
        out.parent.mkdir(parents=True, exist_ok=True)
        with os.fdopen(roots.open_fd("fit.from_run", str(f)), "rb") as src, open(out, "wb") as dst:
            shutil.copyfileobj(src, dst)
    return {"frozen_from": str(source), "frozen_digest": digest(target)}


def publish(dirs: dict[str, Path | None], staging: Path) -> None:
    """Put the run's states into its output's state/ (hard links where the filesystem allows, else copies)."""
    for name in PHASES:
        src = dirs.get(name)
        if src is None:
            continue

        def link(a: str, b: str) -> None:
            try:
                os.link(a, b)
            except OSError:
                shutil.copy2(a, b)

        shutil.copytree(src, staging / STATE / name, copy_function=link, ignore=shutil.ignore_patterns("_SUCCESS"))
