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
from collections.abc import Iterable
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

from thresher.operators import schema as S

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


def changes(previous: Path, previous_id: str, decisions: Iterable[pa.Table], staged: Path) -> dict:
    """The selection against the previous version's, from the new run's decisions (doc_id, domain, sel_copies, sel_reason, invalid_reason).

    Written to STAGED/changes/{added,dropped}.parquet (doc_id, domain, and why a
    dropped one went: the reason it was not selected now, `invalid: REASON`, or
    `source removed` when it is no longer in the input); the counts are returned.
    """
    before = selected_ids(previous)
    seen: set[str] = set()
    added: dict[str, list] = {S.DOC_ID: [], S.DOMAIN: []}
    dropped: dict[str, list] = {S.DOC_ID: [], S.DOMAIN: [], "reason": []}
    domains_after: Counter = Counter()
    kept = 0
    for t in decisions:
        for doc, domain, copies, reason, invalid in zip(*(t.column(c).to_pylist() for c in (S.DOC_ID, S.DOMAIN, S.SEL_COPIES, S.SEL_REASON, S.INVALID_REASON))):
            seen.add(doc)
            if copies and copies > 0:
                domains_after[domain] += 1
                if doc in before:
                    kept += 1
                else:
                    added[S.DOC_ID].append(doc)
                    added[S.DOMAIN].append(domain)
            elif doc in before:
                dropped[S.DOC_ID].append(doc)
                dropped[S.DOMAIN].append(before[doc])
                dropped["reason"].append(f"invalid: {invalid}" if invalid else reason or "not selected")
    for doc, domain in before.items():
        if doc not in seen:
            dropped[S.DOC_ID].append(doc)
            dropped[S.DOMAIN].append(domain)
            dropped["reason"].append(SOURCE_REMOVED)
    (staged / "changes").mkdir()
    pq.write_table(pa.table(added, schema=pa.schema([(S.DOC_ID, pa.string()), (S.DOMAIN, pa.string())])), staged / "changes" / "added.parquet")
    pq.write_table(pa.table(dropped, schema=pa.schema([(S.DOC_ID, pa.string()), (S.DOMAIN, pa.string()), ("reason", pa.string())])), staged / "changes" / "dropped.parquet")
    domains_before = Counter(before.values())
    return {
        "previous": previous_id,
        "added": len(added[S.DOC_ID]),
        "kept": kept,
        "dropped": len(dropped[S.DOC_ID]),
        "dropped_by_reason": dict(sorted(Counter(dropped["reason"]).items())),
        "domains": {d: {"before": domains_before.get(d, 0), "after": domains_after.get(d, 0)} for d in sorted(set(domains_before) | set(domains_after), key=str)},
    }


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
