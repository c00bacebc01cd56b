"""The demo job's fixed cost: its total against its embed phase, with the dedup signed beside the embed phase
(`phases.dedup_begin`) and without (the dedup phase's Ray tasks sign), alternating, each run a fresh process, a fresh
local Ray and a fresh work directory (bench/RESULTS.md).

    python bench/bench_demo_fixed.py [--runs 3] [--corpus demo/corpus.parquet]
"""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

ONE_RUN = """
import json, sys
from thresher.pipeline import phases, runner
from thresher.pipeline.spec import load_spec
if sys.argv[2] == "off":
    object.__setattr__(next(p for p in phases.PHASES if p.name == "dedup"), "begin", None)
m = runner.run(load_spec(sys.argv[1]), log=lambda s: None, progress=False)
print(json.dumps({"timings": {k: v.get("seconds") for k, v in m["timings"].items()}, "counts": m["counts"], "shards": sorted(s["sha256"] for s in m["shards"])}))
"""


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--corpus", default="demo/corpus.parquet")
    args = ap.parse_args()
    spec = Path("examples/demo.yaml").read_text().replace("demo/corpus.parquet", str(Path(args.corpus).resolve()))
    with tempfile.TemporaryDirectory() as tmp:
        print("| run | beside embed | total | Ray start | embed | dedup | score | write | total / embed |")
        print("|---|---|---:|---:|---:|---:|---:|---:|---:|")
        outputs = {}
        for i in range(args.runs):
            for mode in ("on", "off"):
                out = Path(tmp) / "out"
                shutil.rmtree(out, ignore_errors=True)
                shutil.rmtree(Path(tmp) / "out.work", ignore_errors=True)
                path = Path(tmp) / "demo.yaml"
                path.write_text(spec.replace("path: demo/out", f"path: {out}"))
                r = subprocess.run([sys.executable, "-c", ONE_RUN, str(path), mode], capture_output=True, text=True, check=True)
                m = json.loads(r.stdout.strip().splitlines()[-1])
                t = m["timings"]
                outputs.setdefault(mode, set()).add(json.dumps([m["counts"], m["shards"]]))
                cells = [f"{t[k]:.2f}" for k in ("total", "ray", "embed", "dedup", "score", "write")]
                print(f"| {i + 1} | {mode} | {' | '.join(cells)} | {t['total'] / t['embed']:.3f} |", flush=True)
        print("same counts and shard hashes in every run:", len(outputs["on"] | outputs["off"]) == 1)


if __name__ == "__main__":
    main()
