"""A grown corpus costs what is new: pieces per input partition and the content cache, on a real local Ray, checked from the input side."""

from __future__ import annotations

import shutil
import unicodedata
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from thresher.demo_corpus import generate
from thresher.operators.dedup import ExactDuplicates
from thresher.operators.embed import from_fixed_list
from thresher.pipeline.runner import keys_for, run

from .helpers import make_spec, places, selection, write_corpus


def _quiet(spec):
    return run(spec, log=lambda m: None, progress=False)


def grow(corpus) -> dict[str, pa.Table]:
    """The night's change to write_corpus's three files: a new file, ten changed texts in part-1, part-2 gone, and five
    documents of part-0 again under new ids in a file of their own. Returns the new files' tables."""
    old0 = pq.read_table(corpus / "part-0.parquet")
    part1 = pq.read_table(corpus / "part-1.parquet")
    texts = part1.column("text").to_pylist()
    texts[:10] = [t + " A revised closing sentence appears here." for t in texts[:10]]
    part1 = part1.set_column(part1.column_names.index("text"), "text", pa.array(texts))
    pq.write_table(part1, corpus / "part-1.parquet")
    (corpus / "part-2.parquet").unlink()
    new = generate(30, seed=5)
    new = new.set_column(0, "id", pa.array([f"new-{i}" for i in range(30)]))
    pq.write_table(new, corpus / "part-3.parquet")
    copies = old0.slice(0, 5)
    copies = copies.set_column(0, "id", pa.array([f"copy-{i}" for i in range(5)]))
    pq.write_table(copies, corpus / "part-4.parquet")
    return {"part-1": part1, "part-3": new, "part-4": copies}


def _embeddings(work, manifest) -> dict[str, np.ndarray]:
    t = pq.read_table(work / f"embed-{manifest['phases']['embed']['key']}" / "data", columns=["doc_id", "emb", "invalid_reason"])
    t = t.filter(t.column("invalid_reason").is_null())
    return dict(zip(t.column("doc_id").to_pylist(), from_fixed_list(t.column("emb"))))


def _flags(work, manifest) -> dict[str, str]:
    """doc_id -> the kept doc_id, of every exact or near duplicate the score phase flagged."""
    t = pq.read_table(work / f"score-{manifest['phases']['score']['key']}" / "data", columns=["doc_id", "d_exact_dup_of", "d_near_dup_of"])
    return {d: e or n for d, e, n in zip(*(t.column(c).to_pylist() for c in t.column_names)) if e or n}


