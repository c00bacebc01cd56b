"""Dedup on the workers: thresher's exact + MinHash dedup (signature pieces, then the shuffles of
pipeline/dedup_shuffle.py) against datatrove's four MinHash stages, with 1 and 2 Ray workers, and the
driver's peak memory as the corpus grows.

Each thresher figure is a fresh process: it starts Ray with the given CPUs (or joins `--address`), computes
the signature pieces as Ray tasks (`phases.sign_tasks` / `signature_piece`, what the dedup phase runs), builds the keep
order from the pieces' id files as a job does (`seen.arrive`, no previous index), and resolves exact and near groups with one reduce task
per CPU. It reports docs/s and the driver's peak RSS, and that peak over its peak after `ray.init` (VmHWM). The corpus
(demo documents with planted copies) is written first, in the parent, as embed-like pieces of a partition's
100,000 rows in row groups of 8,192 (`partitions.PARTITION_ROWS`, `ROW_GROUP_ROWS`).

datatrove: `MinhashDedupSignature`, `MinhashDedupBuckets`, `MinhashDedupCluster`, `MinhashDedupFilter` with
its local executor, one task (buckets: one task per bucket, run one at a time), 16 buckets x 8 hashes (the
bands x rows thresher picks at threshold 0.8), on the same texts. thresher also finds exact duplicates and
verifies every candidate pair; datatrove does neither.

    python bench/bench_dedup.py --docs 10000 --datatrove --workers 1 2   # datatrove hashes with xxhash (the test extra)
    python bench/bench_dedup.py --docs 100000 400000 --workers 2
    python bench/bench_dedup.py --docs 20000 --workers 2 --address 127.0.0.1:6379   # a running cluster
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq



def write_pieces(n: int, d: Path) -> list[str]:
    from thresher.operators import schema as S
    from thresher.demo_corpus import generate
    from thresher.pipeline import content_cache
    from thresher.pipeline.partitions import IDS, PARTITION_ROWS, ROW_GROUP_ROWS

    t = generate(n, seed=0)
    paths = []
    for i, s in enumerate(range(0, n, PARTITION_ROWS)):
        part = t.slice(s, PARTITION_ROWS)
        name = f"part-{i:05d}.parquet"
        piece = d / f"piece-{i:05d}"  # a directory, as an embed piece is
        piece.mkdir()
        rows = pa.table({S.DOC_ID: part.column("id"), S.TEXT: part.column("text"), S.INVALID_REASON: pa.nulls(part.num_rows, pa.string()),
                         S.INPUT_FILE: pa.array([name] * part.num_rows), S.INPUT_OFFSET: pa.array(np.arange(part.num_rows), pa.int64())})
        pq.write_table(rows, piece / name, row_group_size=ROW_GROUP_ROWS)
        (piece / IDS).mkdir()  # and its id files, as the embed phase writes them: what the arrivals shuffle reads
        narrow = content_cache.with_digests(rows).select([S.DOC_ID, content_cache.H0, content_cache.H1, S.INPUT_FILE, S.INPUT_OFFSET])
        pq.write_table(narrow.rename_columns([S.DOC_ID, "c0", "c1", S.INPUT_FILE, S.INPUT_OFFSET]), piece / IDS / name)
        paths.append(str(piece))
    return paths


def _peak_mib() -> float:
    """This process's peak resident memory (VmHWM: unlike ru_maxrss it does not carry the parent's peak over exec)."""
    line = next(x for x in Path("/proc/self/status").read_text().splitlines() if x.startswith("VmHWM:"))
    return int(line.split()[1]) / 1024


def one_run(pieces: list[str], cpus: int, address: str | None, rows_per_task: int | None = None) -> dict:
    """In a fresh process: the dedup phase's work over the pieces, timed, with the driver's peak memory."""
    import ray

    from thresher.operators.dedup import ExactDuplicates, NearDuplicates
    from thresher.pipeline import dedup_shuffle, seen, shuffle
    from thresher.pipeline.confine import Roots
    from thresher.pipeline.phases import SIGN_MIN_ROWS, SIGN_ROWS, sign_tasks, signature_piece
    from thresher.pipeline.tables import rows_per_task as task_rows

    if address:
        ray.init(address=address, log_to_driver=False)
    else:
        ray.init(address="local", num_cpus=cpus, include_dashboard=False, log_to_driver=False)
    base = _peak_mib()
    near = NearDuplicates(0.8)
    work = Path(tempfile.mkdtemp(prefix="dedup-sig-"))
    start = time.perf_counter()
    items = []
    per_task = rows_per_task or task_rows(sum(pq.read_metadata(f).num_rows for p in pieces for f in Path(p).glob("*.parquet")), shuffle.partition_count(), SIGN_ROWS, SIGN_MIN_ROWS)
    for i, p in enumerate(pieces):
        (work / str(i)).mkdir()
        items += sign_tasks(Path(p), work / str(i), str(i), per_task)
    sign = ray.remote(signature_piece)
    rows = sum(r["rows"] for r in ray.get([sign.remote(it, True, near) for it in items]))
    signed = time.perf_counter() - start
    files = [f"part-{i:05d}.parquet" for i in range(len(pieces))]
    t0 = time.perf_counter()
    pool = [(str(f), i) for i, p in enumerate(pieces) for f in sorted((Path(p) / "ids").glob("*.parquet"))]
    order = ray.put(seen.arrive(pool, [], len(pieces), files, Roots(), work / "arrivals").order)  # the keep order, as a job computes it
    arrived = time.perf_counter() - t0
    parts = shuffle.reduce_partitions(sum(pq.read_metadata(f).num_rows for p in pieces for f in Path(p).glob("*.parquet")))
    index = {f: i for i, f in enumerate(files)}
    exact = dedup_shuffle.resolve_exact(ExactDuplicates(), [(str(f), i) for i in range(len(pieces)) for f in sorted((work / str(i)).glob("exact-*.parquet"))], index, order, parts, work,
                                        work / "exact")
    near = dedup_shuffle.resolve_near(near, [(str(f), i) for i in range(len(pieces)) for f in sorted((work / str(i)).glob("near-*.parquet"))], index, order, parts, work, work / "near")
    wall = time.perf_counter() - start
    peak = _peak_mib()
    nodes = len([n for n in ray.nodes() if n["Alive"]])
    cpus = shuffle.partition_count()
    ray.shutdown()
    return {"docs": rows, "cpus": cpus, "reduce_partitions": parts, "nodes": nodes, "wall_s": round(wall, 2),
            "signatures_s": round(signed, 2), "order_s": round(arrived, 2), "resolve_s": round(wall - signed - arrived, 2),
            "docs_per_s": round(rows / wall), "exact_duplicates": exact["duplicates"], "near_duplicates": near["duplicates"],
            "driver_peak_mib_over_start": round(peak - base, 1), "driver_peak_mib": round(peak, 1)}


def run_datatrove(pieces: list[str], d: Path) -> dict:
    from datatrove.data import Document
    from datatrove.executor import LocalPipelineExecutor
    from datatrove.pipeline.dedup import MinhashConfig, MinhashDedupBuckets, MinhashDedupCluster, MinhashDedupFilter, MinhashDedupSignature

    files = [f for p in pieces for f in sorted(Path(p).glob("*.parquet"))]  # the pieces' data files, not their ids/
    texts = [t for f in files for t in pq.read_table(f, columns=["text"]).column("text").to_pylist()]

    def read(data, rank: int = 0, world_size: int = 1):
        for i, text in enumerate(texts):
            yield Document(text=text, id=str(i))

    config = MinhashConfig(num_buckets=16, hashes_per_bucket=8)
    stages = [
        ([read, MinhashDedupSignature(output_folder=str(d / "sigs"), config=config)], 1),
        ([MinhashDedupBuckets(input_folder=str(d / "sigs"), output_folder=str(d / "buckets"), config=config)], config.num_buckets),
        ([MinhashDedupCluster(input_folder=str(d / "buckets"), output_folder=str(d / "remove"), config=config)], 1),
        ([read, MinhashDedupFilter(input_folder=str(d / "remove"))], 1),
    ]
    times = []
    for i, (pipeline, tasks) in enumerate(stages):
        t0 = time.perf_counter()
        LocalPipelineExecutor(pipeline=pipeline, tasks=tasks, workers=1, logging_dir=str(d / f"logs{i}")).run()
        times.append(round(time.perf_counter() - t0, 2))
    wall = sum(times)
    return {"docs": len(texts), "wall_s": round(wall, 2), "stages_s": times, "docs_per_s": round(len(texts) / wall)}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--docs", type=int, nargs="+", default=[10_000])
    ap.add_argument("--workers", type=int, nargs="+", default=[1, 2], help="Ray CPUs of each thresher run")
    ap.add_argument("--address", help="join this Ray cluster instead of starting one (--workers is then ignored)")
    ap.add_argument("--datatrove", action="store_true", help="also run datatrove's four stages on the same documents")
    ap.add_argument("--rows-per-task", type=int, help="signature rows per task instead of the dedup phase's choice (100000: one task per partition)")
    ap.add_argument("--json", help="also write the figures to this file")
    ap.add_argument("--one", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.one:
        job = json.loads(args.one)
        print(json.dumps(one_run(job["pieces"], job["cpus"], job["address"], job["rows_per_task"])))
        return

    print(f"machine: {platform.processor() or platform.machine()}, {os.cpu_count()} cores, load {os.getloadavg()[0]:.2f}")
    results = []
    for n in args.docs:
        with tempfile.TemporaryDirectory(prefix="bench-dedup-") as tmp:
            d = Path(tmp)
            (d / "pieces").mkdir()
            pieces = write_pieces(n, d / "pieces")
            for cpus in ([0] if args.address else args.workers):
                job = json.dumps({"pieces": pieces, "cpus": cpus, "address": args.address, "rows_per_task": args.rows_per_task})
                out = subprocess.run([sys.executable, __file__, "--one", job], check=True, capture_output=True, text=True).stdout
                r = json.loads(out.strip().splitlines()[-1])
                results.append({"thresher": r})
                print(f"thresher  {n:>7} docs  {r['cpus']} CPUs on {r['nodes']} node(s): {r['wall_s']:7.2f} s  {r['docs_per_s']:6d} docs/s  "
                      f"({r['reduce_partitions']} reduce partitions; signatures {r['signatures_s']} s, keep order {r['order_s']} s, resolve {r['resolve_s']} s)  "
                      f"exact {r['exact_duplicates']} near {r['near_duplicates']}  "
                      f"driver peak +{r['driver_peak_mib_over_start']} MiB over ray.init ({r['driver_peak_mib']} MiB)")
            if args.datatrove:
                r = run_datatrove(pieces, d)
                results.append({"datatrove": r})
                print(f"datatrove {n:>7} docs  1 process: {r['wall_s']:7.2f} s  {r['docs_per_s']:6d} docs/s  (stages {r['stages_s']})")
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
