"""Versioned outputs: OUT/versions/<id>/ per run, OUT/latest moved atomically, a diff against the previous version.

With `output.versions`, a run publishes a complete output (as an unversioned
run does at OUT) into `OUT/versions/<id>/`, ids sortable by time, and only
then points `OUT/latest` at it: a symlink replaced by one rename, or, where
the filesystem has no symlinks, the pointer file `OUT/LATEST` (the id)
replaced the same way. A trainer pins a version by its directory; a reader
of `latest` sees the old version or the new one, never a mix. A job killed
before the pointer moved leaves the previous version current; the version
directory it may have finished is never pointed to and the next run removes
it.

The new manifest's `changes` compare the selection with the previous
version's: documents added, kept and dropped (and why each dropped one
went), and the selected documents per domain before and after;
`changes/added.parquet` and `changes/dropped.parquet` list them by doc_id.
A shard whose bytes equal the previous version's shard of the same name is
a hard link to it, not a copy. Versions beyond `output.versions.keep` are
removed, oldest first, never the current one.
"""

from __future__ import annotations

import json
import os
import shutil
import time
import uuid
from collections import Counter
from pathlib import Path

import polars as pl
import pyarrow as pa
import pyarrow.parquet as pq

from thresher.operators import schema as S

from . import shards, shuffle

VERSIONS, LATEST, POINTER = "versions", "latest", "LATEST"
STAGING = ".partial-"
SOURCE_REMOVED = "source removed"


def new_id(previous: str | None = None) -> str:
    """Sortable by time (UTC, to the millisecond), unique by a random suffix, and always after `previous` (two runs in
    one millisecond, or a clock set back, get the previous id extended)."""
    now = time.time()
    vid = f"{time.strftime('%Y%m%dT%H%M%S', time.gmtime(now))}{int(now * 1000) % 1000:03d}Z-{uuid.uuid4().hex[:6]}"
    return vid if previous is None or vid > previous else f"{previous}.{uuid.uuid4().hex[:4]}"


def current(out: Path) -> str | None:
    """The id `latest` points to, or None before the first version."""
    link = out / LATEST
    if link.is_symlink():
        return Path(os.readlink(link)).name
    pointer = out / POINTER
    return pointer.read_text().strip() or None if pointer.exists() else None


def listed(out: Path) -> list[str]:
    """Every published version's id, oldest first: not staging directories, nor a version newer than `latest`
    (finished by a job killed before it moved the pointer, and removed by the next run)."""
    d, now = out / VERSIONS, current(out)
    if not d.is_dir() or now is None:
        return []
    return sorted(p.name for p in d.iterdir() if p.is_dir() and not p.name.startswith(".") and p.name <= now)


def is_versioned(out: Path) -> bool:
    return (out / VERSIONS).is_dir() or (out / LATEST).is_symlink() or (out / POINTER).exists()


def resolve(out: Path) -> Path:
    """The directory an output's reader wants: a versioned output's current version, else OUT itself."""
    now = current(out) if is_versioned(out) else None
    return out / VERSIONS / now if now else out


def clear_unpublished(out: Path) -> list[str]:
    """Remove staging directories and versions newer than the current one (finished by a job killed before it moved `latest`)."""
    now = current(out)
    gone = []
    for p in (out / VERSIONS).iterdir() if (out / VERSIONS).is_dir() else []:
        if p.name.startswith(STAGING) or (p.is_dir() and not p.name.startswith(".") and (now is None or p.name > now)):
            shutil.rmtree(p, ignore_errors=True)
            gone.append(p.name)
    return gone


def point_latest(out: Path, version: str) -> None:
    """Move `latest` to VERSION in one rename: the symlink where the filesystem has them, else the pointer file."""
    tmp = out / f".{LATEST}-{uuid.uuid4().hex[:8]}"
    try:
        os.symlink(f"{VERSIONS}/{version}", tmp)
    except OSError:  # no symlinks here (e.g. some network or object-store mounts)
        tmp.write_text(version + "\n")
        os.replace(tmp, out / POINTER)
        return
    os.replace(tmp, out / LATEST)


