"""The demo job's fixed cost: its total against its embed phase, each run a fresh process, a fresh local Ray and a
fresh work directory, seconds from the manifest (bench/RESULTS.md).

    python bench/bench_demo_fixed.py [--runs 3] [--corpus demo/corpus.parquet]
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
from pathlib import Path

ONE_RUN = """
import json, sys
from thresher.pipeline import runner
from thresher.pipeline.spec import load_spec
m = runner.run(load_spec(sys.argv[1]), log=lambda s: None, progress=False)
print(json.dumps({"timings": {k: v.get("seconds") for k, v in m["timings"].items()}, "counts": m["counts"], "shards": sorted(s["sha256"] for s in m["shards"])}))
"""
PHASES = ("ray", "embed", "clusters", "fit", "dedup", "score", "select", "write")


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--corpus", default="demo/corpus.parquet")
    args = ap.parse_args()
    spec = Path("examples/demo.yaml").read_text().replace("demo/corpus.parquet", str(Path(args.corpus).resolve()))
    print(f"| run | total | {' | '.join(PHASES)} | total / embed |")
    print(f"|---|---:|{'---:|' * len(PHASES)}---:|")
    outputs = set()
    for i in range(args.runs):
        with tempfile.TemporaryDirectory() as tmp:
            path = Path(tmp) / "demo.yaml"
            path.write_text(spec.replace("path: demo/out", f"path: {Path(tmp) / 'out'}"))
            done = subprocess.run([sys.executable, "-c", ONE_RUN, str(path)], capture_output=True, text=True, check=True)
        m = json.loads(done.stdout.strip().splitlines()[-1])
        t = m["timings"]
        outputs.add(json.dumps([m["counts"], m["shards"]]))
        print(f"| {i + 1} | {t['total']:.2f} | {' | '.join(f'{t[p]:.2f}' for p in PHASES)} | {t['total'] / t['embed']:.3f} |", flush=True)
    print("the same counts and shard hashes in every run:", len(outputs) == 1)


if __name__ == "__main__":
    main()
