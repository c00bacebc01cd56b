"""Publishing a selection: shards, rejected/, quarantine/, manifest.json, then one rename.

Everything is written into a hidden staging directory beside the output and
renamed into place last, so OUTPUT either does not exist or is complete.
"""

from __future__ import annotations

import json
import platform
import shutil
import time
import uuid
from collections import Counter, defaultdict
from importlib import metadata
from pathlib import Path
from typing import Callable

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from thresher.operators import schema as S
from thresher.operators.diversity import VENDI_SAMPLE, cluster_entropy, vendi_score
from thresher.operators.embed import from_fixed_list
from thresher.operators.histogram import domain_order
from thresher.operators.selection import uniform_from_ids

from . import frozen, seen, shards, shuffle, versions
from .confine import Roots
from .profiles import DomainProfiles
from .report import job_report
from .scoring import FAR_QUANTILE
from .spec import JobSpec

VERSIONED = ("thresher", "ray", "pyarrow", "polars", "numpy", "faiss-cpu", "faiss-gpu-cu12", "torch", "sentence-transformers", "model2vec")
DISTRIBUTION_BINS = 20
NOT_IN_QUARANTINE_PREFIXES = ("sig_", "q_", "d_", "sel_", S.DOMAIN, S.N_TOKENS)


def publish(spec: JobSpec, dirs: dict[str, Path | None], timings: dict, facts: dict, log: Callable[[str], None], started: float, roots: Roots = Roots(),
            arrivals: seen.Arrivals | None = None) -> dict:
    """Write the output from the score and select phases, manifest last, then one rename (the output checked against the roots before each).

    Unversioned, the output is OUT; with `output.versions`, it is a new
    OUT/versions/ID, and `latest` moves to it after the rename (pipeline/versions.py).
    """
    out = Path(spec.output.path)
    score_dir, select_dir, embed_dir = dirs["score"], dirs["select"], dirs["embed"]
    version = previous = None
    if spec.output.versions is not None:
        roots.makedirs("output.path", out / versions.VERSIONS)
        roots.check("output.path", out / versions.VERSIONS)  # again just before removing anything in it
        cleared = versions.clear_unpublished(out)
        if cleared:
            log(f"[write] removed {', '.join(cleared)}: left unpublished by a job stopped before it moved {out / versions.LATEST}")
        previous = versions.current(out)
        version = versions.new_id(previous)
        staging, final = out / versions.VERSIONS / f"{versions.STAGING}{version}", out / versions.VERSIONS / version
    else:
        roots.makedirs("output.path", out.parent)
        for stale in out.parent.glob(f".{out.name}.partial-*"):  # left by a killed job of this output
            shutil.rmtree(stale, ignore_errors=True)
        staging, final = out.parent / f".{out.name}.partial-{uuid.uuid4().hex[:8]}", out
    staging.mkdir()
    t = time.perf_counter()
    try:
        shards = _write_shards(spec, score_dir, select_dir, staging / "data")
        counts, domains, distributions, profiles, diversity, drift = _account(spec, score_dir, select_dir, embed_dir, dirs["clusters"], staging)
        timings["write"] = {"seconds": round(time.perf_counter() - t, 3), "rows": counts["selected_docs"]}
        timings["total"] = {"seconds": round(time.perf_counter() - started, 3)}
        fit_facts = {k: v for phase in ("clusters", "fit") for k, v in timings.get(phase, {}).items() if k not in ("seconds", "docs_per_s", "reused", "key", "rows")}
        manifest = {
            "spec": spec.model_dump(mode="json"),
            "spec_hash": spec.hash(),
            "published": str(final),
            "created_unix": round(time.time(), 3),
            "versions": package_versions(),
            "inputs": facts["inputs"],
            "counts": counts,
            "accounting_holds": timings["embed"]["rows"] == counts["input"] == counts["selected_docs"] + counts["not_selected"] + counts["invalid"],
            "shards": shards,
            "domains": domains,
            "domain_profiles": profiles,
            "distributions": distributions,
            "diversity": diversity,
            "reuse": _reuse(timings["embed"]),
            "drift": drift,
            "fit": fit_facts,
            "selection": {k: v for k, v in timings["select"].items() if k not in ("seconds", "docs_per_s", "reused", "key", "rows")},
            "warnings": facts["warnings"],
            "phases": {name: {"key": v.get("key"), "reused": bool(v.get("reused"))} for name, v in timings.items() if "key" in v},
            "timings": timings,
        }
        if version is not None:
            before = out / versions.VERSIONS / previous if previous else None
            manifest["version"] = {"id": version, "previous": previous, "shards_shared": versions.share_unchanged(shards, staging, before)}
            if before is not None:
                manifest["changes"] = versions.changes(before, previous, sorted((select_dir / "data").glob("*.parquet")), score_dir, staging)
        frozen.publish(dirs, staging)
        if arrivals is not None and dirs.get("dedup") is not None:
            manifest["dedup"] = _dedup_facts(timings["dedup"]) | seen.publish(arrivals, dirs["dedup"], staging) | {"index": arrivals.facts}
        (staging / "report.html").write_text(job_report(manifest, dirs.get("search")))
        (staging / "manifest.json").write_text(json.dumps(manifest, indent=2, sort_keys=True))
        roots.check("output.path", staging)
        roots.check("output.path", final)
        if final.exists():
            if not spec.output.overwrite:
                raise FileExistsError(f"output {final} appeared while the job ran")
            trash = final.parent / f".{final.name}.old-{uuid.uuid4().hex[:8]}"
            final.rename(trash)
            shutil.rmtree(trash)
        staging.rename(final)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    if version is not None:
        versions.point_latest(out, version)
        roots.check("output.path", out / versions.VERSIONS)
        gone = versions.prune(out, spec.output.versions.keep)
        ch = manifest.get("changes")
        diff = f"; against {previous}: +{ch['added']} -{ch['dropped']} ={ch['kept']}" if ch else ""
        log(f"[write] version {version} is {out / versions.LATEST}{diff}{f'; removed {len(gone)} old versions' if gone else ''}")
    log(f"[write] {len(shards)} shards in {final}; report: {final / 'report.html'}")
    return manifest


