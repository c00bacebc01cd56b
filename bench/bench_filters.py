"""Heuristic rule families: thresher's `apply_rules` against datatrove's filters, same documents, one run.

Both sides judge every document with all four families at their default
thresholds: Gopher quality, Gopher repetition, C4 and FineWeb.

- thresher: `apply_rules` over Arrow batches of --batch-size documents, in this
  process (polars uses its thread pool: all cores unless POLARS_MAX_THREADS says
  otherwise);
- datatrove: `GopherQualityFilter`, `GopherRepetitionFilter`, `C4QualityFilter`
  and `FineWebQualityFilter`, `filter(doc)` on every document (a fresh Document
  per filter, since C4 rewrites the text it keeps), one document at a time as
  in a datatrove pipeline; its English words come from spaCy, cached per text,
  so the three word-based filters tokenize each document once.

Each side first runs on a few documents untimed (regex compilation, spaCy
start-up). Corpus generation is not timed. Reported: documents per second
(wall), this process's CPU seconds, the load average, the ratio thresher /
datatrove, and how often the two agree on keep/drop per family.

With --realmix the documents are realmix's pool (../shared/corpora/realmix/,
3,142 real documents, long ones among them) instead of demo documents, and
with --embedder MODEL the same texts are also encoded by thresher's embedder
(`Embedder(resolve_model(MODEL)).encode`, CPU, batches of 256) in the same
run, so the rules' pace can be read against the embedder's.

Usage:
    python bench/bench_filters.py                       # 20,000 demo documents
    POLARS_MAX_THREADS=1 python bench/bench_filters.py --realmix --embedder static --threads 1   # per core
    python bench/bench_filters.py --docs 5000 --json bench/out/bench_filters.json
    python bench/bench_filters.py --skip-datatrove      # thresher only
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import time
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

from thresher.operators import schema as S
from thresher.operators.heuristic_rules import apply_rules
from thresher.demo_corpus import generate

REALMIX = Path(__file__).resolve().parents[2] / "shared" / "corpora" / "realmix" / "pool.parquet"
COLUMNS = [S.Q_RULE_GOPHER_QUALITY, S.Q_RULE_GOPHER_REPETITION, S.Q_RULE_C4, S.Q_RULE_FINEWEB]


def loadavg() -> str:
    try:
        return "%.2f %.2f %.2f" % os.getloadavg()
    except OSError:
        return "n/a"


def run_thresher(texts: list[str], batch_size: int) -> tuple[dict[str, list], float, float]:
    apply_rules(pa.table({S.TEXT: texts[:50]}))  # warm-up
    decisions: dict[str, list] = {c: [] for c in COLUMNS}
    wall, cpu = time.perf_counter(), time.process_time()
    for start in range(0, len(texts), batch_size):
        out = apply_rules(pa.table({S.TEXT: texts[start : start + batch_size]}))
        for c in COLUMNS:
            decisions[c] += out.column(c).to_pylist()
    return decisions, time.perf_counter() - wall, time.process_time() - cpu


def run_embedder(texts: list[str], model: str, threads: int) -> tuple[float, float]:
    import torch

    from thresher.operators.embed import Embedder, resolve_model

    if threads:
        torch.set_num_threads(threads)
    emb = Embedder(resolve_model(model), device="cpu", batch_size=256)
    emb.encode(texts[:50])  # warm-up
    wall, cpu = time.perf_counter(), time.process_time()
    for start in range(0, len(texts), 256):
        emb.encode(texts[start : start + 256])
    return time.perf_counter() - wall, time.process_time() - cpu


def run_datatrove(texts: list[str]) -> tuple[dict[str, list], float, float]:
    from datatrove.data import Document
    from datatrove.pipeline.filters import (
        C4QualityFilter,
        FineWebQualityFilter,
        GopherQualityFilter,
        GopherRepetitionFilter,
    )

    filters = {
        S.Q_RULE_GOPHER_QUALITY: GopherQualityFilter(),
        S.Q_RULE_GOPHER_REPETITION: GopherRepetitionFilter(),
        S.Q_RULE_C4: C4QualityFilter(),
        S.Q_RULE_FINEWEB: FineWebQualityFilter(),
    }
    for i, text in enumerate(texts[-50:]):  # warm-up on other documents than the first timed ones
        for f in filters.values():
            f.filter(Document(text=text, id=f"warm-{i}"))
    decisions: dict[str, list] = {c: [] for c in COLUMNS}
    wall, cpu = time.perf_counter(), time.process_time()
    for i, text in enumerate(texts):
        for column, f in filters.items():
            result = f.filter(Document(text=text, id=str(i)))
            decisions[column].append(None if result is True else result[1])
    return decisions, time.perf_counter() - wall, time.process_time() - cpu


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--docs", type=int, default=20_000)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--batch-size", type=int, default=2_000)
    ap.add_argument("--skip-datatrove", action="store_true")
    ap.add_argument("--realmix", action="store_true", help="realmix's pool instead of demo documents")
    ap.add_argument("--embedder", help="also time this embedder (static, minilm) on the same texts")
    ap.add_argument("--threads", type=int, default=0, help="torch threads for --embedder (0: torch's default)")
    ap.add_argument("--json", help="also write the figures to this file")
    args = ap.parse_args()

    if args.realmix:
        texts = [t or "" for t in pq.read_table(REALMIX, columns=["text"]).column("text").to_pylist()]
        args.docs = len(texts)
    else:
        texts = generate(args.docs, seed=args.seed).column("text").to_pylist()
    n_chars = sum(map(len, texts))
    print(f"{args.docs} {'realmix pool' if args.realmix else f'demo (seed {args.seed})'} documents, {n_chars / 1e6:.1f} M characters")
    print(f"machine: {platform.processor() or platform.machine()}, {os.cpu_count()} cores, load {loadavg()}")
    print(f"polars threads: {os.environ.get('POLARS_MAX_THREADS', 'default')}")
    result: dict = {"docs": args.docs, "seed": args.seed, "chars": n_chars, "cores": os.cpu_count()}

    ours, wall, cpu = run_thresher(texts, args.batch_size)
    result["thresher"] = {"wall_s": wall, "cpu_s": cpu, "docs_per_s": args.docs / wall, "batch_size": args.batch_size}
    print(f"thresher  : {wall:8.2f} s wall {cpu:8.2f} s CPU  {args.docs / wall:10.0f} docs/s  (load {loadavg()})")

    if args.embedder:
        ewall, ecpu = run_embedder(texts, args.embedder, args.threads or 0)
        result["embedder"] = {"model": args.embedder, "wall_s": ewall, "cpu_s": ecpu, "docs_per_s": args.docs / ewall}
        print(f"embedder  : {ewall:8.2f} s wall {ecpu:8.2f} s CPU  {args.docs / ewall:10.0f} docs/s  ({args.embedder}, load {loadavg()})")
        print(f"rules / embedder: {ewall / wall:.2f}x docs/s")

    if not args.skip_datatrove:
        theirs, dwall, dcpu = run_datatrove(texts)
        result["datatrove"] = {"wall_s": dwall, "cpu_s": dcpu, "docs_per_s": args.docs / dwall}
        print(f"datatrove : {dwall:8.2f} s wall {dcpu:8.2f} s CPU  {args.docs / dwall:10.0f} docs/s  (load {loadavg()})")
        result["speedup"] = dwall / wall
        print(f"thresher / datatrove: {dwall / wall:.1f}x docs/s")
        result["agreement"] = {}
        for c in COLUMNS:
            agree = sum((a is None) == (b is None) for a, b in zip(ours[c], theirs[c])) / args.docs
            dropped = sum(b is not None for b in theirs[c]) / args.docs
            result["agreement"][c] = agree
            print(f"  {c:26s} keep/drop agreement {agree:.4f}  (datatrove drops {dropped:.1%})")

    if args.json:
        with open(args.json, "w") as f:
            json.dump(result, f, indent=2)


if __name__ == "__main__":
    main()
