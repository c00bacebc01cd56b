"""NGramProxy.loss on real text: --train pool documents, scored on realmix's eval set.

Reads `pool.parquet` and `eval.parquet` of ../shared/corpora/realmix in place
(column `text`) and times `loss`:

- cold: the first call, which also tokenises and hashes every text (cached
  per text afterwards);
- warm: the median of --repeat further calls with random fractional copies
  per document, what each further candidate of a parameter search over the
  same pool pays (counting, smoothing and scoring only);
- score: the median of --repeat `token_nll` calls of one fitted model on the
  validation set (what scoring documents against a fixed selection costs).

Also prints the n-gram types per order and how many share a hash slot.

Usage:
    python bench/bench_proxy_lm.py
    python bench/bench_proxy_lm.py --train 1000 --buckets 20 --repeat 5
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import time
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq

from thresher.operators.proxy_lm import NGramProxy, tokenize

CORPUS = Path(__file__).resolve().parents[2] / "shared" / "corpora" / "realmix"


def texts(path: Path, n: int | None = None) -> list[str]:
    column = pq.read_table(path, columns=["text"]).column("text")
    return column.slice(0, n).to_pylist() if n else column.to_pylist()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--corpus", type=Path, default=CORPUS)
    ap.add_argument("--train", type=int, default=3000)
    ap.add_argument("--order", type=int, default=3)
    ap.add_argument("--buckets", type=int, default=40, help="log2 of the hash slots per order")
    ap.add_argument("--repeat", type=int, default=3)
    args = ap.parse_args()
    train, valid = texts(args.corpus / "pool.parquet", args.train), texts(args.corpus / "eval.parquet")
    proxy = NGramProxy(order=args.order, buckets=2**args.buckets)
    rng = np.random.default_rng(0)
    print(f"python {platform.python_version()}, numpy {np.__version__}, {os.cpu_count()} CPUs, load {os.getloadavg()[0]:.2f}")
    n_train, n_valid = sum(len(tokenize(t)) + 1 for t in train), sum(len(tokenize(t)) + 1 for t in valid)
    print(f"{len(train):,} train docs ({n_train:,} tokens), {len(valid):,} validation docs ({n_valid:,} tokens), "
          f"order {args.order}, 2^{args.buckets} slots\n")

    t = time.perf_counter()
    cold_loss = proxy.loss(train, valid)
    cold = time.perf_counter() - t
    warm = []
    for _ in range(args.repeat):
        weights = rng.uniform(0.0, 2.0, len(train))
        t = time.perf_counter()
        proxy.loss(train, valid, weights)
        warm.append(time.perf_counter() - t)
    warm_s = statistics.median(warm)
    model = proxy.fit(train)
    score = []
    for _ in range(args.repeat):
        t = time.perf_counter()
        model.token_nll(valid)
        score.append(time.perf_counter() - t)
    score_s = statistics.median(score)

    print("| call | seconds | docs/s | tokens/s |")
    print("|---|---:|---:|---:|")
    for label, s in (("cold: tokenise + fit + score", cold), (f"warm, random copies (median of {args.repeat})", warm_s)):
        print(f"| {label} | {s:.2f} | {len(train) / s:,.0f} | {n_train / s:,.0f} |")
    print(f"| score only: fitted model, validation set (median of {args.repeat}) | {score_s:.2f} | {len(valid) / score_s:,.0f} "
          f"| {n_valid / score_s:,.0f} |")
    print("(docs/s and tokens/s: training ones for fit rows, validation ones for the score row)")
    print(f"\nloss {cold_loss:.4f} nats/token")
    for k, (types, shared) in enumerate(zip(model.types, model.collisions), 1):
        print(f"order {k}: {types:,} types, {shared:,} in a slot another one holds ({shared / types:.1%})")
    print(f"\nload at the end: {os.getloadavg()[0]:.2f}")


if __name__ == "__main__":
    main()
