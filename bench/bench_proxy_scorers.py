"""CPU cost per document of the proxy-LM scorers (u_uds, u_allsh) on realmix's pool: fit and scoring, one torch thread.

Each scorer trains its proxy transformer (200 steps) on the pool's first 2,000
documents, reads its percentile reference on the next 500, then scores the
remaining 642. Printed: fit seconds (training plus the reference's scoring)
and scoring milliseconds per document.

    python bench/bench_proxy_scorers.py
"""

from __future__ import annotations

import os
import platform
import time
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq

from thresher.operators.allsh import LocalSensitivity
from thresher.operators.uds import UDSUtility

REALMIX = Path(__file__).resolve().parents[2] / "shared" / "corpora" / "realmix"


def main() -> None:
    texts = pq.read_table(REALMIX / "pool.parquet", columns=["text"]).column(0).to_pylist()
    train, held, scored = texts[:2000], texts[2000:2500], texts[2500:]
    print(f"# {platform.node()}, {os.cpu_count()} CPUs, load {os.getloadavg()[0]:.2f}; train {len(train)} docs, 200 steps; reference {len(held)}; scored {len(scored)}")
    for cls in (UDSUtility, LocalSensitivity):
        start = time.perf_counter()
        scorer = cls(200, device="cpu").fit(train, held)
        fitted = time.perf_counter()
        values = scorer.scores(scored)
        done = time.perf_counter()
        print(f"{cls.__name__}: fit {fitted - start:.1f} s (training and scoring the {len(held)} reference docs), "
              f"score {1000 * (done - fitted) / len(scored):.2f} ms/doc; median score {np.median(values):.4g}")


if __name__ == "__main__":
    main()
