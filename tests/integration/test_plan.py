"""The declared plan: changing one spec field reruns exactly the phases that read it,
and the output then equals a fresh run from an empty work directory."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pyarrow.parquet as pq
import pytest

from thresher.pipeline.phases import PHASE_NAMES, PHASES
from thresher.pipeline.runner import run

from .helpers import make_spec, write_corpus, write_jsonl_corpus

N_DOCS = 500
BASE = {
    "clustering": {"n_clusters": 4},
    "scorers": {"dedup": {}, "rules": {}},
    "selection": {"strategy": "quadmix", "budget": {"unit": "docs", "amount": 200}, "exclude": ["d_exact_dup"], "filters": [{"column": "sig_n_stopwords", "min": 2}]},
}


def _spec(corpus: Path, out: Path, work: Path, **changes):
    raw = json.loads(json.dumps(BASE))
    for dotted, value in changes.items():
        *parents, leaf = dotted.split("__")
        node = raw
        for p in parents:
            node = node.setdefault(p, {})
        node[leaf] = value
    raw["output"] = {**raw.get("output", {}), "work_dir": str(work)}
    return make_spec(corpus, out, **raw)


def _quiet(spec):
    return run(spec, log=lambda m: None, progress=False)


def rerun_phases(manifest: dict) -> set[str]:
    return {name for name, p in manifest["phases"].items() if not p["reused"]}


def outcome(out: Path) -> dict[str, tuple]:
    """What a selection is, independent of file layout: doc_id -> (copies, domain), plus the rejected/quarantined ids."""
    t = pq.read_table(out / "data", columns=["doc_id", "sel_copies", "domain"]).to_pylist()
    rejected = pq.read_table(out / "rejected").to_pylist()
    got = {r["doc_id"]: (r["sel_copies"], r["domain"]) for r in t}
    got |= {r["doc_id"]: (0, r["reason"]) for r in rejected}
    return got


@pytest.fixture(scope="module")
def base(local_ray, tmp_path_factory):
    root = tmp_path_factory.mktemp("plan")
    corpus = write_corpus(root / "corpus", N_DOCS)
    work = root / "base.work"
    m = _quiet(_spec(corpus, root / "base-out", work))
    assert rerun_phases(m) == {"embed", "clusters", "fit", "dedup", "score", "select"}
    return root, corpus, work


CASES = [
    # (spec field changed, new value, the phases that must rerun)
    ("input__max_bytes", 20_000, {"embed", "clusters", "fit", "dedup", "score", "select"}),
    ("embedder__batch_size", 64, set()),  # how a phase runs, not what it produces
    ("clustering__n_clusters", 6, {"clusters", "score", "select"}),
    ("scorers__rules", {"gopher_quality": {"min_doc_words": 80}}, {"score", "select"}),
    ("scorers__dedup", {"threshold": 0.7}, {"dedup", "score", "select"}),
    ("scorers__fit_sample_size", 300, {"fit", "score", "select"}),
    ("selection__budget", {"unit": "docs", "amount": 150}, {"select"}),
    ("selection__domain", "topic", {"select"}),
    ("selection__max_copies", 2, {"select"}),
    ("seed", 1, {"clusters", "fit", "score", "select"}),
    ("output__shard_bytes", 50_000, set()),
    ("ray__buffer_mb", 128, set()),
]


@pytest.mark.parametrize("field, value, expected", CASES, ids=[c[0] for c in CASES])
def test_one_field_reruns_exactly_its_phases_and_equals_a_fresh_run(base, field, value, expected):
    root, corpus, base_work = base
    case = root / field
    shutil.copytree(base_work, case / "reused.work", ignore=shutil.ignore_patterns(".lock"))
    m = _quiet(_spec(corpus, case / "reused-out", case / "reused.work", **{field: value}))
    assert rerun_phases(m) == expected
    fresh = _quiet(_spec(corpus, case / "fresh-out", case / "fresh.work", **{field: value}))
    assert rerun_phases(fresh) == set(fresh["phases"])
    assert outcome(case / "reused-out") == outcome(case / "fresh-out")
    assert m["counts"] == fresh["counts"]
    if field == "selection__domain":  # the domain comes from the column asked for, never from a reused fit
        shards = pq.read_table(case / "reused-out" / "data", columns=["topic", "domain"])
        assert shards.column("domain").to_pylist() == shards.column("topic").to_pylist()


def test_jsonl_domain_key_change_reruns_selection_only(local_ray, tmp_path):
    corpus = write_jsonl_corpus(tmp_path / "corpus.jsonl", N_DOCS)
    work = tmp_path / "shared.work"
    _quiet(_spec(corpus, tmp_path / "a", work))
    m = _quiet(_spec(corpus, tmp_path / "b", work, selection__domain="topic"))
    assert rerun_phases(m) == {"select"}
    fresh = _quiet(_spec(corpus, tmp_path / "c", tmp_path / "fresh.work", selection__domain="topic"))
    assert outcome(tmp_path / "b") == outcome(tmp_path / "c")
    domains = {r["domain"] for r in pq.read_table(tmp_path / "b" / "data", columns=["domain"]).to_pylist()}
    topics = {json.loads(line)["topic"] for line in corpus.read_text().splitlines()}
    assert domains and domains <= topics and set(m["domains"]) <= topics
    assert m["counts"] == fresh["counts"]


def test_force_reruns_a_phase_and_everything_after_it(base):
    root, corpus, base_work = base
    work = root / "forced.work"
    shutil.copytree(base_work, work, ignore=shutil.ignore_patterns(".lock"))
    m = run(_spec(corpus, root / "forced-out", work), log=lambda m: None, progress=False, force=("dedup",))
    assert rerun_phases(m) == {"dedup", "score", "select"}
    assert outcome(root / "forced-out") == outcome(root / "base-out")


def test_the_plan_lists_every_phase_once_in_dependency_order():
    from thresher.pipeline.plan import check_plan

    check_plan(PHASES)
    assert PHASE_NAMES == ["embed", "clusters", "fit", "dedup", "semdedup", "score", "search", "select"]
