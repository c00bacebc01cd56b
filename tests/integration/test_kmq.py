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
