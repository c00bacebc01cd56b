"""kMQ in a job: each domain gets its share of the budget, and the manifest says what each share was."""

from __future__ import annotations

from collections import Counter

import pyarrow.parquet as pq

from thresher.pipeline.runner import run

from .helpers import make_spec, write_corpus


def test_kmq_gives_every_topic_its_share(local_ray, tmp_path):
    corpus = write_corpus(tmp_path / "corpus", 600)
    spec = make_spec(corpus, tmp_path / "out", selection={"strategy": "kmq", "domain": "topic", "budget": {"unit": "docs", "amount": 120}, "filters": []})
    m = run(spec, log=lambda m: None, progress=False)
    shares = m["selection"]["domain_budgets"]
    assert sum(shares.values()) == 120 and m["accounting_holds"]
    topics = Counter(pq.read_table(tmp_path / "out" / "data", columns=["topic"]).column("topic").to_pylist())
    for topic, share in shares.items():
        assert abs(topics.get(topic, 0) - share) <= 1, (topic, topics, shares)  # up to one document at a histogram bin
    assert max(shares.values()) - min(shares.values()) <= 1 or min(m["domains"][t]["before"]["docs"] for t in shares) < 120 / len(shares)


def test_iterative_kmq_refines_the_shares_in_the_search_phase(local_ray, tmp_path):
    import json

    from thresher.pipeline.runner import keys_for

    corpus = write_corpus(tmp_path / "corpus", 600)
    validation = tmp_path / "validation.parquet"
    pq.write_table(pq.read_table(corpus / "part-0.parquet").slice(0, 60), validation)
    refine = {"validation": {"paths": [str(validation)]}, "rounds": 3, "target_weight": 0.5, "probe": 8}
    # 12 clusters: ids "10" and "11" sort after "9" in natural order, before "2" in string order
    spec = make_spec(corpus, tmp_path / "out", clustering={"n_clusters": 12}, selection={"strategy": "kmq", "refine": refine, "budget": {"unit": "docs", "amount": 120}, "filters": []})
    m = run(spec, log=lambda m: None, progress=False)
    saved = json.loads((tmp_path / "out.work" / f"search-{keys_for(spec)['search']}" / "kmq_shares.json").read_text())
    shares = saved["shares"]
    assert abs(sum(shares.values()) - 1) < 1e-9 and len(saved["rounds"]) == 2  # weights set after rounds 1 and 2
    for r in saved["rounds"]:
        assert abs(sum(r["weights"].values()) - 1) < 1e-3  # stored rounded to 4 places
    budgets = m["selection"]["domain_budgets"]
    assert sum(budgets.values()) == 120
    assert set(shares) == {str(c) for c in range(12)}
    for cluster, share in shares.items():  # the whole pool is split as the rounds on the sample ended (it is the sample here)
        assert abs(budgets[cluster] - 120 * share) <= 1.5, (budgets, shares)
