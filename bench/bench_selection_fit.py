"""QuaDMix.fit and transform against the number of domains.

A parameter search over QuaDMix calls `fit` on the same histograms hundreds of
times, so fit must not grow with domains x (a pass over every domain). For
each domain count this builds histograms of --docs random documents
(log-normal domain sizes, Beta quality, log-normal token counts; ε = 0.5
everywhere, so every document can take copies, and half the domains with
their own λ and ω) at --bins bins, then times:

- `fit` with a token budget of half the pool (no document reaches the cap,
  so c = budget / Σ S·w) and of three times the pool (the cap binds and c is
  solved over the sorted kinks): the first fit on fresh histograms (`cold`,
  which also computes the cached per-domain cumulative sums) and the median
  of --repeat further fits (`warm`, what a parameter search pays);
- one `transform` over --rows rows drawn from the same domains (median of
  --repeat).

Usage:
    python bench/bench_selection_fit.py
    python bench/bench_selection_fit.py --domains 16 512 --docs 200000 --repeat 3
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import time

import numpy as np
import pyarrow as pa

from thresher.operators import schema as S
from thresher.operators.histogram import DomainHistograms
from thresher.operators.quadmix import QuaDMix, QuaDMixParams

BATCH = 65536  # documents per `add`, as the select phase streams them


def corpus(rng: np.random.Generator, n: int, p: np.ndarray) -> pa.Table:
    return pa.table(
        {
            S.DOMAIN: np.char.add("d", rng.choice(len(p), n, p=p).astype(str)),
            S.Q_HEURISTIC: rng.beta(2.0, 3.0, n),
            S.N_TOKENS: np.maximum(1, rng.lognormal(6.0, 1.0, n)).astype(np.int64),
        }
    )


def strategy(rng: np.random.Generator, domains: int) -> QuaDMix:
    lam, omega = rng.uniform(5, 15, domains), rng.uniform(0.3, 0.8, domains)
    own = {f"d{i}": QuaDMixParams(lam=float(lam[i]), omega=float(omega[i]), epsilon=0.5) for i in range(0, domains, 2)}
    return QuaDMix(QuaDMixParams(epsilon=0.5), own)


def timed(fn, repeat: int) -> tuple[float, float]:
    """(first call, median of the next `repeat`) in seconds."""
    times = []
    for _ in range(repeat + 1):
        t = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t)
    return times[0], statistics.median(times[1:])


def run(domains: int, docs: int, bins: int, rows: int, repeat: int, seed: int) -> dict:
    rng = np.random.default_rng(seed)
    p = rng.lognormal(0.0, 1.0, domains)
    p /= p.sum()
    qm = strategy(rng, domains)
    pool = corpus(rng, docs, p)
    t = time.perf_counter()
    hist = DomainHistograms(bins)
    for start in range(0, docs, BATCH):
        part = pool.slice(start, BATCH)
        hist.add(*qm.keys_and_scores(part), np.asarray(part.column(S.N_TOKENS)))
    build = time.perf_counter() - t
    tokens = float(hist.tokens.sum())
    out = {"domains": domains, "cells": int(np.count_nonzero(hist.docs)), "build": build}
    for label, budget in (("free", 0.5 * tokens), ("capped", 3.0 * tokens)):
        fresh = DomainHistograms(bins).merge(hist)  # a copy: each scenario starts cold
        out[f"{label}_cold"], out[f"{label}_warm"] = timed(lambda: qm.fit(fresh, "tokens", budget), repeat)
        facts = qm.facts()
        out[f"{label}_share"] = facts["capped_share"]
        out[f"{label}_error"] = abs(facts["expected"] - budget) / budget
    batch = corpus(rng, rows, p)
    _, out["transform"] = timed(lambda: qm.transform(batch), repeat)
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--domains", type=int, nargs="+", default=[16, 512, 2048])
    ap.add_argument("--docs", type=int, default=2_000_000)
    ap.add_argument("--bins", type=int, default=4096)
    ap.add_argument("--rows", type=int, default=100_000)
    ap.add_argument("--repeat", type=int, default=5)
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()
    print(f"python {platform.python_version()}, numpy {np.__version__}, {os.cpu_count()} CPUs, load {os.getloadavg()[0]:.2f}")
    print(f"{args.docs:,} documents, {args.bins} bins, fit: first and median of {args.repeat} more, transform: {args.rows:,} rows\n")
    head = "| domains | non-empty cells | build hist s | fit cold s | fit warm s | capped: fit cold s | capped: fit warm s | capped share | budget error | transform s |"
    print(head)
    print("|" + "|".join("---:" for _ in range(head.count("|") - 1)) + "|")
    for d in args.domains:
        r = run(d, args.docs, args.bins, args.rows, args.repeat, args.seed)
        error = max(r["free_error"], r["capped_error"])
        print(
            f"| {d:,} | {r['cells']:,} | {r['build']:.2f} | {r['free_cold']:.3f} | {r['free_warm']:.3f} | {r['capped_cold']:.3f} "
            f"| {r['capped_warm']:.3f} | {r['capped_share']:.2f} | {error:.1e} | {r['transform']:.3f} |",
            flush=True,
        )
    print(f"\nload at the end: {os.getloadavg()[0]:.2f}")


if __name__ == "__main__":
    main()