def test_a_grown_corpus_embeds_only_its_new_and_changed_documents(local_ray, tmp_path):
    corpus = write_corpus(tmp_path / "corpus", 300)
    spec = make_spec(corpus, tmp_path / "out", output={"overwrite": True}, selection={"budget": {"unit": "docs", "amount": 120}}, scorers={"dedup": {}})
    first = _quiet(spec)
    assert first["reuse"] == {"partitions": 3, "partitions_reused": 0, "embedded": 300, "cache_hits": 0}
    assert first["dedup"]["lsh"] == {"bands": 16, "rows": 8, "chosen": "from threshold", "candidate_probability_at_threshold": 0.947}  # 1 - (1 - 0.8^8)^16
    assert first["timings"]["dedup"]["rows"] == 300  # each document signed once (an embed piece's ids/ files are not documents)
    seen = {unicodedata.normalize("NFC", t) for t in pq.read_table(corpus, columns=["text"]).column("text").to_pylist()}

    changed = grow(corpus)
    second = _quiet(spec)
    # From the input side: every valid row of a new or rewritten file is embedded unless its text was embedded before.
    new_texts = [unicodedata.normalize("NFC", t) for t in changed.values() for t in t.column("text").to_pylist()]
    expected_embedded = sum(t not in seen for t in new_texts)
    assert expected_embedded == 40  # 30 new documents, 10 changed ones
    assert second["reuse"] == {"partitions": 4, "partitions_reused": 1, "embedded": expected_embedded, "cache_hits": len(new_texts) - expected_embedded}
    assert sorted(places(tmp_path / "out")) == sorted(pq.read_table(corpus, columns=["id"]).column("id").to_pylist())
    assert second["timings"]["dedup"]["partitions_reused"] == 1  # part-0's signatures; the rest computed
    flagged = _flags(tmp_path / "out.work", second)
    for copy, old in zip(changed["part-4"].column("id").to_pylist(), pq.read_table(corpus / "part-0.parquet").column("id").to_pylist()[:5]):
        assert flagged[copy] == old and old not in flagged  # the copy in a later file names the earlier document, whatever the ids
    exact = ExactDuplicates.load(tmp_path / "out.work" / f"dedup-{second['phases']['dedup']['key']}" / "exact")
    pieces = dict(zip(exact.duplicate_ids_.to_pylist(), exact.pieces_.to_pylist()))
    assert {d: p for d, p in pieces.items() if d.startswith("copy-")} == {f"copy-{i}": 3 for i in range(5)}  # part-4: the pool's fourth piece

    # A from-scratch run over the grown corpus (its own work directory, an empty cache) computes the same vectors.
    scratch_spec = make_spec(corpus, tmp_path / "scratch", output={"work_dir": str(tmp_path / "scratch.work")}, selection={"budget": {"unit": "docs", "amount": 120}},
                             scorers={"dedup": {}})
    scratch = _quiet(scratch_spec)
    assert scratch["reuse"]["embedded"] == 235 and scratch["counts"] == second["counts"]
    assert _flags(tmp_path / "scratch.work", scratch) == flagged  # the same duplicates, the same kept documents
    ours, theirs = _embeddings(tmp_path / "out.work", second), _embeddings(tmp_path / "scratch.work", scratch)
    assert ours.keys() == theirs.keys() and all(np.array_equal(ours[d], theirs[d]) for d in ours)

    third = _quiet(spec)  # nothing new: every phase reused, nothing embedded
    assert third["reuse"] == {"partitions": 4, "partitions_reused": 4, "embedded": 0, "cache_hits": 0}
    assert all(p["reused"] for p in third["phases"].values())


def _scores(out) -> dict[str, dict]:
    """Every valid document's score columns (q_*, d_cluster*), from the output's shards and rejected/ joined back to the work directory's score phase."""
    import json

    m = json.loads((out / "manifest.json").read_text())
    work = Path(m["spec"]["output"]["work_dir"] or f"{m['spec']['output']['path']}.work")
    t = pq.read_table(work / f"score-{m['phases']['score']['key']}" / "data")
    t = t.filter(t.column("invalid_reason").is_null())
    cols = [c for c in t.column_names if c.startswith("q_") or c in ("d_cluster", "d_centroid_dist", "d_cluster_size")]
    return {r["doc_id"]: {c: r[c] for c in cols} for r in t.select(["doc_id", *cols]).to_pylist()}