def _dedup_facts(phase: dict) -> dict:
    return {k: phase[k] for k in ("exact_duplicates", "near_duplicates", "lsh") if k in phase}


def _far_distance(clusters_dir: Path) -> float | None:
    """The centroid distance FAR_QUANTILE of the clusters' fitting sample lay within (`drift`), None for older states."""
    ref = clusters_dir / "reference.json"
    return json.loads(ref.read_text())["distance"] if ref.exists() else None


def _reuse(embed: dict) -> dict:
    """What this run computed of the per-document work: input partitions reused as pieces, documents embedded, vectors the content cache had."""
    if embed.get("reused"):  # the whole phase was complete: nothing of it ran
        return {"partitions": embed.get("partitions"), "partitions_reused": embed.get("partitions"), "embedded": 0, "cache_hits": 0}
    return {k: embed.get(k) for k in ("partitions", "partitions_reused", "embedded", "cache_hits")}


def package_versions() -> dict[str, str]:
    found = {"python": platform.python_version()}
    for name in VERSIONED:
        try:
            found[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            pass
    return found


def _write_shards(spec: JobSpec, score_dir: Path, select_dir: Path, data_dir: Path) -> list[dict]:
    files = sorted((select_dir / "data").glob("*.parquet"))
    data_dir.mkdir()  # present even when nothing was selected
    if not files:
        return []
    schema = shards.shard_schema(files, score_dir)
    layout = shards.plan(files, score_dir, spec.output.shard_bytes, spec.input.bytes_per_token, schema, data_dir.parent)
    return shards.write_all(layout, files, data_dir, schema, spec.output.row_group_rows, score_dir)


class HashSample:
    """The `size` doc_ids of smallest hash(key, doc_id) (`uniform_from_ids`) among those added: a uniform sample that
    disjoint parts give exactly by keeping their own `size` smallest and merging (bottom-k)."""

    def __init__(self, key: str, size: int = VENDI_SAMPLE):
        self.key, self.size = key, size
        self.u, self.ids = np.zeros(0), pa.array([], pa.string())

    def add(self, ids: pa.Array | pa.ChunkedArray) -> None:
        ids = ids.combine_chunks() if isinstance(ids, pa.ChunkedArray) else ids
        self._keep(np.concatenate([self.u, uniform_from_ids(self.key, ids.to_pylist())]), pa.concat_arrays([self.ids, ids.cast(pa.string())]))

    def merge(self, other: "HashSample") -> None:
        self._keep(np.concatenate([self.u, other.u]), pa.concat_arrays([self.ids, other.ids]))

    def _keep(self, u: np.ndarray, ids: pa.Array) -> None:
        order = np.lexsort((np.asarray(ids.to_numpy(zero_copy_only=False)).astype(str), u))[: self.size]  # ties by doc_id
        self.u, self.ids = u[order], ids.take(pa.array(order, pa.int64()))


class Tally:
    """The accounting of some decisions: counts, reasons, per-domain before/after, each quality column's histogram over
    [0, 1] and sum (documents of the valid pool, copies of the selection), the domain profiles' samples. Tallies of
    disjoint rows add up (`merge`) to the tally of their union."""

    def __init__(self, quality: list[str], seed: int, far: float | None = None):
        self.quality, self.far = quality, far
        self.counts: Counter = Counter()
        self.reasons: Counter = Counter()
        self.invalid_reasons: Counter = Counter()
        self.before: dict[str, Counter] = defaultdict(Counter)
        self.after: dict[str, Counter] = defaultdict(Counter)
        self.hist = {c: {"pool": np.zeros(DISTRIBUTION_BINS), "selected": np.zeros(DISTRIBUTION_BINS)} for c in quality}
        self.sums = {c: {"pool": 0.0, "selected": 0.0} for c in quality}
        self.profiles = DomainProfiles(quality, seed)
        self.mass = {"pool": Counter(), "selection": Counter()}  # documents (copies) per cluster
        self.vendi = {"pool": HashSample(f"vendi-{seed}"), "selection": HashSample(f"vendi-{seed}")}
        self.drift = Counter()  # valid documents with a centroid distance, and those beyond `far`

    def add(self, t: pa.Table) -> np.ndarray:
        """A batch of decisions; returns which of its rows are rejected (valid, not selected)."""
        copies = np.asarray(t.column(S.SEL_COPIES).to_numpy(zero_copy_only=False))
        tokens = np.asarray(t.column(S.N_TOKENS).to_numpy(zero_copy_only=False))
        invalid = np.asarray(t.column(S.INVALID_REASON).is_valid().to_numpy(zero_copy_only=False))
        selected = copies > 0
        c = self.counts
        c["input"] += t.num_rows
        c["invalid"] += int(invalid.sum())
        c["selected_docs"] += int(selected.sum())
        c["selected_copies"] += int(copies.sum())
        c["selected_tokens"] += int((copies * tokens).sum())
        c["not_selected"] += int((~selected & ~invalid).sum())
        edges = np.linspace(0.0, 1.0, DISTRIBUTION_BINS + 1)
        for q in self.quality:
            x = np.clip(np.nan_to_num(np.asarray(t.column(q).to_numpy(zero_copy_only=False), np.float64)), 0.0, 1.0)
            for name, w in (("pool", (~invalid).astype(np.float64)), ("selected", copies.astype(np.float64))):
                self.hist[q][name] += np.histogram(x, bins=edges, weights=w)[0]
                self.sums[q][name] += float((x * w).sum())
        for bad, counter in ((False, self.reasons), (True, self.invalid_reasons)):
            found = pc.value_counts(t.column(S.SEL_REASON).filter(pa.array(invalid == bad)).drop_null())
            counter.update(dict(zip(found.field("values").to_pylist(), found.field("counts").to_pylist())))
        domains = np.asarray(t.column(S.DOMAIN).fill_null("").to_numpy(zero_copy_only=False)).astype(str)
        for key in np.unique(domains[~invalid]):
            m = (domains == key) & ~invalid
            self.before[key].update(docs=int(m.sum()), tokens=int(tokens[m].sum()))
            s = m & selected
            self.after[key].update(docs=int(s.sum()), copies=int(copies[s].sum()), tokens=int((copies[s] * tokens[s]).sum()))
        self.profiles.add(t, domains, ~invalid)
        valid = t.filter(pa.array(~invalid))
        cluster = np.asarray(valid.column(S.D_CLUSTER).to_numpy(zero_copy_only=False))
        kept = copies[~invalid]
        self.mass["pool"].update(dict(enumerate(np.bincount(cluster).tolist())))
        self.mass["selection"].update(dict(enumerate(np.bincount(cluster, weights=kept).tolist())))
        self.vendi["pool"].add(valid.column(S.DOC_ID))
        self.vendi["selection"].add(valid.column(S.DOC_ID).filter(pa.array(kept > 0)))
        if self.far is not None:
            d = np.asarray(valid.column(S.D_CENTROID_DIST).to_numpy(zero_copy_only=False), np.float64)
            self.drift.update(n=int(d.size), beyond=int((d > self.far).sum()))
        return ~selected & ~invalid

    def merge(self, other: "Tally") -> None:
        for mine, theirs in ((self.counts, other.counts), (self.reasons, other.reasons), (self.invalid_reasons, other.invalid_reasons)):
            mine.update(theirs)
        for mine, theirs in ((self.before, other.before), (self.after, other.after)):
            for key, counter in theirs.items():
                mine[key].update(counter)
        for q in self.quality:
            for name in ("pool", "selected"):
                self.hist[q][name] += other.hist[q][name]
                self.sums[q][name] += other.sums[q][name]
        self.profiles.merge(other.profiles)
        for name in ("pool", "selection"):
            self.mass[name].update(other.mass[name])
            self.vendi[name].merge(other.vendi[name])
        self.drift.update(other.drift)


def account_file(f: str, part: int, score_dir: str, staging: str, quality: list[str], seed: int, write_rejected: bool, far: float | None = None) -> Tally:
    """Ray task: the tally of one select file's decisions (its score file beside it); its rejected rows into
    rejected/part-PART.parquet and its invalid rows into quarantine/part-PART.parquet."""
    tally = Tally(quality, seed, far)
    _write_quarantine(shards.score_file_of(Path(f), Path(score_dir)), Path(staging) / "quarantine" / f"part-{part:05d}.parquet")
    writer = None
    columns = [S.TEXT, S.INVALID_REASON, S.N_TOKENS, S.INPUT_FILE, S.INPUT_OFFSET, S.D_CLUSTER, S.D_CENTROID_DIST, *quality]
    try:
        for t in shards.file_decisions(Path(f), Path(score_dir), columns, [S.DOC_ID, S.SEL_REASON, S.SEL_COPIES, S.DOMAIN]):
            rejected = tally.add(t)
            if write_rejected and rejected.any():
                rows = t.filter(pa.array(rejected)).select([S.DOC_ID, S.SEL_REASON, S.INPUT_FILE, S.INPUT_OFFSET]).rename_columns([S.DOC_ID, "reason", S.INPUT_FILE, S.INPUT_OFFSET])
                if writer is None:
                    (Path(staging) / "rejected").mkdir(exist_ok=True)
                    writer = pq.ParquetWriter(Path(staging) / "rejected" / f"part-{part:05d}.parquet", rows.schema, compression="zstd")
                writer.write_table(rows)
    finally:
        if writer is not None:
            writer.close()
    return tally


def _account(spec: JobSpec, score_dir: Path, select_dir: Path, embed_dir: Path, clusters_dir: Path, staging: Path) -> tuple[dict, dict, dict, dict, dict, dict]:
    """The decisions tallied where they lie, a task per select file (`account_file`; in this process for a pool of at
    most `shuffle.PART_ROWS` rows), then added up here: counts, per-domain before/after, score distributions, domain
    profiles (terms and examples, `pipeline/profiles.py`), diversity and drift; rejected/ and quarantine/ (by those
    tasks).

    Every input row lands in exactly one place: data/ (selected), rejected/
    (valid, not selected) or quarantine/ (invalid).
    """
    quality = _quality_columns(score_dir)
    far = _far_distance(clusters_dir)
    files = sorted((select_dir / "data").glob("*.parquet"))
    rows = sum(pq.ParquetFile(f).metadata.num_rows for f in files)
    here = rows <= shuffle.PART_ROWS or not files
    calls = [(str(f), i, str(score_dir), str(staging), quality, spec.seed, spec.output.write_rejected, far) for i, f in enumerate(files)]
    tally = Tally(quality, spec.seed, far)
    for part in shuffle.run(len(calls), lambda stage: stage(account_file, calls), here=here):
        tally.merge(part)
    counts = tally.counts
    counts["valid"] = counts["input"] - counts["invalid"]
    counts["not_selected_by_reason"] = dict(sorted(tally.reasons.items()))
    counts["invalid_by_reason"] = dict(sorted(tally.invalid_reasons.items()))
    domains = {k: {"before": dict(tally.before[k]), "after": dict(tally.after.get(k, {}))} for k in sorted(tally.before, key=domain_order)}
    totals = {"pool": counts["valid"], "selected": counts["selected_copies"]}
    distributions = {
        "edges": np.linspace(0.0, 1.0, DISTRIBUTION_BINS + 1).tolist(),
        "columns": {c: {name: h.astype(int).tolist() for name, h in tally.hist[c].items()} for c in quality},
        "means": {c: {name: (tally.sums[c][name] / totals[name] if totals[name] else None) for name in totals} for c in quality},
    }
    n, beyond = tally.drift["n"], tally.drift["beyond"]
    drift = {"far_share": round(beyond / n, 6) if far is not None and n else None, "quantile": FAR_QUANTILE, "distance": far}
    profiles = {k: v for k, v in sorted(tally.profiles.result().items(), key=lambda kv: domain_order(kv[0]))}
    return dict(counts), domains, distributions, profiles, _diversity(spec, tally, embed_dir, here), drift


def _quality_columns(score_dir: Path) -> list[str]:
    """The quality scores a report shows: q_* columns in [0, 1], not the rules' decision columns."""
    files = sorted((score_dir / "data").glob("*.parquet"))
    names = pq.ParquetFile(files[0]).schema_arrow.names if files else []
    return [c for c in names if c.startswith("q_") and not c.startswith("q_rule_")]


def _write_quarantine(score_file: Path, path: Path) -> None:
    """A score file's invalid rows, without the columns computed for valid rows only, to `path` (none: no file)."""
    src = pq.ParquetFile(score_file)
    cols = [c for c in src.schema_arrow.names if not c.startswith(NOT_IN_QUARANTINE_PREFIXES)]
    writer = None
    try:
        for rg in range(src.num_row_groups):
            t = src.read_row_group(rg, columns=cols)
            t = t.filter(t.column(S.INVALID_REASON).is_valid())
            if not t.num_rows:
                continue
            if writer is None:
                path.parent.mkdir(exist_ok=True)
                writer = pq.ParquetWriter(path, t.schema, compression="zstd")
            writer.write_table(t)
    finally:
        if writer is not None:
            writer.close()


def _diversity(spec: JobSpec, tally: Tally, embed_dir: Path, here: bool, sample: int = VENDI_SAMPLE) -> dict:
    """Vendi score and cluster-coverage entropy of the selection, next to the pool's.

    Vendi is computed on the embeddings of at most `sample` documents of each,
    those of smallest hash(seed, doc_id) (the tally's `HashSample`), so two
    selections of one pool are compared on a stable footing; the embeddings are
    read by a task per embed file. Entropy counts every copy.
    """
    picked = {name: tally.vendi[name].ids for name in ("pool", "selection")}
    wanted = pa.concat_arrays(list(picked.values())).unique()
    files = sorted((embed_dir / "data").glob("*.parquet"))
    found = shuffle.run(len(files), lambda stage: stage(_embeddings_of, [(str(f), wanted) for f in files]), here=here or not files)
    found = [(got, e) for got, e in found if got]
    ids = [i for got, _ in found for i in got]
    emb = np.concatenate([e for _, e in found]) if found else np.zeros((0, 1), np.float32)
    row = {d: i for i, d in enumerate(ids)}
    k = len(tally.mass["pool"])
    out: dict = {}
    for name in ("pool", "selection"):
        mass = tally.mass[name]
        keys = np.array(sorted(mass), np.int64)
        weights = np.array([mass[c] for c in keys], np.float64)
        rows = [row[d] for d in picked[name].to_pylist() if d in row]
        out[name] = {
            "vendi": vendi_score(emb[rows], sample=sample, seed=spec.seed) if rows else 0.0,
            "vendi_sample": len(rows),
            "cluster_entropy": cluster_entropy(keys, weights),
            "cluster_entropy_normalised": cluster_entropy(keys, weights, normalise=True, n_clusters=k),
        }
    return out


def _embeddings_of(file: str, wanted: pa.Array) -> tuple[list[str], np.ndarray]:
    """Ray task: the doc_ids of an embed file among `wanted`, and their embeddings."""
    t = pq.read_table(file, columns=[S.DOC_ID, S.EMB], filters=pc.field(S.DOC_ID).isin(wanted))
    return t.column(S.DOC_ID).to_pylist(), from_fixed_list(t.column(S.EMB)) if t.num_rows else np.zeros((0, 1), np.float32)
