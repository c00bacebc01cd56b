"""Publishing a selection: shards, rejected/, quarantine/, manifest.json, then one rename.

Everything is written into a hidden staging directory beside the output and
renamed into place last, so OUTPUT either does not exist or is complete.
"""

from __future__ import annotations

import hashlib
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
import pyarrow.dataset as pads
import pyarrow.parquet as pq
import ray.data

from thresher.operators import schema as S
from thresher.operators.diversity import VENDI_SAMPLE, cluster_entropy, vendi_score
from thresher.operators.embed import from_fixed_list
from thresher.operators.selection import uniform_from_ids

from .spec import JobSpec

VERSIONED = ("thresher", "ray", "pyarrow", "polars", "numpy", "faiss-cpu", "faiss-gpu-cu12", "torch", "sentence-transformers", "model2vec")
NOT_IN_SHARDS = (S.INVALID_REASON, S.SEL_REASON)
NOT_IN_QUARANTINE_PREFIXES = ("sig_", "q_", "d_", "sel_", S.DOMAIN, S.N_TOKENS)


def publish(spec: JobSpec, select_dir: Path, embed_dir: Path, timings: dict, log: Callable[[str], None], started: float) -> dict:
    out = Path(spec.output.path)
    staging = out.parent / f".{out.name}.partial-{uuid.uuid4().hex[:8]}"
    staging.mkdir(parents=True)
    t = time.perf_counter()
    try:
        shards = _write_shards(spec, select_dir, staging / "data")
        counts, domains = _account(spec, select_dir, staging)
        diversity = _diversity(spec, select_dir, embed_dir)
        timings["write"] = {"seconds": round(time.perf_counter() - t, 3), "rows": counts["selected_docs"]}
        timings["total"] = {"seconds": round(time.perf_counter() - started, 3)}
        manifest = {
            "spec": spec.model_dump(mode="json"),
            "spec_hash": spec.hash(),
            "created_unix": round(time.time(), 3),
            "versions": versions(),
            "counts": counts,
            "accounting_holds": timings["embed"]["rows"] == counts["input"] == counts["selected_docs"] + counts["not_selected"] + counts["invalid"],
            "shards": shards,
            "domains": domains,
            "diversity": diversity,
            "fit": {k: v for k, v in timings.get("fit", {}).items() if k not in ("seconds", "docs_per_s", "reused")},
            "selection": json.loads((select_dir / "_SUCCESS").read_text()) if (select_dir / "_SUCCESS").exists() else {},
            "timings": timings,
        }
        (staging / "manifest.json").write_text(json.dumps(manifest, indent=2, sort_keys=True))
        if out.exists():
            if not spec.output.overwrite:
                raise FileExistsError(f"output {out} appeared while the job ran")
            trash = out.parent / f".{out.name}.old-{uuid.uuid4().hex[:8]}"
            out.rename(trash)
            shutil.rmtree(trash)
        staging.rename(out)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    log(f"[write] {len(shards)} shards in {out}")
    return manifest


