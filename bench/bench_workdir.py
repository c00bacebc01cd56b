"""The work directory's size as selections with different budgets are tried on one pool.

The select phase writes only doc_id + domain + sel_* (the writer joins them
with the score files), so each extra budget or strategy should cost a few
bytes per document, not a copy of the corpus. This runs one job on --docs
demo documents, then --selections - 1 more with other budgets sharing its
work directory, and prints the work directory's size after each, the ratio
to the size after the first (target: under 1.2x after 5) and the wall time
of each job (the later ones reuse embed, clusters, fit and score).

Usage:
    python bench/bench_workdir.py
    python bench/bench_workdir.py --docs 20000 --selections 5
"""

from __future__ import annotations

import argparse
import os
import platform
import shutil
import time
from pathlib import Path

import pyarrow.parquet as pq

from thresher.demo_corpus import generate
from thresher.pipeline.runner import run
from thresher.pipeline.spec import parse_spec


def size(path: Path) -> int:
    return sum(f.stat().st_size for f in path.rglob("*") if f.is_file())


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--docs", type=int, default=20_000)
    ap.add_argument("--selections", type=int, default=5)
    ap.add_argument("--root", default="bench/out/workdir")
    args = ap.parse_args()
    root = Path(args.root)
    shutil.rmtree(root, ignore_errors=True)
    root.mkdir(parents=True)
    pq.write_table(generate(args.docs, seed=0), root / "corpus.parquet", row_group_size=10_000)
    work = root / "shared.work"
    print(f"# {platform.node()} {os.cpu_count()} CPUs, {args.docs} demo documents, static embedder")
    print("| selection | budget (docs) | work dir MiB | vs first | job s | phases rerun |")
    print("|---:|---:|---:|---:|---:|---|")
    first = None
    for i in range(args.selections):
        budget = round(args.docs * (0.2 + 0.1 * i))
        spec = parse_spec(
            {
                "input": {"paths": [str(root / "corpus.parquet")], "id_column": "id"},
                "output": {"path": str(root / f"out-{i}"), "work_dir": str(work)},
                "clustering": {"n_clusters": 16},
                "scorers": {"dedup": {}},
                "selection": {"budget": {"unit": "docs", "amount": budget}, "exclude": ["d_exact_dup", "d_near_dup"]},
            }
        )
        t = time.perf_counter()
        m = run(spec, log=lambda m: None, progress=False)
        seconds = time.perf_counter() - t
        now = size(work)
        first = first or now
        rerun = ", ".join(n for n, p in m["phases"].items() if not p["reused"])
        print(f"| {i + 1} | {budget} | {now / 2**20:.2f} | {now / first:.3f}x | {seconds:.1f} | {rerun} |")


if __name__ == "__main__":
    main()
