"""TransformerProxy against NGramProxy on realmix: do they rank two selections the same way?

Reads `pool.parquet`, `target.parquet` and `eval.parquet` of ../shared/corpora/realmix in
place (column `text`). Two selections: (a) --docs random pool documents, (b) --docs documents
drawn from the target (all of them if it has fewer). Each proxy, at its default settings,
trains on each selection and scores realmix's eval set; the script prints wall and CPU
seconds per run (tokenisation, training and scoring) and the losses. Lower loss = better
selection; the target-like selection should win under both proxies.

Usage:
    python bench/bench_proxy_transformer.py
    python bench/bench_proxy_transformer.py --docs 300 --threads 0   # 0: torch's own thread count
"""

from __future__ import annotations

import argparse
import os
import platform
import time
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import torch

from thresher.operators.proxy_lm import NGramProxy, tokenize
from thresher.operators.proxy_transformer import TransformerProxy

CORPUS = Path(__file__).resolve().parents[2] / "shared" / "corpora" / "realmix"


def texts(path: Path) -> list[str]:
    return pq.read_table(path, columns=["text"]).column("text").to_pylist()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--corpus", type=Path, default=CORPUS)
    ap.add_argument("--docs", type=int, default=500)
    ap.add_argument("--threads", type=int, default=1, help="TransformerProxy threads; 0 leaves torch's setting")
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()
    pool, target, valid = (texts(args.corpus / f"{name}.parquet") for name in ("pool", "target", "eval"))
    rng = np.random.default_rng(args.seed)
    selections = {
        "random pool": [pool[i] for i in rng.choice(len(pool), min(args.docs, len(pool)), replace=False)],
        "target": [target[i] for i in rng.choice(len(target), min(args.docs, len(target)), replace=False)],
    }
    transformer = TransformerProxy(threads=args.threads or None)
    print(f"python {platform.python_version()}, torch {torch.__version__}, {os.cpu_count()} CPUs, "
          f"device {transformer.device}, threads {args.threads or torch.get_num_threads()}, "
          f"load {os.getloadavg()[0]:.2f}")
    print(f"transformer: {transformer.n_parameters():,} parameters, {transformer.steps} steps x "
          f"{transformer.batch_size} x {transformer.context} tokens")
    for label, sel in selections.items():
        print(f"{label}: {len(sel):,} docs, {sum(len(tokenize(t)) + 1 for t in sel):,} tokens")
    print(f"eval: {len(valid):,} docs, {sum(len(tokenize(t)) + 1 for t in valid):,} tokens\n")

    print("| proxy | selection | wall s | CPU s | loss (nats/token) |")
    print("|---|---|---:|---:|---:|")
    for proxy in (NGramProxy(), transformer):
        for label, sel in selections.items():
            wall, cpu = time.perf_counter(), time.process_time()
            loss = proxy.loss(sel, valid)
            wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
            print(f"| {proxy.name} | {label} | {wall:.1f} | {cpu:.1f} | {loss:.4f} |", flush=True)
    print(f"\nload at the end: {os.getloadavg()[0]:.2f}")


if __name__ == "__main__":
    main()
