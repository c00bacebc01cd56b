"""Selection strategies on real text: realmix's pool at a 20% token budget, judged on its eval set.

Every strategy selects from `pool.parquet` with `target.parquet` as the only
hint of what is wanted (classifier positives, DSIR target, the search's
and Skill-It's validation set). Each selection is then judged by two model
families, each trained on it (copies counted) and scored on `eval.parquet`,
which thresher never sees, lower is better: the n-gram proxy
(`operators/proxy_lm.py`, the family QuaDMix's search optimises) and a
tiny transformer LM trained for a fixed `--judge-steps`
(`pipeline/compare.py`'s judges; the job's seed seeds the judge too).
The UDS and ALLSH scorers are on in every job (one score phase per seed). Diversity figures are the
manifest's (cluster-coverage entropy over the job's k-means clusters, Vendi
score on a hash sample of embeddings). All strategies of one seed share one
work directory, so embedding and scoring run once per seed.

Usage:
    python bench/bench_realmix.py                       # 3 seeds, every strategy
    python bench/bench_realmix.py --seeds 0 --strategies uniform quadmix-search
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import time
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq

from thresher.pipeline.compare import JUDGES, judge
from thresher.pipeline.runner import run
from thresher.pipeline.spec import parse_spec

REALMIX = Path(__file__).resolve().parents[2] / "shared" / "corpora" / "realmix"
QUALITY = ["q_heuristic", "q_classifier"]
QUALITY3 = [*QUALITY, "q_dsir"]
QUALITY4 = [*QUALITY3, "q_allsh"]


def strategies(target: str) -> dict[str, dict]:
    return {
        "uniform": {"strategy": "uniform"},
        "topk-heuristic": {"strategy": "topk", "by": {"q_heuristic": 1.0}},
        "topk-classifier": {"strategy": "topk", "by": {"q_classifier": 1.0}},
        "dsir": {"strategy": "dsir"},
        "kmq": {"strategy": "kmq", "by": {"q_heuristic": 1.0, "q_classifier": 1.0}},
        "kmq-iterative": {"strategy": "kmq", "by": {"q_heuristic": 1.0, "q_classifier": 1.0}, "refine": {"validation": {"paths": [target]}}},
        "kmq-iterative-target": {"strategy": "kmq", "by": {"q_heuristic": 1.0, "q_classifier": 1.0}, "refine": {"validation": {"paths": [target]}, "target_weight": 0.5}},
        "quadmix": {"strategy": "quadmix", "quadmix": {"alpha": {"q_heuristic": 1.0, "q_classifier": 1.0}}},
        "quadmix-search": {"strategy": "quadmix", "search": {"validation": {"paths": [target]}, "columns": QUALITY}},
        "quadmix-search-128": {"strategy": "quadmix", "search": {"validation": {"paths": [target]}, "columns": QUALITY, "runs": 128}},
        "topk-dsir": {"strategy": "topk", "by": {"q_dsir": 1.0}},
        "quadmix-search3": {"strategy": "quadmix", "search": {"validation": {"paths": [target]}, "columns": QUALITY3, "runs": 256}},
        "quadmix-search3-rounds": {"strategy": "quadmix", "search": {"validation": {"paths": [target]}, "columns": QUALITY3, "runs": 256, "rounds": 4}},
        "facility-location": {"strategy": "facility_location"},
        "max-min": {"strategy": "max_min"},
        "odis": {"strategy": "odis", "scores": QUALITY3},
        "uds": {"strategy": "uds"},
        "skillit": {"strategy": "skillit", "refine": {"validation": {"paths": [target]}}},
        "skillit-eta2": {"strategy": "skillit", "refine": {"validation": {"paths": [target]}, "eta": 2.0}},
        "topk-allsh": {"strategy": "topk", "by": {"q_allsh": 1.0}},
        "quadmix-search3-64": {"strategy": "quadmix", "search": {"validation": {"paths": [target]}, "columns": QUALITY3}},
        "quadmix-search4-64": {"strategy": "quadmix", "search": {"validation": {"paths": [target]}, "columns": QUALITY4}},
    }


def job(name: str, selection: dict, seed: int, out: Path, budget: float, clusters: int) -> dict:
    target = str(REALMIX / "target.parquet")
    raw = {
        "input": {"paths": [str(REALMIX / "pool.parquet")], "id_column": "id"},
        "output": {"path": str(out / f"seed{seed}" / name), "overwrite": True, "work_dir": str(out / f"seed{seed}" / "work")},
        "embedder": {"model": "static"},
        "clustering": {"n_clusters": clusters},
        "scorers": {"classifier": {"reference": {"paths": [target]}}, "dsir": {"target": {"paths": [target]}}, "dedup": {}, "uds": {}, "allsh": {}},
        "selection": {**selection, "budget": {"unit": "tokens", "amount": budget}, "exclude": ["d_exact_dup", "d_near_dup"]},
        "seed": seed,
    }
    return run(parse_spec(raw), log=lambda m: None, progress=False)


def judged(out_dir: Path, eval_texts: list[str], seed: int, steps: int) -> dict[str, float]:
    """Each judge's loss on the eval set after training on the selection (copies counted)."""
    t = pq.read_table(out_dir / "data", columns=["text", "sel_copies"])
    texts, copies = t.column("text").to_pylist(), np.asarray(t.column("sel_copies").to_numpy(), np.float64)
    return {j: judge(j, seed, steps).loss(texts, eval_texts, train_weights=copies) for j in JUDGES}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    ap.add_argument("--strategies", nargs="+", default=None)
    ap.add_argument("--share", type=float, default=0.2, help="token budget as a share of the pool")
    ap.add_argument("--clusters", type=int, default=16)
    ap.add_argument("--judge-steps", type=int, default=300, help="training steps of the transformer judge")
    ap.add_argument("--out", default="/tmp/thresher-realmix")
    args = ap.parse_args()
    out = Path(args.out)
    pool_tokens = sum(int(np.ceil(len(t.encode()) / 4.0)) for t in pq.read_table(REALMIX / "pool.parquet", columns=["text"]).column(0).to_pylist())
    eval_texts = pq.read_table(REALMIX / "eval.parquet", columns=["text"]).column(0).to_pylist()
    names = args.strategies or list(strategies(""))
    print(f"# realmix, {args.share:.0%} of {pool_tokens:,} tokens; {platform.node()}, {os.cpu_count()} CPUs")
    rows = []
    for seed in args.seeds:
        for name in names:
            t = time.perf_counter()
            m = job(name, strategies(str(REALMIX / "target.parquet"))[name], seed, out, args.share * pool_tokens, args.clusters)
            seconds = time.perf_counter() - t
            losses = judged(out / f"seed{seed}" / name, eval_texts, seed, args.judge_steps)
            sel = m["diversity"]["selection"]
            row = {
                "seed": seed, "strategy": name, **{f"{j}_loss": v for j, v in losses.items()}, "tokens": m["counts"]["selected_tokens"], "docs": m["counts"]["selected_docs"],
                "entropy": sel["cluster_entropy_normalised"], "vendi": sel["vendi"], "seconds": round(seconds, 1),
            }
            if "search" in m["timings"]:
                s = m["timings"]["search"]
                row |= {k: s.get(k) for k in ("runs", "rounds", "chosen_from", "heldout_spearman", "predicted_loss", "measured_loss", "best_run_loss",
                    "median_run_loss")} | {"search_seconds": s["seconds"]}
            rows.append(row)
            print(json.dumps(row), flush=True)
    print()
    print("| strategy | n-gram judge | vs uniform | transformer judge | vs uniform | cluster entropy | Vendi | docs | seeds |")
    print("|---|---|---|---|---|---|---|---|---|")
    base = {j: np.mean([r[f"{j}_loss"] for r in rows if r["strategy"] == "uniform"]) if "uniform" in names else None for j in JUDGES}
    for name in names:
        rs = [r for r in rows if r["strategy"] == name]
        cells = []
        for j in JUDGES:
            values = [r[f"{j}_loss"] for r in rs]
            loss = np.mean(values)
            cells += [f"{loss:.4f} ± {np.std(values, ddof=1) if len(values) > 1 else 0.0:.4f}", f"{(loss - base[j]) / base[j]:+.2%}" if base[j] else "-"]
        print(f"| {name} | {' | '.join(cells)} | {np.mean([r['entropy'] for r in rs]):.3f} | {np.mean([r['vendi'] for r in rs]):.2f} | {np.mean([r['docs'] for r in rs]):.0f} | {len(rs)} |")

if __name__ == "__main__":
    main()
