"""`thresher compare SPEC --strategies ...`: several strategies on one scored pool, one table.

Every strategy runs as the spec's job with only `selection.strategy`
changed (budget, filters, exclusions and domain kept; each strategy's own
parameters at their defaults), in one shared work directory, so embed,
clusters, fit, dedup and score run once and each strategy costs its select
and write. Each selection is written to OUT/NAME (with its report.html),
the table to OUT/compare.md and compare.json, the side-by-side report to
OUT/report.html.

With `--validation`, every selection is judged by two proxy families trained on
it (copies counted) and scored on that text, lower is better, each over
`judge_seeds` seeds: the hashed n-gram LM (`operators/proxy_lm.py`, the family
QuaDMix's search optimises) and a tiny transformer LM trained for a fixed
`judge_steps` (`operators/proxy_transformer.py`; on the GPU when present). A
method tuned against one judge can win on it alone, so the comparison says
where the two order the strategies differently (`agreement`).
"""

from __future__ import annotations

import json
import math
from itertools import combinations
from pathlib import Path
from typing import Callable

import numpy as np
import pyarrow.parquet as pq

from thresher.operators import schema as S

from .errors import SpecError
from .report import compare_report
from .spec import JobSpec, parse_spec

DUPLICATE_FLAGS = (S.D_EXACT_DUP, S.D_NEAR_DUP, S.D_SEMDUP)
JUDGES = ("ngram", "transformer")


def compare(spec: JobSpec, strategies: list[str], out: Path, validation: list[str] | None = None, log: Callable[[str], None] = print, settings=None,
            judge_seeds: int = 3, judge_steps: int = 200) -> tuple[list[dict], dict | None]:
    """Run each strategy, judge each selection; returns the rows and the judges' `agreement` (None without validation)."""
    from .io import read_texts
    from .runner import run

    if spec.selection.budget is None:
        raise SpecError("compare needs selection.budget: strategies are compared at one size")
    valid = read_texts(validation, "auto", "text", 20_000) if validation else None
    base = spec.model_dump(mode="json")
    common = {k: v for k, v in base["selection"].items() if k in ("budget", "filters", "exclude", "domain", "percentile_bins", "on_shortfall")}
    work = base["output"].get("work_dir") or str(out / "work")
    rows, domains = [], {}
    for name in strategies:
        raw = {**base, "selection": {**common, "strategy": name}, "output": {**base["output"], "path": str(out / name), "overwrite": True, "work_dir": work}}
        try:
            variant = parse_spec(raw)
        except SpecError as e:
            raise SpecError(f"strategy {name}: {e}") from None
        log(f"[compare] {name}")
        m = run(variant, log=lambda _: None, progress=False, settings=settings)
        rows.append(_row(name, out / name, m, valid, judge_seeds, judge_steps))
        domains[name] = m["domains"]
    verdict = agreement(rows, judge_seeds) if valid else None
    (out / "compare.json").write_text(json.dumps({"strategies": rows, "agreement": verdict}, indent=2))
    (out / "compare.md").write_text(table(rows, verdict))
    (out / "report.html").write_text(compare_report(rows, domains, verdict))
    if verdict:
        log(f"[compare] {verdict['summary']}")
    log(f"[compare] report: {out / 'report.html'}")
    return rows, verdict


def _row(name: str, path: Path, m: dict, valid: list[str] | None, seeds: int, steps: int) -> dict:
    t = pq.read_table(path / "data")
    copies = np.asarray(t.column(S.SEL_COPIES).to_numpy(), np.float64) if t.num_rows else np.zeros(0)
    quality = [c for c in t.column_names if c.startswith("q_") and not c.startswith("q_rule_")]
    flags = [c for c in DUPLICATE_FLAGS if c in t.column_names]
    row = {
        "strategy": name,
        "docs": m["counts"]["selected_docs"],
        "tokens": m["counts"]["selected_tokens"],
        "mean_quality": {c: float(np.average(np.nan_to_num(t.column(c).to_numpy(zero_copy_only=False).astype(float)), weights=copies)) for c in quality} if t.num_rows else {},
        "duplicate_rate": float(np.mean(np.any([np.asarray(t.column(c).fill_null(False)) for c in flags], axis=0))) if flags and t.num_rows else None,
        "cluster_entropy": m["diversity"]["selection"]["cluster_entropy_normalised"],
        "vendi": m["diversity"]["selection"]["vendi"],
        "judges": None,
    }
    if valid and t.num_rows:
        texts = t.column(S.TEXT).to_pylist()
        row["judges"] = {j: _spread([judge(j, seed, steps).loss(texts, valid, train_weights=copies) for seed in range(seeds)]) for j in JUDGES}
    return row


