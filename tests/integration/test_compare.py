"""thresher compare: strategies side by side on one scored pool, scoring phases run once."""

from __future__ import annotations

import json

import pyarrow.parquet as pq

from thresher.cli import main

from .helpers import make_spec, screenshot, write_corpus


def test_compare_runs_each_strategy_once_on_shared_phases(local_ray, tmp_path, capsys):
    import yaml

    corpus = write_corpus(tmp_path / "corpus", 600)
    validation = tmp_path / "validation.parquet"
    pq.write_table(pq.read_table(corpus / "part-0.parquet").slice(0, 50), validation)
    spec = make_spec(corpus, tmp_path / "unused", scorers={"dedup": {}}, selection={"budget": {"unit": "docs", "amount": 150}, "filters": []})
    path = tmp_path / "job.yaml"
    path.write_text(yaml.safe_dump(spec.model_dump(mode="json")))
    out = tmp_path / "cmp"
    assert main(["compare", str(path), "--strategies", "uniform", "topk", "kmq", "--out", str(out), "--validation", str(validation)]) == 0
    printed = capsys.readouterr().out
    rows = json.loads((out / "compare.json").read_text())
    assert [r["strategy"] for r in rows] == ["uniform", "topk", "kmq"] and printed.endswith((out / "compare.md").read_text())
    assert "[compare] kmq" in printed
    assert all(abs(r["docs"] - 150) <= 30 and r["proxy_loss"] > 0 and 0 <= r["duplicate_rate"] <= 1 for r in rows)  # uniform draws 150 in expectation
    assert rows[1]["docs"] == rows[2]["docs"] == 150
    assert rows[1]["mean_quality"]["q_heuristic"] > rows[0]["mean_quality"]["q_heuristic"]  # top-k by q_heuristic beats random on it
    page = (out / "report.html").read_text()
    assert all(f'<a href="{n}/report.html">' in page and (out / n / "report.html").exists() for n in ("uniform", "topk", "kmq"))
    assert "Quality-diversity trade-off" in page and page.count("<title>kmq") >= 3  # a point per chart, one bar per domain
    shot = screenshot(out / "report.html", tmp_path / "compare.png")
    assert shot["inked"] > 0.02 and shot["colours"] > 20
    later = [json.loads((out / n / "manifest.json").read_text())["phases"] for n in ("topk", "kmq")]
    assert all(p["embed"]["reused"] and p["score"]["reused"] and not p["select"]["reused"] for p in later)