def prune(out: Path, keep: int) -> list[str]:
    """Remove the oldest versions beyond `keep`, never the current one; returns the ids removed."""
    now = current(out)
    old = [v for v in listed(out) if v != now]
    gone = old[: max(0, len(old) - (keep - 1))]
    for v in gone:
        shutil.rmtree(out / VERSIONS / v)
    return gone


def share_unchanged(shards: list[dict], staged: Path, previous: Path | None) -> int:
    """Replace each staged shard whose sha256 equals the previous version's same-named shard by a hard link to it."""
    if previous is None or not (previous / "manifest.json").exists():
        return 0
    before = {s["path"]: s["sha256"] for s in json.loads((previous / "manifest.json").read_text()).get("shards", [])}
    shared = 0
    for s in shards:
        if before.get(s["path"]) == s["sha256"]:
            tmp = staged / (s["path"] + ".link")
            try:
                os.link(previous / s["path"], tmp)
            except OSError:  # another filesystem, or no hard links: keep the copy
                continue
            os.replace(tmp, staged / s["path"])
            shared += 1
    return shared


def selected_ids(version: Path) -> dict[str, str]:
    """doc_id -> domain of every document a version's shards hold."""
    found: dict[str, str] = {}
    for f in sorted((version / "data").glob("*.parquet")):
        t = pq.read_table(f, columns=[S.DOC_ID, S.DOMAIN])
        found.update(zip(t.column(S.DOC_ID).to_pylist(), t.column(S.DOMAIN).to_pylist()))
    return found


_NOW = pa.schema([(S.DOC_ID, pa.string()), (S.DOMAIN, pa.string()), (S.SEL_COPIES, pa.int32()), (S.SEL_REASON, pa.string()), (S.INVALID_REASON, pa.string())])
_BEFORE = pa.schema([(S.DOC_ID, pa.string()), (S.DOMAIN, pa.string())])
_ADDED = _BEFORE
_DROPPED = pa.schema([(S.DOC_ID, pa.string()), (S.DOMAIN, pa.string()), ("reason", pa.string())])


def changes(previous: Path, previous_id: str, select_files: list[Path], score_dir: Path, staged: Path) -> dict:
    """The selection against the previous version's, compared by doc_id on the workers.

    A shuffle by doc_id of this run's decisions (a task per select file) and of the previous version's shards (a task
    per shard); a task per part compares its documents, and one writes STAGED/changes/{added,dropped}.parquet (doc_id,
    domain, and why a dropped one went: the reason it was not selected now, `invalid: REASON`, or `source removed`
    when it is no longer in the input; sorted by doc_id). The counts are returned; the driver holds none of the ids.
    A doc_id with several rows (a repeated id, quarantined) counts as selected when one of them is.
    """
    old_shards = sorted((previous / "data").glob("*.parquet"))
    rows = sum(pq.ParquetFile(f).metadata.num_rows for f in [*select_files, *old_shards])
    (staged / "changes").mkdir()
    with shuffle.exchange(staged / "changes", shuffle.reduce_partitions(rows)) as ex:  # its exchange/ removed before the publish

        def rounds(stage):
            stage(_route_decisions, [(ex, str(f), str(score_dir)) for f in select_files])
            stage(_route_selected, [(ex, str(f)) for f in old_shards])
            found = stage(_compare, [(ex, q) for q in range(ex.parts)])
            stage(_gather, [(ex, str(staged / "changes"))])
            return found

        found = shuffle.run(ex.parts, rounds, here=rows <= shuffle.PART_ROWS)
    total = Counter()
    dropped_by_reason, before, after = Counter(), Counter(), Counter()
    for f in found:
        total.update({k: f[k] for k in ("added", "kept", "dropped")})
        dropped_by_reason.update(f["dropped_by_reason"])
        before.update(f["before"])
        after.update(f["after"])
    return {
        "previous": previous_id,
        "added": total["added"],
        "kept": total["kept"],
        "dropped": total["dropped"],
        "dropped_by_reason": dict(sorted(dropped_by_reason.items())),
        "domains": {d: {"before": before.get(d, 0), "after": after.get(d, 0)} for d in sorted(set(before) | set(after), key=str)},
    }


