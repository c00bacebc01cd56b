"""The search phase end to end: proxy runs on Ray, a regressor, chosen parameters the select phase uses and a later job reuses."""

from __future__ import annotations

import json

import pyarrow.parquet as pq

from thresher.operators.quadmix_search import SearchResult
from thresher.pipeline.runner import keys_for, run

from .helpers import make_spec, selection, write_corpus


def test_a_search_chooses_parameters_that_the_selection_uses_and_a_later_job_reuses(local_ray, tmp_path):
    corpus = write_corpus(tmp_path / "corpus", 600)
    validation = tmp_path / "validation.parquet"
    pq.write_table(pq.read_table(corpus / "part-0.parquet").slice(0, 60), validation)  # stands in for a target set
    search = {"validation": {"paths": [str(validation)]}, "runs": 12, "candidates": 2000, "top_k": 16}
    spec = make_spec(corpus, tmp_path / "out", clustering={"n_clusters": 3}, selection={"search": search, "budget": {"unit": "tokens", "amount": 40_000}})
    m = run(spec, log=lambda m: None, progress=False)
    facts = m["timings"]["search"]
    assert facts["runs"] == 12 and -1 <= facts["heldout_spearman"] <= 1 and facts["measured_loss"] <= facts["best_run_loss"] + 1e-12
    work = tmp_path / "out.work" / f"search-{keys_for(spec)['search']}"
    runs = pq.read_table(work / "runs.parquet")
    result = SearchResult.load(work / "search.json")
    assert runs.num_rows == 12 and "loss" in runs.column_names and f"{result.domains[0]}:omega" in runs.column_names
    assert set(result.domains) <= {"0", "1", "2"} and result.measured_loss == facts["measured_loss"]
    assert result.source == facts["chosen_from"] and (result.source == "regressor" or min(runs.column("loss").to_pylist()) == result.measured_loss)
    assert m["selection"]["strategy"] == "quadmix" and m["counts"]["selected_tokens"] > 0
    assert sum(runs.column("heldout").to_pylist()) == 3 and all(abs(p) < 50 for p in runs.column("predicted").to_pylist())  # max(3, 20% of 12) held out
    page = (tmp_path / "out" / "report.html").read_text()
    assert "QuaDMix parameter search" in page and page.count("<title>run ") == 12 and "<title>chosen:" in page  # every run, predicted vs measured
    events = [json.loads(line) for line in (tmp_path / "out.work" / "events.jsonl").read_text().splitlines()]
    assert any(e["event"] == "phase_end" and e["phase"] == "search" for e in events)
    # a later job takes the parameters from the file, without searching, and selects the same documents
    again = make_spec(corpus, tmp_path / "again", clustering={"n_clusters": 3}, output={"work_dir": str(tmp_path / "out.work")},
                      selection={"from_search": str(work / "search.json"), "budget": {"unit": "tokens", "amount": 40_000}})
    m2 = run(again, log=lambda m: None, progress=False)
    assert "search" not in m2["timings"] and m2["phases"]["score"]["reused"]
    assert selection(tmp_path / "again") == selection(tmp_path / "out")
