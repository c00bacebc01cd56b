"""Time and peak memory of SemDeDup over every cluster of a synthetic embedded corpus.

The corpus: `--docs` unit vectors in `--dim` dimensions around `--clusters`
random centres, cluster sizes log-normal (so a few clusters are large, the
case blocking exists for), and `--dup-frac` of the rows replaced by a noisy
copy (cosine ~0.99) of another row of the same cluster - the planted semantic
duplicates. Cluster labels are the generating ones and `d_centroid_dist` is
1 - cos to the normalised cluster mean, as spherical k-means would give; the
k-means fit itself is not timed here.

For each `--blocks` value, `--repeat` times, a fresh child process loads the
corpus, builds one Arrow table per cluster (the way the pipeline hands
clusters over) and runs `SemDeDup.columns` on each. It reports the wall time,
the process CPU time (user + system, all threads), the 1-minute load average
at the end (the machine may be shared), and the process RSS sampled every
2 ms in a thread: the baseline just before the run, the peak during it, and
peak minus baseline (what SemDeDup itself needs). One block's similarity matrix is at most block x cluster size
float32, printed as `bound` for the largest cluster. The flagged rows must be
identical for every block size (checked by digest). Then the same for a
single `--big-cluster` cluster, the case blocking exists for: without it the
full similarity matrix alone would be n^2 x 4 bytes.

Usage:
    python bench/bench_semdedup.py                     # 100k x 384, 100 clusters
    python bench/bench_semdedup.py --docs 20000 --blocks 4096 --big-cluster 0
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import subprocess
import sys
import tempfile
import threading
import time

import numpy as np
import psutil
import pyarrow as pa

from thresher.operators import schema as S
from thresher.operators.embed import to_fixed_list
from thresher.operators.semdedup import SemDeDup

MiB = 2**20


class RssSampler:
    """Peak RSS of this process, sampled in a background thread."""

    def __init__(self, interval: float = 0.002):
        self.interval = interval
        self.proc = psutil.Process(os.getpid())

    def __enter__(self):
        self.baseline = self.peak = self.proc.memory_info().rss
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()
        return self

    def _run(self):
        while not self._stop.is_set():
            self.peak = max(self.peak, self.proc.memory_info().rss)
            time.sleep(self.interval)

    def __exit__(self, *exc):
        self._stop.set()
        self._thread.join()
        self.peak = max(self.peak, self.proc.memory_info().rss)


def make_corpus(n: int, dim: int, k: int, dup_frac: float, seed: int):
    rng = np.random.default_rng(seed)
    weights = rng.lognormal(0.0, 1.0, k)
    labels = rng.choice(k, size=n, p=weights / weights.sum()).astype(np.int32)
    centres = rng.standard_normal((k, dim)).astype(np.float32)
    centres /= np.linalg.norm(centres, axis=1, keepdims=True)
    emb = centres[labels] + rng.standard_normal((n, dim)).astype(np.float32) * np.float32(1.5 / np.sqrt(dim))
    emb /= np.linalg.norm(emb, axis=1, keepdims=True)
    # Plant duplicates: row -> noisy copy of another row of its cluster.
    n_dup = int(dup_frac * n)
    dups = rng.choice(n, n_dup, replace=False)
    planted_of = np.full(n, -1)
    members = {c: np.flatnonzero(labels == c) for c in range(k)}
    is_dup = np.zeros(n, bool)
    is_dup[dups] = True
    for r in dups:
        pool = members[labels[r]]
        pool = pool[~is_dup[pool]]  # sources stay untouched
        if len(pool) == 0:
            continue
        src = pool[rng.integers(len(pool))]
        emb[r] = emb[src] + rng.standard_normal(dim).astype(np.float32) * np.float32(0.1 / np.sqrt(dim))
        emb[r] /= np.linalg.norm(emb[r])
        planted_of[r] = src
    means = np.zeros((k, dim), np.float64)
    np.add.at(means, labels, emb)
    means /= np.maximum(np.linalg.norm(means, axis=1, keepdims=True), 1e-12)
    dist = (1.0 - np.einsum("ij,ij->i", emb, means[labels].astype(np.float32))).astype(np.float32)
    return emb, labels, dist, planted_of


def _run_one(data: str, block: int, eps: float) -> dict:
    """Child process: load the corpus, run SemDeDup cluster by cluster, report one JSON line."""
    emb = np.load(os.path.join(data, "emb.npy"))
    labels = np.load(os.path.join(data, "labels.npy"))
    dist = np.load(os.path.join(data, "dist.npy"))
    planted_of = np.load(os.path.join(data, "planted_of.npy"))
    n = len(labels)
    sizes = np.bincount(labels)
    order = np.argsort(labels, kind="stable")
    starts = np.r_[0, np.cumsum(sizes)]
    ids = np.array([f"doc-{i:07d}" for i in range(n)], dtype=object)
    clusters = [
        pa.table(
            {
                S.DOC_ID: pa.array(ids[order[a:b]].tolist(), pa.string()),
                S.D_CLUSTER: pa.array(labels[order[a:b]]),
                S.D_CENTROID_DIST: pa.array(dist[order[a:b]]),
                S.EMB: to_fixed_list(emb[order[a:b]]),
            }
        )
        for a, b in zip(starts[:-1], starts[1:])
        if b > a
    ]
    del emb
    eff = block if block > 0 else int(sizes.max())
    sd = SemDeDup(eps=eps, order="hard", block=eff)
    # Warm-up on a small cluster: loads BLAS and allocates its per-thread buffers, so the
    # baseline below includes them (they are a per-process constant, not SemDeDup's).
    sd.columns(min(clusters, key=len).slice(0, 256))
    proc = psutil.Process()
    with RssSampler() as mem:
        t, c0 = time.perf_counter(), proc.cpu_times()
        flags = [sd.columns(c)[0] for c in clusters]
        wall, c1 = time.perf_counter() - t, proc.cpu_times()
    flagged = np.empty(n, bool)
    flagged[order] = np.concatenate([f.to_numpy(zero_copy_only=False) for f in flags])
    copies = np.flatnonzero(planted_of >= 0)
    # A planted pair is found when one of its two rows is flagged (which one depends on the order).
    found = float(np.mean(flagged[copies] | flagged[planted_of[copies]]))
    return {
        "block": block,
        "wall_s": wall,
        "cpu_s": (c1.user + c1.system) - (c0.user + c0.system),
        "load1": os.getloadavg()[0],
        "base_mib": mem.baseline / MiB,
        "peak_mib": mem.peak / MiB,
        "delta_mib": (mem.peak - mem.baseline) / MiB,
        "bound_mib": min(eff, sizes.max()) * sizes.max() * 4 / MiB,
        "flagged": int(flagged.sum()),
        "digest": hashlib.blake2b(np.packbits(flagged).tobytes(), digest_size=8).hexdigest(),
        "planted_found": found,
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--docs", type=int, default=100_000)
    ap.add_argument("--dim", type=int, default=384)
    ap.add_argument("--clusters", type=int, default=100)
    ap.add_argument("--dup-frac", type=float, default=0.05)
    ap.add_argument("--eps", type=float, default=0.05)
    ap.add_argument("--blocks", default="4096,1024,256,0", help="comma-separated; 0 = one block per cluster (unblocked)")
    ap.add_argument("--repeat", type=int, default=2, help="runs per block size; the fastest wall time is reported")
    ap.add_argument("--big-cluster", type=int, default=40_000, help="then one cluster this large (0: skip)")
    ap.add_argument("--big-blocks", default="4096,1024")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--child", nargs=2, metavar=("DATA_DIR", "BLOCK"), help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.child:
        print(json.dumps(_run_one(args.child[0], int(args.child[1]), args.eps)))
        return

    _bench(args, args.docs, args.clusters, [int(b) for b in args.blocks.split(",")])
    if args.big_cluster:
        full = args.big_cluster**2 * 4 / MiB
        print(f"\none cluster of {args.big_cluster} (its full similarity matrix would be {full:.0f} MiB):")
        _bench(args, args.big_cluster, 1, [int(b) for b in args.big_blocks.split(",")])


def _bench(args, n_docs: int, n_clusters: int, blocks: list[int]) -> None:
    t = time.perf_counter()
    emb, labels, dist, planted_of = make_corpus(n_docs, args.dim, n_clusters, args.dup_frac, args.seed)
    sizes = np.bincount(labels, minlength=n_clusters)
    print(f"corpus: {n_docs} x {args.dim}, {n_clusters} clusters (sizes min {sizes.min()}, median "
          f"{int(np.median(sizes))}, max {sizes.max()}), planted dups {int((planted_of >= 0).sum())}, "
          f"built in {time.perf_counter() - t:.1f} s; BLAS threads: all {os.cpu_count()} cores; eps {args.eps}")
    print(f"{'block':>9} {'wall s':>7} {'cpu s':>6} {'load':>5} {'base MiB':>9} {'peak MiB':>9} {'delta MiB':>10} {'bound MiB':>10} "
          f"{'flagged':>8} {'planted found':>14}")
    with tempfile.TemporaryDirectory() as data:
        for name, arr in (("emb", emb), ("labels", labels), ("dist", dist), ("planted_of", planted_of)):
            np.save(os.path.join(data, f"{name}.npy"), arr)
        del emb
        digests = set()
        for block in blocks:
            runs = []
            for _ in range(args.repeat):
                out = subprocess.run(
                    [sys.executable, __file__, "--eps", str(args.eps), "--child", data, str(block)],
                    check=True, capture_output=True, text=True,
                )
                runs.append(json.loads(out.stdout.strip().splitlines()[-1]))
            r = min(runs, key=lambda x: x["wall_s"])
            delta = max(x["delta_mib"] for x in runs)
            digests.update(x["digest"] for x in runs)
            label = str(block) if block > 0 else "unblocked"
            print(f"{label:>9} {r['wall_s']:7.2f} {r['cpu_s']:6.1f} {r['load1']:5.1f} {r['base_mib']:9.0f} {r['peak_mib']:9.0f} {delta:10.0f} "
                  f"{r['bound_mib']:10.0f} {r['flagged']:8d} {r['planted_found']:14.3f}", flush=True)
        print("every block size flagged the same rows" if len(digests) == 1 else f"RESULTS DIFFER: {digests}")

if __name__ == "__main__":
    main()
