"""The whole job on a real local Ray with the static embedder on a few thousand documents."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import pyarrow.parquet as pq
import pytest

from thresher.demo_corpus import LOW_QUALITY_KINDS
from thresher.pipeline.errors import JobError
from thresher.pipeline.runner import keys_for, run

from .helpers import BAD_ROWS, make_spec, selection, write_corpus

N_DOCS = 3000


@pytest.fixture(scope="module")
def job(local_ray, tmp_path_factory):
    root = tmp_path_factory.mktemp("e2e")
    corpus = write_corpus(root / "corpus", N_DOCS, with_bad_rows=True)
    spec = make_spec(corpus, root / "out", input={"max_bytes": 40_000})
    manifest = run(spec, log=lambda m: None, progress=False)
    return spec, manifest, root


def test_accounting_identity(job):
    spec, m, _ = job
    c = m["counts"]
    assert c["input"] == N_DOCS + len(BAD_ROWS)
    assert c["input"] == c["selected_docs"] + c["not_selected"] + c["invalid"]
    assert m["accounting_holds"] is True
    assert sum(c["not_selected_by_reason"].values()) == c["not_selected"]
    assert sum(d["before"]["docs"] for d in m["domains"].values()) == c["valid"]
    assert sum(d["after"].get("docs", 0) for d in m["domains"].values()) == c["selected_docs"]


def test_bad_rows_are_quarantined_with_reasons(job):
    spec, m, _ = job
    out = Path(spec.output.path)
    q = pq.read_table(out / "quarantine").to_pylist()
    assert sorted((r["doc_id"], r["invalid_reason"]) for r in q) == sorted(
        (f"bad-{i}", why) for i, (_, why) in enumerate(BAD_ROWS)
    )
    assert m["counts"]["invalid_by_reason"] == {"empty text": 2, "null text": 1, "text over max_bytes (40000)": 1}
    rejected = pq.read_table(out / "rejected").to_pylist()
    assert all(r["reason"] for r in rejected)
    # from the input side: every input row is in exactly one of data/, rejected/, quarantine/
    input_ids = pq.read_table(spec.input.paths[0], columns=["id"]).column("id").to_pylist()
    places = [pq.read_table(out / "data", columns=["doc_id"]).column("doc_id").to_pylist(), [r["doc_id"] for r in rejected], [r["doc_id"] for r in q]]
    assert sorted(i for p in places for i in p) == sorted(input_ids)


def test_shards_match_manifest(job):
    spec, m, _ = job
    out = Path(spec.output.path)
    files = sorted((out / "data").glob("*.parquet"))
    assert [f"data/{f.name}" for f in files] == [s["path"] for s in m["shards"]]
    assert len(files) > 1  # shard_bytes is small on purpose
    for s in m["shards"]:
        data = (out / s["path"]).read_bytes()
        assert hashlib.sha256(data).hexdigest() == s["sha256"] and len(data) == s["bytes"]
        meta = pq.ParquetFile(out / s["path"]).metadata
        assert meta.num_rows == s["rows"] and meta.row_group(0).column(0).compression == "ZSTD"
        groups = [meta.row_group(i).num_rows for i in range(meta.num_row_groups)]
        assert groups[:-1] == [spec.output.row_group_rows] * (len(groups) - 1) and 0 < groups[-1] <= spec.output.row_group_rows
    table = pq.read_table(out / "data")
    assert table.num_rows == m["counts"]["selected_docs"]
    assert min(table.column("sel_copies").to_pylist()) >= 1
    assert sum(table.column("sel_copies").to_pylist()) == m["counts"]["selected_copies"]
    for col in ("text", "topic", "d_cluster", "d_centroid_dist", "q_heuristic", "domain", "sel_percentile"):
        assert col in table.column_names
    # nothing half-written is left beside the output
    assert not [p for p in out.parent.iterdir() if ".partial-" in p.name]
    assert json.loads((out / "manifest.json").read_text())["spec_hash"] == spec.hash()


def test_budget_met_in_expectation(job):
    _, m, _ = job
    copies = m["counts"]["selected_copies"]
    assert abs(copies - 800) < 100, copies


def test_planted_low_quality_selected_less(job):
    spec, _, _ = job
    out = Path(spec.output.path)
    chosen = set(selection(out))
    corpus = pq.read_table(Path(spec.input.paths[0]), columns=["id", "planted"]).to_pylist()
    rate = {}
    for kind in ("clean", *LOW_QUALITY_KINDS):
        ids = [r["id"] for r in corpus if r["planted"] == kind]
        rate[kind] = sum(i in chosen for i in ids) / len(ids)
    for kind in LOW_QUALITY_KINDS:
        assert rate[kind] < 0.25 * rate["clean"], rate


def test_baseline_strategies_reuse_scores(job):
    spec, first, root = job
    for strategy in ("topk", "uniform"):
        s2 = make_spec(
            Path(spec.input.paths[0]),
            root / f"out-{strategy}",
            input={"max_bytes": 40_000},
            output={"work_dir": str(Path(spec.output.path).with_suffix(".work"))},
            selection={"strategy": strategy},
        )
        m = run(s2, log=lambda m: None, progress=False)
        assert m["timings"]["embed"]["reused"] and m["timings"]["score"]["reused"]
        if strategy == "topk":
            assert abs(m["counts"]["selected_docs"] - 800) <= 5
        else:
            assert abs(m["counts"]["selected_docs"] - 800) < 100


def test_resume_reuses_phases_and_gives_the_same_selection(job):
    spec, first, root = job
    out = Path(spec.output.path)
    before = selection(out)
    work = out.with_suffix(".work")
    (work / f"select-{keys_for(spec)['select']}" / "_SUCCESS").unlink()  # as if killed during selection
    with pytest.raises(JobError, match="already exists"):
        run(spec, log=lambda m: None, progress=False)
    again = run(spec.model_copy(update={"output": spec.output.model_copy(update={"overwrite": True})}), log=lambda m: None, progress=False)
    assert again["timings"]["embed"].get("reused") and again["timings"]["fit"].get("reused")
    assert "reused" not in again["timings"]["select"]
    assert selection(out) == before


def test_diversity_of_the_selection_is_reported(job):
    _, m, _ = job
    d = m["diversity"]
    for part in ("pool", "selection"):
        assert 1.0 < d[part]["vendi"] <= d[part]["vendi_sample"]
        assert 0.0 < d[part]["cluster_entropy_normalised"] <= 1.0
    assert d["selection"]["vendi_sample"] == min(5000, m["counts"]["selected_docs"])


def test_explain_says_where_a_document_went_and_why(job, capsys):
    from thresher.cli import main

    spec, m, _ = job
    out = Path(spec.output.path)
    chosen = pq.read_table(out / "data", columns=["doc_id", "sel_copies", "domain"]).slice(0, 1).to_pylist()[0]
    rejected = pq.read_table(out / "rejected").slice(0, 1).to_pylist()[0]
    assert main(["explain", str(out), chosen["doc_id"]]) == 0
    shown = json.loads(capsys.readouterr().out)
    assert shown["place"] == "data/" and shown["drawn_copies"] == chosen["sel_copies"] and shown["domain"] == chosen["domain"]
    assert "q_heuristic" in shown["scores"] and shown["expected_copies"] > 0
    assert main(["explain", str(out), rejected["doc_id"]]) == 0
    shown = json.loads(capsys.readouterr().out)
    assert shown["place"] == "rejected/" and shown["why"] == rejected["reason"] and shown["drawn_copies"] == 0
    assert main(["explain", str(out), "bad-0"]) == 0
    assert json.loads(capsys.readouterr().out)["why"] == "null text"
    assert main(["explain", str(out), "no-such-id"]) == 1
    assert "no document 'no-such-id'" in capsys.readouterr().err


def test_report_shows_the_distributions_and_domains_the_output_holds(job):
    import numpy as np

    spec, m, root = job
    out = Path(spec.output.path)
    page = (out / "report.html").read_text()
    d = m["distributions"]
    assert "q_heuristic" in d["columns"] and not any(c.startswith("q_rule_") for c in d["columns"])
    # recount from the outside: the selected histogram is the copies in data/, the pool's the valid rows of data/ and rejected/
    data = pq.read_table(out / "data", columns=["doc_id", "q_heuristic", "sel_copies"])
    q = np.clip(data.column("q_heuristic").to_numpy(), 0, 1)
    assert np.histogram(q, bins=d["edges"], weights=data.column("sel_copies").to_numpy())[0].tolist() == d["columns"]["q_heuristic"]["selected"]
    assert sum(d["columns"]["q_heuristic"]["pool"]) == data.num_rows + pq.read_table(out / "rejected").num_rows
    assert abs(d["means"]["q_heuristic"]["selected"] - np.average(q, weights=data.column("sel_copies").to_numpy())) < 1e-9
    for column in d["columns"]:
        assert f'aria-label="{column}"' in page  # one chart per quality column
    assert all(f"<td>{k}</td>" in page for k in m["domains"]) and f"<td>{m['counts']['input']:,}</td>" in page
    assert "<script" not in page and "http://" not in page.replace('xmlns="http://www.w3.org/2000/svg"', "") and "https://" not in page  # offline


def test_report_names_domains_and_shows_documents_kept_and_dropped(job):
    import html

    from thresher.pipeline.profiles import EXAMPLES, SAMPLE

    spec, m, _ = job
    out = Path(spec.output.path)
    page = (out / "report.html").read_text()
    profiles = m["domain_profiles"]
    assert sorted(profiles) == sorted(m["domains"])
    # checked against the output itself: a kept example is in data/ with its copies, a dropped one in rejected/ with its reason
    data = {r["doc_id"]: r["sel_copies"] for r in pq.read_table(out / "data", columns=["doc_id", "sel_copies"]).to_pylist()}
    rejected = {r["doc_id"]: r["reason"] for r in pq.read_table(out / "rejected", columns=["doc_id", "reason"]).to_pylist()}
    for k, p in profiles.items():
        assert p["sampled"] == min(SAMPLE, m["domains"][k]["before"]["docs"])
        assert len(p["terms"]) == 8 and all(w > 0 for _, w in p["terms"]) and [w for _, w in p["terms"]] == sorted((w for _, w in p["terms"]), reverse=True)
        assert len(p["kept"]) == min(EXAMPLES, m["domains"][k]["after"].get("docs", 0)) or p["sampled"] < m["domains"][k]["before"]["docs"]
        for r in p["kept"]:
            assert data[r["doc_id"]] == r["copies"] > 0 and r["reason"] is None
        for r in p["dropped"]:
            assert r["copies"] == 0 and rejected[r["doc_id"]] == r["reason"]
        assert all("q_heuristic" in r["scores"] and len(r["snippet"]) <= 280 for r in p["kept"] + p["dropped"])
        assert html.escape(", ".join(t for t, _ in p["terms"])) in page
        assert all(f"<td>{html.escape(r['doc_id'])}</td>" in page for r in p["kept"] + p["dropped"])
    assert sum(len(p["kept"]) for p in profiles.values()) > 0 and sum(len(p["dropped"]) for p in profiles.values()) > 0


def test_report_renders_in_headless_chromium(job, tmp_path):
    from .helpers import screenshot

    spec, _, _ = job
    shot = screenshot(Path(spec.output.path) / "report.html", tmp_path / "report.png")
    assert shot["size"] == (1200, 1600)
    assert shot["inked"] > 0.02 and shot["colours"] > 20 and shot["blue"] > 0.001  # text, charts, and the selection's bars


def test_the_accounting_tallied_in_a_task_per_file_equals_the_one_in_process(local_ray, tmp_path, monkeypatch):
    """The output's accounting (counts, per-domain figures, distributions, profiles, diversity, drift, rejected/ and
    quarantine/) computed by a task per select file and added up equals the same pass run in the driver, and every
    input row is in one place."""
    from thresher.pipeline import shuffle

    from .helpers import places

    corpus = write_corpus(tmp_path / "corpus", 300, with_bad_rows=True)
    spec = make_spec(corpus, tmp_path / "out", output={"overwrite": True, "work_dir": str(tmp_path / "work")}, selection={"budget": {"unit": "docs", "amount": 100}})
    here = run(spec, log=lambda m: None, progress=False)
    rejected_here = pq.read_table(tmp_path / "out" / "rejected").sort_by("doc_id")
    quarantine_here = pq.read_table(tmp_path / "out" / "quarantine").sort_by("doc_id")
    monkeypatch.setattr(shuffle, "PART_ROWS", 0)  # every pool is "large": a Ray task per select file
    tasks = run(spec, log=lambda m: None, progress=False)
    assert all(tasks["phases"][p]["reused"] for p in ("embed", "score", "select"))  # only the publishing ran again
    for key in ("counts", "domains", "domain_profiles", "accounting_holds", "drift"):
        assert tasks[key] == here[key], key
    for part in ("pool", "selection"):  # the same hash samples, masses and embeddings, added up in another order
        for k, v in here["diversity"][part].items():
            assert tasks["diversity"][part][k] == pytest.approx(v, rel=1e-9), (part, k)
    assert here["drift"]["far_share"] is not None
    for c, by in here["distributions"]["columns"].items():
        assert tasks["distributions"]["columns"][c] == by
        for name, mean in here["distributions"]["means"][c].items():
            assert tasks["distributions"]["means"][c][name] == pytest.approx(mean, rel=1e-12)
    assert len(list((tmp_path / "out" / "rejected").glob("*.parquet"))) == 3  # one part per select file
    assert pq.read_table(tmp_path / "out" / "rejected").sort_by("doc_id").equals(rejected_here)
    assert pq.read_table(tmp_path / "out" / "quarantine").sort_by("doc_id").equals(quarantine_here)
    ids = pq.read_table(corpus, columns=["id"]).column("id").to_pylist()
    assert sorted(places(tmp_path / "out")) == sorted(ids) and tasks["counts"]["invalid"] > 0
