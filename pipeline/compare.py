"""`thresher compare SPEC --strategies ...`: several strategies on one scored pool, one table.

Every strategy runs as the spec's job with only `selection.strategy`
changed (budget, filters, exclusions and domain kept; each strategy's own
parameters at their defaults), in one shared work directory, so embed,
clusters, fit, dedup and score run once and each strategy costs its select
and write. Each selection is written to OUT/NAME (with its report.html),
the table to OUT/compare.md and compare.json, the side-by-side report to
OUT/report.html. With `--validation`, the
n-gram proxy (`operators/proxy_lm.py`) is trained on each selection (copies
counted) and scored there: lower is better.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Callable

import numpy as np
import pyarrow.parquet as pq

from thresher.operators import schema as S

from .errors import SpecError
from .report import compare_report
from .spec import JobSpec, parse_spec

DUPLICATE_FLAGS = (S.D_EXACT_DUP, S.D_NEAR_DUP, S.D_SEMDUP)


def compare(spec: JobSpec, strategies: list[str], out: Path, validation: list[str] | None = None, log: Callable[[str], None] = print, settings=None) -> list[dict]:
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
        rows.append(_row(name, out / name, m, valid))
        domains[name] = m["domains"]
    (out / "compare.json").write_text(json.dumps(rows, indent=2))
    (out / "compare.md").write_text(table(rows))
    (out / "report.html").write_text(compare_report(rows, domains))
    log(f"[compare] report: {out / 'report.html'}")
    return rows


def _row(name: str, path: Path, m: dict, valid: list[str] | None) -> dict:
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
        "proxy_loss": None,
    }
    if valid and t.num_rows:
        from thresher.operators.proxy_lm import NGramProxy

        row["proxy_loss"] = NGramProxy().loss(t.column(S.TEXT).to_pylist(), valid, train_weights=copies)
    return row


def table(rows: list[dict]) -> str:
    lines = ["| strategy | docs | tokens | mean quality | duplicate rate | cluster entropy | Vendi | proxy loss |", "|---|---|---|---|---|---|---|---|"]
    for r in rows:
        q = ", ".join(f"{k} {v:.3f}" for k, v in r["mean_quality"].items())
        dup = "-" if r["duplicate_rate"] is None else f"{r['duplicate_rate']:.3f}"
        loss = "-" if r["proxy_loss"] is None else f"{r['proxy_loss']:.4f}"
        lines.append(f"| {r['strategy']} | {r['docs']} | {r['tokens']} | {q} | {dup} | {r['cluster_entropy']:.3f} | {r['vendi']:.2f} | {loss} |")
    return "\n".join(lines) + "\n"
