"""The search phase end to end: proxy runs on Ray, a regressor, chosen parameters the select phase uses and a later job reuses."""

from __future__ import annotations

import json
from dataclasses import replace

import numpy as np
import pyarrow.parquet as pq
import pytest

from thresher.operators.quadmix_search import SearchResult, pick_finalist
from thresher.pipeline.errors import SpecError
from thresher.pipeline.runner import keys_for, run

from .helpers import make_spec, selection, write_corpus


def test_a_search_chooses_parameters_that_the_selection_uses_and_a_later_job_reuses(local_ray, tmp_path):
    corpus = write_corpus(tmp_path / "corpus", 600)
    validation = tmp_path / "validation.parquet"
    pq.write_table(pq.read_table(corpus / "part-0.parquet").slice(0, 60), validation)  # stands in for a target set
    search = {"validation": {"paths": [str(validation)]}, "runs": 20, "rounds": 2, "candidates": 2000, "top_k": 16}
    spec = make_spec(corpus, tmp_path / "out", clustering={"n_clusters": 3}, selection={"search": search, "budget": {"unit": "tokens", "amount": 40_000}})
    m = run(spec, log=lambda m: None, progress=False)
    facts = m["timings"]["search"]
    assert facts["runs"] == 20 and facts["rounds"] == 2 and -1 <= facts["heldout_spearman"] <= 1
    held = facts["validation_texts"]["held_out"]
    assert facts["validation_texts"]["search"] + held == 60 and 8 <= held <= 30  # about 30% held out by hash
    # the finalists: the regressor's choice, the 4 best runs, top-k by the searched column; 3 fresh seeds each, on the held-out texts
    names = [f["finalist"] for f in facts["finalists"]]
    assert names[0] == "regressor" and len(names) == 6 and names[-1] == "topk q_heuristic" and all(len(f["losses"]) == 3 for f in facts["finalists"])
    # the winner: the lowest mean, or the widest spread over the domains within one standard error of it
    win = facts["finalists"][pick_finalist(np.array([f["losses"] for f in facts["finalists"]]), np.array([f["entropy"] for f in facts["finalists"]]), diverse=True)]
    assert facts["chosen_from"] == win["finalist"] and facts["measured_loss"] == win["mean"] and all(0 <= f["entropy"] <= 1 for f in facts["finalists"])
    work = tmp_path / "out.work" / f"search-{keys_for(spec)['search']}"
    runs = pq.read_table(work / "runs.parquet")
    result = SearchResult.load(work / "search.json")
    assert runs.column("round").to_pylist() == [0] * 10 + [1] * 10  # the second round: the first round's regressor's best draws
    assert runs.num_rows == 20 and "loss" in runs.column_names and f"{result.domains[0]}:omega" in runs.column_names
    # the first run is top-k by the searched column as QuaDMix parameters: α on it alone, the steepest λ, the smallest η, ε 0
    anchor = result.space().params(np.array([runs.column(n)[0].as_py() for n in result.space().feature_names()]))
    assert all(p.alpha == {"q_heuristic": 1.0} and abs(p.lam - 100.0) < 1e-9 and p.eta == 0.25 and p.epsilon == 0.0 for p in anchor.values())
    assert 0 < sum(p.omega for p in anchor.values()) < len(anchor)
    assert set(result.domains) <= {"0", "1", "2"} and result.measured_loss == facts["measured_loss"]
    assert result.source == facts["chosen_from"] and (result.fallback is not None) == result.source.startswith("topk")
    assert m["selection"]["strategy"] == "quadmix" and m["counts"]["selected_tokens"] > 0
    assert ("threshold" in m["selection"]) == (result.fallback is not None)  # top-k's facts when it won
    assert sum(runs.column("heldout").to_pylist()) == 4 and all(abs(p) < 50 for p in runs.column("predicted").to_pylist())  # 20% of 20 held out
    page = (tmp_path / "out" / "report.html").read_text()
    assert "QuaDMix parameter search" in page and page.count("<title>run ") == 20 and "topk q_heuristic" in page  # every run, predicted vs measured; the finalists
    events = [json.loads(line) for line in (tmp_path / "out.work" / "events.jsonl").read_text().splitlines()]
    assert any(e["event"] == "phase_end" and e["phase"] == "search" for e in events)
    # a later job takes the parameters from the file, without searching, and selects the same documents
    again = make_spec(corpus, tmp_path / "again", clustering={"n_clusters": 3}, output={"work_dir": str(tmp_path / "out.work")},
                      selection={"from_search": str(work / "search.json"), "budget": {"unit": "tokens", "amount": 40_000}})
    m2 = run(again, log=lambda m: None, progress=False)
    assert "search" not in m2["timings"] and m2["phases"]["score"]["reused"]
    assert selection(tmp_path / "again") == selection(tmp_path / "out")