def test_frozen_states_keep_old_scores_and_the_selection_equals_a_from_scratch_run_with_them(local_ray, tmp_path):
    corpus = write_corpus(tmp_path / "corpus", 300)
    budget = {"budget": {"unit": "docs", "amount": 120}}
    _quiet(make_spec(corpus, tmp_path / "night-1", selection=budget, scorers={"dsir": {"target": {"paths": [str(corpus / "part-0.parquet")]}}}))
    assert (tmp_path / "night-1" / "state" / "clusters").is_dir() and (tmp_path / "night-1" / "state" / "fit" / "scorers.json").exists()
    scored_before = {unicodedata.normalize("NFC", t) for t in pq.read_table(corpus, columns=["text"]).column("text").to_pylist()}
    changed = grow(corpus)
    frozen = {"from_run": str(tmp_path / "night-1")}
    dsir = {"dsir": {"target": {"paths": [str(corpus / "part-0.parquet")]}}}
    second = _quiet(make_spec(corpus, tmp_path / "night-2", selection=budget, scorers=dsir, fit=frozen, output={"work_dir": str(tmp_path / "night-1.work")}))
    assert (second["timings"]["score"]["partitions"], second["timings"]["score"]["partitions_reused"]) == (4, 1)  # part-0 scored by night 1, by the same states
    assert second["timings"]["fit"]["frozen_from"] == str((tmp_path / "night-1" / "state" / "fit").resolve()) and "inertia" not in second["timings"]["clusters"]  # copied, not fitted
    before, after = _scores(tmp_path / "night-1"), _scores(tmp_path / "night-2")
    unchanged = set(pq.read_table(corpus / "part-0.parquet", columns=["id"]).column("id").to_pylist())
    assert unchanged and all(after[d] == before[d] for d in unchanged)  # old documents keep every score, to the bit
    # The score cache, from the input side: a row of a new or rewritten file whose text night 1 scored with these states is
    # not scored again (part-1's unchanged texts, the copies of part-0 under new ids); the rest is.
    texts = [unicodedata.normalize("NFC", t) for t in changed.values() for t in t.column("text").to_pylist()]
    hits = sum(t in scored_before for t in texts)
    assert hits == 95 and (second["timings"]["score"]["cache_hits"], second["timings"]["score"]["scored"]) == (hits, len(texts) - hits)
    report = (tmp_path / "night-2" / "report.html").read_text()
    assert "scores from the cache" in report and f"<td>{len(texts) - hits}</td><td>{hits}</td>" in report

    scratch = _quiet(make_spec(corpus, tmp_path / "scratch", selection=budget, scorers=dsir, fit=frozen, output={"work_dir": str(tmp_path / "scratch.work")}))
    assert selection(tmp_path / "night-2") == selection(tmp_path / "scratch") and scratch["counts"] == second["counts"]
    assert scratch["timings"]["score"]["cache_hits"] == 0 and _scores(tmp_path / "scratch") == after  # what the cache gave is what scoring gives
    assert sorted(places(tmp_path / "night-2")) == sorted(pq.read_table(corpus, columns=["id"]).column("id").to_pylist())


def test_drift_is_about_the_quantile_on_the_fitted_pool_and_grows_with_unlike_documents(local_ray, tmp_path):
    """drift.far_share: the share of documents farther from their centroid than 95% of the fitting sample was."""
    pool = generate(900, seed=3)
    topics = pool.column("topic").to_pylist()
    seen = {"gardening", "sports", "law", "astronomy"}
    (tmp_path / "corpus").mkdir()
    pq.write_table(pool.filter(pa.array([t in seen for t in topics])), tmp_path / "corpus" / "part-0.parquet")
    budget = {"budget": {"unit": "docs", "amount": 100}}
    fitted = _quiet(make_spec(tmp_path / "corpus", tmp_path / "a", selection=budget, clustering={"sample_size": 10_000}))["drift"]
    assert abs(fitted["far_share"] - 0.05) <= 0.01 and fitted["quantile"] == 0.95  # the sample is the whole pool here
    # The night brings topics the clusters were never fitted on: they sit farther from every centroid.
    pq.write_table(pool.filter(pa.array([t in ("medicine", "finance", "cooking", "programming") for t in topics])), tmp_path / "corpus" / "part-1.parquet")
    grown = _quiet(make_spec(tmp_path / "corpus", tmp_path / "b", selection=budget, fit={"from_run": str(tmp_path / "a")}))["drift"]
    assert grown["distance"] == fitted["distance"] and grown["far_share"] > fitted["far_share"] + 0.1, (fitted, grown)


def test_a_new_file_with_a_new_column_remakes_the_pieces_so_every_row_has_it(local_ray, tmp_path):
    corpus = write_corpus(tmp_path / "corpus", 120)
    spec = make_spec(corpus, tmp_path / "out", output={"overwrite": True}, selection={"budget": {"unit": "docs", "amount": 40}, "filters": []})
    _quiet(spec)
    extra = generate(20, seed=4)
    extra = extra.set_column(0, "id", pa.array([f"new-{i}" for i in range(20)])).append_column("source", pa.array(["forum"] * 20))
    pq.write_table(extra, corpus / "part-9.parquet")
    second = _quiet(spec)
    assert second["reuse"]["partitions_reused"] == 0  # the read schema changed: no piece of the old one is reused
    t = pq.read_table(tmp_path / "out" / "data", columns=["doc_id", "source"])
    assert "source" in t.column_names and second["counts"]["input"] == 140


