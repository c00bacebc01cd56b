"""A night's reselection against a full run of the grown corpus, side by side in one process.

A corpus of --docs demo documents in --files Parquet files is curated once
(fitting its states, versioned output). Then it grows by --growth (new files
of new documents) and three jobs run on one local Ray:

    incremental  the nightly job: same output and work directory, states frozen
                 from the first run (fit.from_run), a new version published;
    rerun        the same job again with no new data;
    full         the grown corpus from scratch: its own work directory, an
                 empty content cache, states fitted anew.

It prints each job's wall time, its ratio to the full run's (targets: at most
0.2 for the incremental job, 0.05 for the rerun), the documents each
embedded (the manifest's `reuse`) and the per-phase seconds, so a missed
target shows which phase is the floor.

Usage:
    python bench/bench_nightly.py --docs 50000 --model static
    python bench/bench_nightly.py --docs 200000 --model minilm --files 40
"""

from __future__ import annotations

import argparse
import os
import platform
import shutil
import time
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import ray

from thresher.demo_corpus import generate
from thresher.pipeline.runner import run
from thresher.pipeline.spec import parse_spec

PHASES = ["embed", "clusters", "fit", "dedup", "score", "select", "write"]


def spec(root: Path, name: str, model: str, frozen: bool, work: str, budget: int) -> dict:
    return parse_spec({
        "input": {"paths": [str(root / "corpus")], "id_column": "id"},
        "output": {"path": str(root / name), "work_dir": str(root / work), "versions": {"keep": 3}},
        "embedder": {"model": model},
        "clustering": {"n_clusters": 16},
        "scorers": {"dedup": {}},
        "selection": {"strategy": "quadmix", "budget": {"unit": "docs", "amount": budget}, "exclude": ["d_exact_dup", "d_near_dup"]},
        **({"fit": {"from_run": str(root / "nightly")}} if frozen else {}),
    })


def timed(s) -> tuple[float, dict]:
    t = time.perf_counter()
    m = run(s, log=lambda line: None, progress=False)
    return time.perf_counter() - t, m


def phases(m: dict) -> str:
    t = m["timings"]
    return " ".join(f"{p} {'r' if t[p].get('reused') else t[p]['seconds']:}" for p in PHASES if p in t)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--docs", type=int, default=50_000)
    ap.add_argument("--files", type=int, default=20)
    ap.add_argument("--growth", type=float, default=0.1)
    ap.add_argument("--model", default="static")
    ap.add_argument("--root", default=None)
    args = ap.parse_args()
    root = Path(args.root or f"bench/out/nightly-{args.model}-{args.docs}")
    shutil.rmtree(root, ignore_errors=True)
    (root / "corpus").mkdir(parents=True)
    new = int(args.docs * args.growth)
    pool = generate(args.docs + new, seed=0)
    per = args.docs // args.files
    for i in range(args.files):
        pq.write_table(pool.slice(i * per, per if i < args.files - 1 else args.docs - i * per), root / "corpus" / f"part-{i:04d}.parquet", row_group_size=10_000)
    budget = args.docs // 5  # a fifth of the first night's pool
    ray.init(address="local", num_cpus=os.cpu_count(), include_dashboard=False, log_to_driver=False)

    base_s, base = timed(spec(root, "nightly", args.model, False, "nightly.work", budget))
    grown = pool.slice(args.docs, new)
    grown = grown.set_column(0, "id", pa.array([f"night2-{i}" for i in range(new)]))  # the generator's ids restart at 0
    for j, lo in enumerate(range(0, new, per)):
        pq.write_table(grown.slice(lo, per), root / "corpus" / f"part-{args.files + j:04d}.parquet", row_group_size=10_000)
    inc_s, inc = timed(spec(root, "nightly", args.model, True, "nightly.work", budget))
    rerun_s, rerun = timed(spec(root, "nightly", args.model, True, "nightly.work", budget))
    full_s, full = timed(spec(root, "full", args.model, False, "full.work", budget))

    print(f"# {platform.node()}, {os.cpu_count()} CPUs, {args.docs:,} demo documents in {args.files} files + {new:,} new ({args.growth:.0%}), "
          f"embedder {args.model}, one local Ray for all jobs")
    print("| job | wall s | vs full | input docs | partitions reused | score pieces reused | embedded | cache hits | phase seconds (r = reused) |")
    print("|---|---:|---:|---:|---:|---:|---:|---:|---|")
    for name, secs, m in (("first run (fits)", base_s, base), ("incremental (+10%, frozen)", inc_s, inc), ("rerun, no new data", rerun_s, rerun),
                          ("full run of the grown corpus", full_s, full)):
        r, sc = m["reuse"], m["timings"]["score"]
        scored = "all" if sc.get("reused") else f"{sc['partitions_reused']}/{sc['partitions']}"
        print(f"| {name} | {secs:.1f} | {secs / full_s:.3f} | {m['counts']['input']:,} | {r['partitions_reused']}/{r['partitions']} | {scored} "
              f"| {r['embedded']:,} | {r['cache_hits']:,} | {phases(m)} |")
    ch = inc["changes"]
    print(f"\nincremental version vs the first: +{ch['added']:,} -{ch['dropped']:,} ={ch['kept']:,}; drift {inc['drift']['far_share']}; "
          f"pool index {inc['dedup']['index']}, duplicates of an earlier run's document {inc['dedup']['of_earlier_runs']:,}")


if __name__ == "__main__":
    main()
