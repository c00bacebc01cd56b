"""Facility location, max-min and ODiS in a job: the pick pass, its picks.parquet, exact docs budgets, reuse."""

from __future__ import annotations

from collections import Counter

import pyarrow.parquet as pq
import pytest

from thresher.pipeline.runner import keys_for, run

from .helpers import make_spec, places, selection, write_corpus

BUDGET = 60
STRATEGIES = {
    "facility_location": {"neighbors": 16},
    "max_min": {},
    "odis": {"scores": ["q_heuristic", "sig_unique_word_frac", "sig_alpha_ratio"], "components": 3},
}


@pytest.fixture(scope="module")
def jobs(local_ray, tmp_path_factory):
    """Each strategy once, in one work directory (embed and score run for the first only); the demo filters apply."""
    root = tmp_path_factory.mktemp("subset")
    corpus = write_corpus(root / "corpus", 600)

    def job(name: str, out: str):
        sel = {"strategy": name, "budget": {"unit": "docs", "amount": BUDGET}, **STRATEGIES[name]}
        spec = make_spec(corpus, root / out, output={"work_dir": str(root / "work")}, selection=sel)
        return spec, run(spec, log=lambda m: None, progress=False)

    done = {name: (*job(name, name), root / name) for name in STRATEGIES}
    return root, corpus, job, done


def _picks(spec):
    return pq.read_table(f"{spec.output.work_dir}/select-{keys_for(spec)['select']}/picks.parquet")


@pytest.mark.parametrize("name", list(STRATEGIES))
def test_the_selection_is_the_picks_and_every_row_is_accounted_for(jobs, name):
    _, corpus, _, done = jobs
    spec, m, out = done[name]
    assert m["counts"]["selected_docs"] == BUDGET and m["accounting_holds"] and m["selection"]["shortfall"] == 0.0
    assert Counter(places(out)) == Counter(pq.read_table(corpus, columns=["id"]).column("id").to_pylist())
    picks = _picks(spec)
    chosen = selection(out)
    assert set(chosen.values()) == {1} and sorted(picks.column("doc_id").to_pylist()) == sorted(chosen)
    per_group = Counter(picks.column("domain").to_pylist())
    assert per_group == Counter(m["selection"]["domain_picks"]) == Counter({k: v for k, v in m["selection"]["domain_budgets"].items() if v})
    ranks: dict[str, list[int]] = {}
    for r in picks.to_pylist():
        ranks.setdefault(r["domain"], []).append(r["rank"])
    assert all(v == list(range(len(v))) for v in ranks.values())  # each group's picks in pick order, ranked 0, 1, ...


def test_the_strategies_choose_differently(jobs):
    _, _, _, done = jobs
    fl, mm, od = (set(_picks(done[n][0]).column("doc_id").to_pylist()) for n in STRATEGIES)
    assert fl != mm and fl != od and mm != od
    assert len(done["facility_location"][1]["selection"]["domain_budgets"]) > 1  # per k-means cluster (those with eligible documents)
    facts = done["odis"][1]["selection"]
    assert list(facts["domain_budgets"]) == ["*"] and facts["domain_budgets"]["*"] == BUDGET  # ODiS over the whole pool
    axes = facts["odis"]["*"]
    assert axes["columns"] == STRATEGIES["odis"]["scores"] and len(axes["explained_variance_ratio"]) == 3
    assert sum(axes["shares"]) == BUDGET and 0 < sum(axes["explained_variance_ratio"]) <= 1 + 1e-9
    # the output's domain column is still the cluster, whatever ODiS grouped by
    assert len(set(pq.read_table(done["odis"][2] / "data", columns=["domain"]).column(0).to_pylist())) > 1


def test_a_rerun_reuses_the_select_phase(jobs):
    _, _, job, done = jobs
    _, again = job("facility_location", "facility_location-again")
    assert all(p["reused"] for p in again["phases"].values())
    assert selection(done["facility_location"][2]) == selection(done["facility_location"][2].parent / "facility_location-again")


def test_uds_remembers_the_previous_versions_selection_and_prefers_what_it_lacks(local_ray, tmp_path):
    from thresher.pipeline import versions

    corpus = write_corpus(tmp_path / "corpus", 600)
    out = tmp_path / "out"
    uds = {"strategy": "uds", "by": {"q_heuristic": 1.0}, "alpha": 50.0, "batch": 32, "budget": {"unit": "docs", "amount": 100}, "filters": []}
    spec = make_spec(corpus, out, output={"versions": {"keep": 3}}, selection={**uds, "memory": "previous"})
    first = run(spec, log=lambda m: None, progress=False)
    assert first["selection"]["memory"] == {"version": None, "documents": 0, "in_pool": 0}  # no version yet: an empty memory
    night1 = set(versions.selected_ids(versions.resolve(out)))
    second = run(spec, log=lambda m: None, progress=False)  # the same pool: only the memory differs
    v1 = versions.listed(out)[0]
    assert second["selection"]["memory"] == {"version": v1, "documents": 100, "in_pool": 100}
    assert second["phases"]["score"]["reused"] and not second["phases"]["select"].get("reused")
    night2 = set(versions.selected_ids(versions.resolve(out)))
    # the memory moves the picks away from last night's (22 of 100 change here; a mean distance to 100 vectors moves slowly)
    assert len(night1) == len(night2) == 100 and len(night1 & night2) < 90, len(night1 & night2)
    # without the memory the same pool and seed select last night's documents again
    again = make_spec(corpus, tmp_path / "plain", output={"work_dir": str(tmp_path / "out.work")}, selection=uds)
    run(again, log=lambda m: None, progress=False)
    assert set(pq.read_table(tmp_path / "plain" / "data", columns=["doc_id"]).column("doc_id").to_pylist()) == night1