def test_a_nightly_copy_in_any_file_names_the_document_the_pool_already_had(local_ray, tmp_path):
    """With a versioned output, duplicates keep the document seen first (the published pool index), not the one first in
    input order: a copy arriving in a file that sorts first is the one flagged, naming the old doc_id and input file."""
    corpus = write_corpus(tmp_path / "corpus", 300)
    spec = make_spec(corpus, tmp_path / "out", output={"versions": {"keep": 3}}, selection={"budget": {"unit": "docs", "amount": 120}}, scorers={"dedup": {}})
    first = _quiet(spec)
    index = pq.read_table(tmp_path / "out" / "latest" / "state" / "dedup" / "index")
    assert index.num_rows == first["counts"]["valid"] and set(index.column("since").to_pylist()) == {1}
    flagged_before = _flags(tmp_path / "out.work", first)
    part0 = pq.read_table(corpus / "part-0.parquet")
    originals = [i for i in part0.column("id").to_pylist() if i not in flagged_before][:5]
    copies = part0.filter(pa.array([i in originals for i in part0.column("id").to_pylist()]))
    copies = copies.set_column(0, "id", pa.array([f"early-{i}" for i in range(copies.num_rows)]))
    pq.write_table(copies, corpus / "a-early.parquet")  # sorts before part-0: first in input order
    grow(corpus)  # and the rest of the night: a new file, 10 changed texts, part-2 removed, 5 more copies

    second = _quiet(spec)
    matches = pq.read_table(tmp_path / "out" / "latest" / "duplicates.parquet").to_pylist()
    by_doc = {m["doc_id"]: m for m in matches}
    for copy, old in zip(copies.column("id").to_pylist(), originals):
        m = by_doc[copy]
        assert (m["of"], Path(m["of_file"]).name, m["input_file"].endswith("a-early.parquet")) == (old, "part-0.parquet", True)
        assert (m["since"], m["of_since"]) == (2, 1) and old not in by_doc
    assert second["dedup"]["of_earlier_runs"] >= 10  # the five early copies and grow's five
    removed = pq.read_table(tmp_path / "out" / "versions" / first["version"]["id"] / "state" / "dedup" / "index")
    now = pq.read_table(tmp_path / "out" / "latest" / "state" / "dedup" / "index")
    gone = {Path(f).name for f in removed.column("input_file").to_pylist()} - {Path(f).name for f in now.column("input_file").to_pylist()}
    facts = second["dedup"]["index"]
    assert gone == {"part-2.parquet"} and facts["removed"] == sum(Path(f).name == "part-2.parquet" for f in removed.column("input_file").to_pylist())
    assert facts["replaced"] == 10 and facts["previous"] == index.num_rows and facts["carried"] + facts["new"] == second["counts"]["valid"]
    assert sorted(places(tmp_path / "out" / "latest")) == sorted(pq.read_table(corpus, columns=["id"]).column("id").to_pylist())
    report = (tmp_path / "out" / "latest" / "report.html").read_text()
    assert "Pool index" in report and f"<td>{facts['removed']}</td>" in report

    # A from-scratch run knows no earlier night: input order alone, so there the early copies are the ones kept.
    scratch = _quiet(make_spec(corpus, tmp_path / "scratch", selection={"budget": {"unit": "docs", "amount": 120}}, scorers={"dedup": {}}))
    kept_by_scratch = {m["doc_id"]: m["of"] for m in pq.read_table(tmp_path / "scratch" / "duplicates.parquet").to_pylist()}
    assert all(kept_by_scratch[old].startswith("early-") for old in originals) and scratch["dedup"]["of_earlier_runs"] == 0

    third = _quiet(spec)  # nothing new: the index grew by last night's documents only, so every phase is reused
    assert all(p["reused"] for p in third["phases"].values()), third["phases"]
    assert {n: k for n, k in keys_for(spec).items() if k} == {n: p["key"] for n, p in third["phases"].items()}  # the arrivals' key, computed without a job
    assert third["dedup"]["index"]["new"] == 0 and pq.read_table(tmp_path / "out" / "latest" / "duplicates.parquet").to_pylist() == matches

    state = tmp_path / "out" / "latest" / "state" / "dedup"  # as an older thresher published it: one index.parquet
    pq.write_table(pq.read_table(state / "index"), state / "index.parquet")
    shutil.rmtree(state / "index")
    fourth = _quiet(spec)
    assert all(p["reused"] for p in fourth["phases"].values()) and fourth["dedup"]["index"] == third["dedup"]["index"]