def versions() -> dict[str, str]:
    found = {"python": platform.python_version()}
    for name in VERSIONED:
        try:
            found[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            pass
    return found


def _keep_selected(batch: pa.Table) -> pa.Table:
    batch = batch.filter(pc.greater(batch.column(S.SEL_COPIES), 0))
    return batch.drop_columns([c for c in NOT_IN_SHARDS if c in batch.column_names])


def _write_shards(spec: JobSpec, select_dir: Path, data_dir: Path) -> list[dict]:
    files = sorted((select_dir / "data").glob("*.parquet"))
    rows = sum(pq.ParquetFile(f).metadata.num_rows for f in files)
    size = sum(f.stat().st_size for f in files)
    rows_per_shard = max(1, int(spec.output.shard_bytes / max(size / max(rows, 1), 1.0)))
    ds = ray.data.read_parquet([str(f) for f in files]).map_batches(_keep_selected, batch_format="pyarrow", batch_size=4096)
    ds.write_parquet(
        str(data_dir),
        min_rows_per_file=rows_per_shard,
        max_rows_per_file=rows_per_shard,
        compression="zstd",
        row_group_size=spec.output.row_group_rows,
    )
    written = sorted(data_dir.glob("*.parquet"))
    shards = []
    for i, f in enumerate(written):
        n_rows = pq.ParquetFile(f).metadata.num_rows
        if n_rows == 0:
            f.unlink()
            continue
        shards.append((f, n_rows))
    result = []
    for i, (f, n_rows) in enumerate(shards):
        name = f"part-{i:05d}-of-{len(shards):05d}.parquet"
        f.rename(data_dir / name)
        result.append({"path": f"data/{name}", "rows": n_rows, "bytes": (data_dir / name).stat().st_size, "sha256": _sha256(data_dir / name)})
    return result


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def _account(spec: JobSpec, select_dir: Path, staging: Path) -> tuple[dict, dict]:
    """One streaming pass over the decisions: counts, per-domain before/after, rejected/, quarantine/."""
    dataset = pads.dataset(str(select_dir / "data"), format="parquet")
    cols = [S.DOC_ID, S.INVALID_REASON, S.SEL_REASON, S.SEL_COPIES, S.DOMAIN, S.N_TOKENS]
    counts = Counter()
    reasons: Counter = Counter()
    invalid_reasons: Counter = Counter()
    before: dict[str, Counter] = defaultdict(Counter)
    after: dict[str, Counter] = defaultdict(Counter)
    rejected_writer = None
    try:
        for rb in dataset.to_batches(columns=cols, batch_size=65536):
            t = pa.Table.from_batches([rb])
            copies = np.asarray(t.column(S.SEL_COPIES).to_numpy(zero_copy_only=False))
            tokens = np.asarray(t.column(S.N_TOKENS).to_numpy(zero_copy_only=False))
            invalid = np.asarray(t.column(S.INVALID_REASON).is_valid().to_numpy(zero_copy_only=False))
            selected = copies > 0
            counts["input"] += t.num_rows
            counts["invalid"] += int(invalid.sum())
            counts["selected_docs"] += int(selected.sum())
            counts["selected_copies"] += int(copies.sum())
            counts["selected_tokens"] += int((copies * tokens).sum())
            counts["not_selected"] += int((~selected & ~invalid).sum())
            for r, bad in zip(t.column(S.SEL_REASON).to_pylist(), invalid):
                if r is not None:
                    (invalid_reasons if bad else reasons)[r] += 1
            domains = np.asarray(t.column(S.DOMAIN).fill_null("").to_numpy(zero_copy_only=False)).astype(str)
            for key in np.unique(domains[~invalid]):
                m = (domains == key) & ~invalid
                before[key].update(docs=int(m.sum()), tokens=int(tokens[m].sum()))
                s = m & selected
                after[key].update(docs=int(s.sum()), copies=int(copies[s].sum()), tokens=int((copies[s] * tokens[s]).sum()))
            if spec.output.write_rejected:
                rejected = t.filter(pa.array(~selected)).select([S.DOC_ID, S.SEL_REASON]).rename_columns([S.DOC_ID, "reason"])
                if rejected_writer is None:
                    (staging / "rejected").mkdir()
                    rejected_writer = pq.ParquetWriter(staging / "rejected" / "part-00000.parquet", rejected.schema, compression="zstd")
                rejected_writer.write_table(rejected)
    finally:
        if rejected_writer is not None:
            rejected_writer.close()
    counts["valid"] = counts["input"] - counts["invalid"]
    counts["not_selected_by_reason"] = dict(sorted(reasons.items()))
    counts["invalid_by_reason"] = dict(sorted(invalid_reasons.items()))
    _write_quarantine(dataset, staging / "quarantine")
    domains = {k: {"before": dict(before[k]), "after": dict(after.get(k, {}))} for k in sorted(before, key=_natural)}
    return dict(counts), domains


def _write_quarantine(dataset: pads.Dataset, directory: Path) -> None:
    cols = [c for c in dataset.schema.names if not c.startswith(NOT_IN_QUARANTINE_PREFIXES)]
    writer = None
    try:
        for rb in dataset.to_batches(columns=cols, filter=pc.field(S.INVALID_REASON).is_valid(), batch_size=4096):
            if rb.num_rows == 0:
                continue
            if writer is None:
                directory.mkdir()
                writer = pq.ParquetWriter(directory / "part-00000.parquet", rb.schema, compression="zstd")
            writer.write_batch(rb)
    finally:
        if writer is not None:
            writer.close()


def _natural(key: str):
    return (0, int(key), "") if key.lstrip("-").isdigit() else (1, 0, key)


def _diversity(spec: JobSpec, select_dir: Path, embed_dir: Path, sample: int = VENDI_SAMPLE) -> dict:
    """Vendi score and cluster-coverage entropy of the selection, next to the pool's.

    Vendi is computed on at most `sample` embeddings of each, chosen by
    hash(seed, doc_id), so two selections of one pool are compared on a stable
    footing; entropy counts every copy.
    """
    cols = [S.DOC_ID, S.INVALID_REASON, S.SEL_COPIES, S.D_CLUSTER]
    pool_mass: Counter = Counter()
    sel_mass: Counter = Counter()
    ids = {"pool": [], "selection": []}
    for rb in pads.dataset(str(select_dir / "data"), format="parquet").to_batches(columns=cols, batch_size=65536):
        t = pa.Table.from_batches([rb]).filter(pc.is_null(rb.column(S.INVALID_REASON)))
        cl = np.asarray(t.column(S.D_CLUSTER).to_numpy(zero_copy_only=False))
        copies = np.asarray(t.column(S.SEL_COPIES).to_numpy(zero_copy_only=False))
        pool_mass.update(dict(enumerate(np.bincount(cl).tolist())))
        sel_mass.update(dict(enumerate(np.bincount(cl, weights=copies).tolist())))
        ids["pool"].append(t.column(S.DOC_ID))
        ids["selection"].append(t.column(S.DOC_ID).filter(pa.array(copies > 0)))
    out: dict = {}
    picked = {}
    for name, parts in ids.items():
        arr = pa.chunked_array(parts, pa.string()).combine_chunks() if parts else pa.array([], pa.string())
        rate = min(1.0, sample / max(len(arr), 1))
        u = uniform_from_ids(f"vendi-{spec.seed}", arr.to_pylist())
        picked[name] = arr.filter(pa.array(u < rate))
    wanted = pa.concat_arrays(list(picked.values())).unique()
    found_ids, found_emb = [], []
    for rb in pads.dataset(str(embed_dir / "data"), format="parquet").to_batches(
        columns=[S.DOC_ID, S.EMB], filter=pc.field(S.DOC_ID).isin(wanted), batch_size=8192
    ):
        found_ids += rb.column(0).to_pylist()
        found_emb.append(from_fixed_list(rb.column(1)))
    emb = np.concatenate(found_emb) if found_emb else np.zeros((0, 1), np.float32)
    row = {d: i for i, d in enumerate(found_ids)}
    k = len(pool_mass)
    for name, mass in (("pool", pool_mass), ("selection", sel_mass)):
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