def _route_decisions(ex: shuffle.Exchange, select_file: str, score_dir: str) -> int:
    """Ray task: a select file's decisions, routed by doc_id."""
    tables = [t.select(_NOW.names).cast(_NOW) for t in shards.file_decisions(Path(select_file), Path(score_dir), [S.INVALID_REASON], [S.DOC_ID, S.DOMAIN, S.SEL_COPIES, S.SEL_REASON])]
    t = pa.concat_tables(tables) if tables else _NOW.empty_table()
    return ex.write("now", uuid.uuid4().hex, shuffle.split(t, shuffle.key_hash(t.column(S.DOC_ID)), ex.parts))


def _route_selected(ex: shuffle.Exchange, shard: str) -> int:
    """Ray task: the documents a shard of the previous version holds, routed by doc_id."""
    t = pq.read_table(shard, columns=[S.DOC_ID, S.DOMAIN]).cast(_BEFORE)
    return ex.write("before", uuid.uuid4().hex, shuffle.split(t, shuffle.key_hash(t.column(S.DOC_ID)), ex.parts))


def _compare(ex: shuffle.Exchange, part: int) -> dict:
    """Ray task: one part's documents now and before: the added and dropped ones (to the exchange) and the counts."""
    now = pl.from_arrow(ex.read("now", part, _NOW)).with_columns((pl.col(S.SEL_COPIES).fill_null(0) > 0).alias("_selected"))
    now = now.sort([S.DOC_ID, "_selected"], descending=[False, True], maintain_order=True).unique(S.DOC_ID, keep="first", maintain_order=True)
    before = pl.from_arrow(ex.read("before", part, _BEFORE)).unique(S.DOC_ID, keep="first", maintain_order=True)
    selected = now.filter("_selected")
    added = selected.join(before, on=S.DOC_ID, how="anti").select(S.DOC_ID, S.DOMAIN)
    why = (
        pl.when(pl.col(S.INVALID_REASON).is_not_null()).then(pl.lit("invalid: ") + pl.col(S.INVALID_REASON))
        .when(pl.col(S.SEL_REASON).is_not_null()).then(pl.col(S.SEL_REASON))
        .when(pl.col("_selected").is_null()).then(pl.lit(SOURCE_REMOVED))
        .otherwise(pl.lit("not selected"))
    )
    gone = before.join(now.drop(S.DOMAIN), on=S.DOC_ID, how="left").filter(~pl.col("_selected").fill_null(False))
    dropped = gone.select(S.DOC_ID, S.DOMAIN, why.alias("reason"))
    ex.write("added", part, [added.to_arrow().cast(_ADDED)])
    ex.write("dropped", part, [dropped.to_arrow().cast(_DROPPED)])
    counts = lambda frame, col: dict(Counter(frame.get_column(col).to_list()))  # noqa: E731
    return {"added": added.height, "kept": selected.height - added.height, "dropped": dropped.height, "dropped_by_reason": counts(dropped, "reason"),
            "before": counts(before, S.DOMAIN), "after": counts(selected, S.DOMAIN)}


def _gather(ex: shuffle.Exchange, directory: str) -> int:
    """Ray task: the parts' added and dropped documents as changes/added.parquet and changes/dropped.parquet."""
    for name, schema in (("added", _ADDED), ("dropped", _DROPPED)):
        pq.write_table(ex.read(name, 0, schema).sort_by(S.DOC_ID), Path(directory) / f"{name}.parquet")
    return 0


def table(out: Path) -> str:
    """`thresher versions OUT`: one line per version, newest first, the current one marked."""
    now = current(out)
    lines = []
    for v in reversed(listed(out)):
        try:
            m = json.loads((out / VERSIONS / v / "manifest.json").read_text())
        except (OSError, ValueError):
            lines.append(f"  {v}  (no readable manifest)")
            continue
        c, ch = m.get("counts", {}), m.get("changes")
        diff = f"  +{ch['added']} -{ch['dropped']} ={ch['kept']} vs {ch['previous']}" if ch else "  (first version)"
        lines.append(f"{'*' if v == now else ' '} {v}  {c.get('input', 0):,} input  {c.get('selected_docs', 0):,} selected{diff}")
    return "\n".join(lines) + ("\n" if lines else "")
