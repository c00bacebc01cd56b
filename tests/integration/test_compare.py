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
    assert main(["compare", str(path), "--strategies", "uniform", "topk", "kmq", "--out", str(out), "--validation", str(validation),
                 "--judge-seeds", "2", "--judge-steps", "5"]) == 0
    printed = capsys.readouterr().out
    found = json.loads((out / "compare.json").read_text())
    rows, verdict = found["strategies"], found["agreement"]
    assert [r["strategy"] for r in rows] == ["uniform", "topk", "kmq"] and printed.endswith((out / "compare.md").read_text())
    assert "[compare] kmq" in printed and f"[compare] {verdict['summary']}" in printed
    assert all(abs(r["docs"] - 150) <= 30 and 0 <= r["duplicate_rate"] <= 1 for r in rows)  # uniform draws 150 in expectation
    for r in rows:  # both judges, two seeds each; the transformer's seed draws its weights and windows
        assert sorted(r["judges"]) == ["ngram", "transformer"] and all(len(j["losses"]) == 2 and j["mean"] > 0 for j in r["judges"].values())
        assert r["judges"]["transformer"]["losses"][0] != r["judges"]["transformer"]["losses"][1]
    assert set(verdict["best"]) == {"ngram", "transformer"} and verdict["seeds"] == 2
    assert ("ngram loss" in (out / "compare.md").read_text()) and "transformer loss" in (out / "compare.md").read_text()
    assert rows[1]["docs"] == rows[2]["docs"] == 150
    assert rows[1]["mean_quality"]["q_heuristic"] > rows[0]["mean_quality"]["q_heuristic"]  # top-k by q_heuristic beats random on it
    page = (out / "report.html").read_text()
    assert all(f'<a href="{n}/report.html">' in page and (out / n / "report.html").exists() for n in ("uniform", "topk", "kmq"))
    assert "Quality-diversity trade-off" in page and page.count("<title>kmq") >= 4  # a point per chart (two judges), one bar per domain
    assert "transformer judge&#x27;s loss" in page or "transformer judge's loss" in page
    assert verdict["summary"].split(":")[0] in page
    shot = screenshot(out / "report.html", tmp_path / "compare.png")
    assert shot["inked"] > 0.02 and shot["colours"] > 20
    later = [json.loads((out / n / "manifest.json").read_text())["phases"] for n in ("topk", "kmq")]
    assert all(p["embed"]["reused"] and p["score"]["reused"] and not p["select"]["reused"] for p in later)


def test_agreement_names_each_judges_best_and_the_pairs_they_order_oppositely():
    from thresher.pipeline.compare import agreement

    def row(name, ngram, transformer):
        return {"strategy": name, "judges": {"ngram": {"mean": ngram[0], "sd": ngram[1]}, "transformer": {"mean": transformer[0], "sd": transformer[1]}}}

    # by hand, 3 seeds: the noise bound of a pair is 2 sqrt((sd_a^2 + sd_b^2) / 3)
    rows = [row("dsir", (5.0, 0.0), (4.0, 0.03)), row("quadmix", (4.9, 0.0), (4.2, 0.03)), row("uniform", (5.5, 0.0), (4.05, 0.03))]
    v = agreement(rows, 3)
    assert v["best"] == {"ngram": "quadmix", "transformer": "dsir"} and not v["agree"]
    # dsir vs quadmix: ngram 0.1 > 0 (no spread) prefers quadmix; transformer 0.2 > 2 sqrt(0.0018 / 3) = 0.049 prefers dsir.
    # dsir vs uniform: transformer 0.05 > 0.049 prefers dsir, as ngram does. quadmix vs uniform: ngram prefers quadmix,
    # transformer (0.15) uniform.
    assert v["opposite"] == [{"pair": ["dsir", "quadmix"], "lower_by": {"ngram": "quadmix", "transformer": "dsir"}},
                             {"pair": ["quadmix", "uniform"], "lower_by": {"ngram": "quadmix", "transformer": "uniform"}}]
    assert v["summary"].startswith("the judges disagree: ngram ranks quadmix best, transformer ranks dsir best; dsir vs quadmix")
    # a transformer difference within its seeds' noise is no disagreement
    calm = agreement([row("a", (5.0, 0.0), (4.00, 0.05)), row("b", (4.9, 0.0), (4.01, 0.05))], 3)
    assert calm["opposite"] == [] and calm["best"] == {"ngram": "b", "transformer": "a"} and not calm["agree"]
    same = agreement([row("a", (5.0, 0.0), (4.0, 0.0)), row("b", (5.1, 0.0), (4.1, 0.0))], 1)
    assert same["agree"] and same["summary"] == "the judges agree: ngram and transformer both rank a best"
