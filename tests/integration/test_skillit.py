"""Skill-It in a job: the search phase estimates the skills graph and runs the rounds, the select phase splits the pool by the shares."""

from __future__ import annotations

import json
from collections import Counter

import pyarrow.compute as pc
import pyarrow.parquet as pq

from thresher.demo_corpus import generate
from thresher.pipeline.runner import keys_for, run

from .helpers import make_spec, places, write_corpus


def test_skillit_steers_the_budget_toward_the_targets_skill_and_keeps_its_graph_and_trajectory(local_ray, tmp_path):
    corpus = write_corpus(tmp_path / "corpus", 600)
    other = generate(400, seed=7)  # the target: astronomy documents the pool does not hold
    target = tmp_path / "target.parquet"
    pq.write_table(other.filter(pc.equal(other.column("topic"), "astronomy")).select(["id", "text"]), target)
    refine = {"validation": {"paths": [str(target)]}, "rounds": 3, "graph_docs": 16}
    spec = make_spec(corpus, tmp_path / "out", selection={"strategy": "skillit", "domain": "topic", "refine": refine, "budget": {"unit": "docs", "amount": 150}, "filters": []})
    m = run(spec, log=lambda m: None, progress=False)

    found = json.loads((tmp_path / "out.work" / f"search-{keys_for(spec)['search']}" / "skills.json").read_text())
    shares, graph, trajectory = found["shares"], found["graph"], found["trajectory"]
    assert "astronomy" in found["targets"] and sum(found["targets"].values()) == pq.read_metadata(target).num_rows
    assert max(v for row in graph.values() for v in row.values()) == 1.0
    assert graph["astronomy"]["astronomy"] == max(row["astronomy"] for row in graph.values())  # astronomy helps astronomy most
    assert [t["round"] for t in trajectory] == [1, 2, 3] and all("loss_vs_base" in t for t in trajectory[:-1])
    assert all(abs(sum(t["mixture"].values()) - 1) < 1e-3 for t in trajectory)
    assert max(shares, key=shares.get) == "astronomy" and shares["astronomy"] > 1.5 / len(shares)

    budgets = m["selection"]["domain_budgets"]
    assert sum(budgets.values()) == 150 and m["selection"]["skills"]["trajectory"] == trajectory
    topics = Counter(pq.read_table(tmp_path / "out" / "data", columns=["topic"]).column("topic").to_pylist())
    for topic, n in budgets.items():
        assert abs(topics.get(topic, 0) - n) <= 1, (topic, topics, budgets)
        assert abs(n - 150 * shares[topic]) <= 1.5 or m["domains"][topic]["before"]["docs"] < 150 * shares[topic]  # a small topic is taken whole
    assert sorted(places(tmp_path / "out")) == sorted(pq.read_table(corpus, columns=["id"]).column("id").to_pylist())
    report = (tmp_path / "out" / "report.html").read_text()
    assert "Skill-It" in report and "Skills graph A" in report