def test_a_configured_command_is_the_proxy_and_its_content_is_part_of_the_key(local_ray, tmp_path):
    import sys

    from thresher.pipeline.settings import Settings

    corpus = write_corpus(tmp_path / "corpus", 300)
    validation = tmp_path / "validation.parquet"
    pq.write_table(pq.read_table(corpus / "part-0.parquet").slice(0, 30), validation)
    script, calls = tmp_path / "proxy.py", tmp_path / "calls.txt"
    script.write_text(
        "import pathlib, sys, pyarrow.parquet as pq\n"
        "sel = pq.read_table(sys.argv[1])\n"
        "loss = 10 - sum(c for t, c in zip(sel.column('text').to_pylist(), sel.column('sel_copies').to_pylist()) if 'the' in t.split()) / 100\n"
        "open(pathlib.Path(__file__).with_name('calls.txt'), 'a').write(f'{loss!r}\\n')\n"
        "print(loss)\n"
    )
    settings = Settings(proxy_commands={"mine": [sys.executable, str(script)]})
    search = {"validation": {"paths": [str(validation)]}, "runs": 10, "candidates": 500, "top_k": 8, "proxy": "command:mine", "finalists": 1, "remeasure": 1, "fallback": False}
    spec = make_spec(corpus, tmp_path / "out", clustering={"n_clusters": 2}, selection={"search": search, "budget": {"unit": "docs", "amount": 60}})
    with pytest.raises(SpecError, match="no proxy command .mine. in the settings"):
        run(spec, log=lambda m: None, progress=False, settings=Settings())
    assert not (tmp_path / "out.work").exists()  # refused before any work
    m = run(spec, log=lambda m: None, progress=False, settings=settings)
    assert m["timings"]["search"]["proxy"] == "command:mine" and m["timings"]["search"]["runs"] == 10
    logged = [float(x) for x in calls.read_text().split()]
    runs = pq.read_table(tmp_path / "out.work" / f"search-{keys_for(spec, settings)['search']}" / "runs.parquet")
    assert len(logged) == 12 and sorted(runs.column("loss").to_pylist()) == sorted(logged[:10])  # 10 runs, then the 2 finalists
    before = keys_for(spec, settings)
    script.write_text(script.read_text().replace("/ 100", "/ 50"))
    after = keys_for(spec, settings)
    assert after["search"] != before["search"] and after["score"] == before["score"]  # a new proxy program redoes the search only


def test_top_k_that_beats_every_quadmix_finalist_on_held_out_text_is_selected_and_the_job_says_so(local_ray, tmp_path):
    import pyarrow as pa

    from thresher.demo_corpus import generate

    table = generate(600, 0).select(["id", "text"])
    wanted = [1.0 if i % 10 == 0 else 0.0 for i in range(table.num_rows)]  # 60 documents the target is made of
    (tmp_path / "corpus").mkdir()
    pq.write_table(table.append_column("wanted", pa.array(wanted)), tmp_path / "corpus" / "part-0.parquet")
    validation = tmp_path / "validation.parquet"
    pq.write_table(table.filter(pa.array([w == 1.0 for w in wanted])), validation)
    search = {"validation": {"paths": [str(validation)]}, "runs": 10, "candidates": 500, "top_k": 8, "columns": ["q_heuristic", "q_wanted"], "finalists": 2, "remeasure": 2,
              "anchored": 0}  # draws as QuaDMix draws them: none lies near the top-k by q_wanted
    spec = make_spec(tmp_path / "corpus", tmp_path / "out", clustering={"n_clusters": 2}, scorers={"columns": [{"column": "wanted"}]},
                     selection={"search": search, "budget": {"unit": "docs", "amount": 60}, "filters": []})
    m = run(spec, log=lambda m: None, progress=False)
    facts = m["timings"]["search"]
    assert facts["chosen_from"] == "topk q_wanted" and facts["fallback"] == {"strategy": "topk", "by": {"q_wanted": 1.0}}, facts["finalists"]
    assert any("top-k by q_wanted" in w and "beat every QuaDMix finalist" in w for w in m["warnings"])
    picked = pq.read_table(tmp_path / "out" / "data", columns=["doc_id"]).column("doc_id").to_pylist()
    assert sorted(picked) == sorted(pq.read_table(validation, columns=["id"]).column("id").to_pylist())  # top-k by the column: exactly the wanted documents