def judge(name: str, seed: int, steps: int):
    """A judge's proxy for one seed: the n-gram LM (the seed salts its hashes) or the transformer (the seed draws its
    initial weights and its training windows; `steps` of training)."""
    if name == "ngram":
        from thresher.operators.proxy_lm import NGramProxy

        return NGramProxy(seed=seed)
    from thresher.operators.proxy_transformer import TransformerProxy

    return TransformerProxy(steps=steps, seed=seed)


def _spread(losses: list[float]) -> dict:
    mean = sum(losses) / len(losses)
    sd = math.sqrt(sum((x - mean) ** 2 for x in losses) / (len(losses) - 1)) if len(losses) > 1 else 0.0
    return {"losses": losses, "mean": mean, "sd": sd}


def agreement(rows: list[dict], seeds: int) -> dict:
    """Where the judges part: each judge's best strategy, and the pairs of strategies that both judges separate (means
    further apart than twice the standard error of their difference over the seeds; with one seed, any difference)
    but in opposite orders. `agree` when the best is the same and no pair is opposite."""
    judged = [r for r in rows if r["judges"]]
    best = {j: min(judged, key=lambda r: r["judges"][j]["mean"])["strategy"] for j in JUDGES} if judged else {}
    opposite = []
    for a, b in combinations(judged, 2):
        signs = []
        for j in JUDGES:
            x, y = a["judges"][j], b["judges"][j]
            diff, noise = x["mean"] - y["mean"], 2 * math.sqrt((x["sd"] ** 2 + y["sd"] ** 2) / seeds)
            signs.append(0 if abs(diff) <= noise else (1 if diff > 0 else -1))
        if signs[0] * signs[1] < 0:
            lower = {j: (a if sign < 0 else b)["strategy"] for j, sign in zip(JUDGES, signs)}
            opposite.append({"pair": [a["strategy"], b["strategy"]], "lower_by": lower})
    agree = len(set(best.values())) <= 1 and not opposite
    if agree:
        summary = f"the judges agree: {' and '.join(JUDGES)} both rank {next(iter(best.values()), '-')} best"
    else:
        summary = "the judges disagree: " + ", ".join(f"{j} ranks {b} best" for j, b in best.items())
        summary += "".join(f"; {p['pair'][0]} vs {p['pair'][1]}: " + ", ".join(f"{j} prefers {s}" for j, s in p["lower_by"].items()) for p in opposite)
    return {"best": best, "opposite": opposite, "agree": agree, "seeds": seeds, "summary": summary}


def table(rows: list[dict], verdict: dict | None = None) -> str:
    judges = [f"{j} loss" for j in JUDGES]
    lines = [f"| strategy | docs | tokens | mean quality | duplicate rate | cluster entropy | Vendi | {' | '.join(judges)} |", "|---" * (7 + len(judges)) + "|"]
    for r in rows:
        q = ", ".join(f"{k} {v:.3f}" for k, v in r["mean_quality"].items())
        dup = "-" if r["duplicate_rate"] is None else f"{r['duplicate_rate']:.3f}"
        losses = [f"{r['judges'][j]['mean']:.4f} ± {r['judges'][j]['sd']:.4f}" if r["judges"] else "-" for j in JUDGES]
        lines.append(f"| {r['strategy']} | {r['docs']} | {r['tokens']} | {q} | {dup} | {r['cluster_entropy']:.3f} | {r['vendi']:.2f} | {' | '.join(losses)} |")
    if verdict:
        lines += ["", f"Losses: mean ± sd over {verdict['seeds']} seeds, lower is better; {verdict['summary']}."]
    return "\n".join(lines) + "\n"