def test_a_score_piece_is_rescored_when_its_rows_duplicate_flags_change(local_ray, tmp_path):
    """Unversioned (no pool index: input order decides), a new file sorting first copies a part-0 document: part-0's
    document is now the flagged one, so part-0's score piece is made anew while the untouched files' pieces are reused."""
    corpus = write_corpus(tmp_path / "corpus", 300)
    budget = {"budget": {"unit": "docs", "amount": 120}}
    first = _quiet(make_spec(corpus, tmp_path / "night-1", selection=budget, scorers={"dedup": {}}))
    part0 = pq.read_table(corpus / "part-0.parquet")
    original = next(i for i in part0.column("id").to_pylist() if i not in _flags(tmp_path / "night-1.work", first))
    copy = part0.filter(pa.array([i == original for i in part0.column("id").to_pylist()]))
    pq.write_table(copy.set_column(0, "id", pa.array(["early-0"])), corpus / "a-early.parquet")

    night = {"from_run": str(tmp_path / "night-1")}
    second = _quiet(make_spec(corpus, tmp_path / "night-2", selection=budget, scorers={"dedup": {}}, fit=night, output={"work_dir": str(tmp_path / "night-1.work")}))
    assert (second["timings"]["score"]["partitions"], second["timings"]["score"]["partitions_reused"]) == (4, 2)  # part-1, part-2
    flags = _flags(tmp_path / "night-1.work", second)
    assert flags[original] == "early-0" and "early-0" not in flags
    scratch = _quiet(make_spec(corpus, tmp_path / "scratch", selection=budget, scorers={"dedup": {}}, fit=night, output={"work_dir": str(tmp_path / "scratch.work")}))
    assert _flags(tmp_path / "scratch.work", scratch) == flags and selection(tmp_path / "night-2") == selection(tmp_path / "scratch")


def test_score_tasks_flag_from_their_pieces_pairs_as_the_whole_maps_would(local_ray, tmp_path):
    """Three files, three pieces: every map (exact, near, SemDeDup) is saved with each duplicate's piece, and the
    score phase's flags, applied a piece's pairs at a time, equal the whole maps applied to every row."""
    from thresher.operators.dedup import NearDuplicates, SavedFlags
    from thresher.operators.semdedup import SemanticDuplicates

    spec = make_spec(write_corpus(tmp_path / "corpus", 300), tmp_path / "out", scorers={"dedup": {}, "semdedup": {"epsilon": 0.02}},
                     selection={"budget": {"unit": "docs", "amount": 120}})
    m = _quiet(spec)
    work = tmp_path / "out.work"
    score = pq.read_table(work / f"score-{m['phases']['score']['key']}" / "data")
    maps = [(ExactDuplicates, work / f"dedup-{m['phases']['dedup']['key']}" / "exact"), (NearDuplicates, work / f"dedup-{m['phases']['dedup']['key']}" / "near"),
            (SemanticDuplicates, work / f"semdedup-{m['phases']['semdedup']['key']}" / "semdedup")]
    rows = score.select(["doc_id"])
    for cls, d in maps:
        saved = cls.load(d)
        assert saved.pieces_ is not None and len(saved.duplicate_ids_) > 0, d
        whole = SavedFlags(cls, d).transform(rows)
        assert score.column(cls.flag_col).equals(whole.column(cls.flag_col)) and score.column(cls.of_col).equals(whole.column(cls.of_col)), d
    pieces = set(ExactDuplicates.load(maps[0][1]).pieces_.to_pylist()) | set(NearDuplicates.load(maps[1][1]).pieces_.to_pylist())
    assert len(pieces) > 1  # duplicates in more than one piece: the per-piece loading was exercised