def test_dsir_resampling_is_a_finalist_and_a_search_that_chose_it_selects_what_a_dsir_job_selects(local_ray, tmp_path):
    import pyarrow as pa

    from thresher.demo_corpus import generate

    table = generate(600, 1).select(["id", "text"])
    (tmp_path / "corpus").mkdir()
    pq.write_table(table, tmp_path / "corpus" / "part-0.parquet")
    validation = tmp_path / "validation.parquet"
    pq.write_table(table.filter(pa.array([i % 10 == 0 for i in range(table.num_rows)])), validation)
    common = {"clustering": {"n_clusters": 2}, "scorers": {"dsir": {"target": {"paths": [str(validation)]}}}, "output": {"work_dir": str(tmp_path / "work")}}
    budget = {"unit": "docs", "amount": 60}
    search = {"validation": {"paths": [str(validation)]}, "runs": 10, "candidates": 500, "top_k": 8, "finalists": 1, "remeasure": 2}
    m = run(make_spec(tmp_path / "corpus", tmp_path / "out", **common, selection={"search": search, "budget": budget}), log=lambda m: None, progress=False)
    finalists = m["timings"]["search"]["finalists"]
    assert [f["finalist"] for f in finalists][-2:] == ["topk q_heuristic", "dsir"] and len(next(f for f in finalists if f["finalist"] == "dsir")["losses"]) == 2
    # a search that chose DSIR resampling: the job selects as a DSIR job with its seed does
    result = SearchResult.load(next((tmp_path / "work").glob("search-*")) / "search.json")
    chose = tmp_path / "chose-dsir.json"
    replace(result, source="dsir", fallback={"strategy": "dsir"}).save(chose)
    run(make_spec(tmp_path / "corpus", tmp_path / "from", **common, selection={"from_search": str(chose), "budget": budget}), log=lambda m: None, progress=False)
    run(make_spec(tmp_path / "corpus", tmp_path / "dsir", **common, selection={"strategy": "dsir", "budget": budget}), log=lambda m: None, progress=False)
    assert selection(tmp_path / "from") == selection(tmp_path / "dsir") != selection(tmp_path / "out")
    # without scorers.dsir there is nothing to resample by: refused in one line
    with pytest.raises(SpecError, match="chose DSIR resampling, which needs scorers.dsir"):
        run(make_spec(tmp_path / "corpus", tmp_path / "bare", clustering={"n_clusters": 2}, output={"work_dir": str(tmp_path / "work")},
                      selection={"from_search": str(chose), "budget": budget}), log=lambda m: None, progress=False)


def test_a_search_whose_runs_mostly_select_nothing_stops_in_one_line(local_ray, tmp_path):
    import pyarrow as pa

    from thresher.demo_corpus import generate
    from thresher.pipeline.errors import JobError

    table = generate(600, 1).select(["id", "text"])
    (tmp_path / "corpus").mkdir()
    pq.write_table(table.append_column("unwanted", pa.array([0.0 if i % 10 == 0 else 1.0 for i in range(600)])), tmp_path / "corpus" / "part-0.parquet")
    validation = tmp_path / "validation.parquet"
    pq.write_table(table.slice(0, 60), validation)
    search = {"validation": {"paths": [str(validation)]}, "runs": 10, "candidates": 500, "top_k": 8, "columns": ["q_unwanted"]}
    spec = make_spec(tmp_path / "corpus", tmp_path / "out", clustering={"n_clusters": 2}, scorers={"columns": [{"column": "unwanted"}]},
                     selection={"search": search, "budget": {"unit": "docs", "amount": 60}, "filters": []})
    with pytest.raises(JobError, match=r"selection.search: [0-9] of 10 proxy runs selected any document, and the regressor needs 10; raise selection.search.runs"):
        run(spec, log=lambda m: None, progress=False)
