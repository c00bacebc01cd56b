"""kMQ on three hand-made clusters: the budget split by kmq_budgets, the best documents of each cluster at a small T."""

from __future__ import annotations

import numpy as np
import pyarrow as pa

from thresher.operators import schema as S
from thresher.operators.histogram import DomainHistograms
from thresher.operators.kmq import KMQ
from thresher.operators.selection import select


def _pool() -> pa.Table:
    """Cluster a: 2 documents, b and c: 10 each; quality 0.05, 0.10, ... so every document ranks apart."""
    domains = ["a"] * 2 + ["b"] * 10 + ["c"] * 10
    q = [0.3, 0.9] + [0.05 * (i + 1) for i in range(10)] + [0.9 - 0.05 * i for i in range(10)]
    n = len(domains)
    return pa.table({
        S.DOC_ID: [f"{d}-{i}" for i, d in enumerate(domains)],
        S.DOMAIN: domains,
        S.Q_HEURISTIC: q,
        S.N_TOKENS: np.full(n, 7, np.int64),
        S.INVALID_REASON: pa.nulls(n, pa.string()),
    })


def _fit(strategy: KMQ, t: pa.Table, unit: str, budget: float) -> KMQ:
    hist = DomainHistograms(4096)
    keys, scores = strategy.keys_and_scores(t)
    hist.add(keys, scores, t.column(S.N_TOKENS).to_numpy())
    return strategy.fit(hist, unit, budget)


def test_equal_split_takes_each_clusters_best_at_a_small_temperature():
    t = _pool()
    kmq = _fit(KMQ({S.Q_HEURISTIC: 1.0}, temperature=1e-3, split="equal", seed=3), t, "docs", 12)
    # 12 over three clusters is 4 each; a holds only 2, so its 2 spare go to b and c: [2, 5, 5]
    assert kmq.facts()["domain_budgets"] == {"a": 2, "b": 5, "c": 5}
    out = select(t, kmq, seed=3, filters=[])
    picked = set(np.array(t.column(S.DOC_ID).to_pylist())[np.asarray(out.column(S.SEL_COPIES)) > 0])
    # at T = 1e-3, q / T differs by 50 between neighbours, far beyond the Gumbel noise: each cluster's top 5 by q
    assert picked == {"a-0", "a-1", "b-7", "b-8", "b-9", "b-10", "b-11", "c-12", "c-13", "c-14", "c-15", "c-16"}


def test_proportional_split_and_a_token_budget():
    t = _pool()
    # 84 tokens = 12 documents of 7; proportional to 14 : 70 : 70 tokens = 7.64, 38.18, 38.18 -> [8, 38, 38] by largest remainder
    kmq = _fit(KMQ({S.Q_HEURISTIC: 1.0}, temperature=1e-3, split="proportional"), t, "tokens", 84)
    assert kmq.facts()["domain_budgets"] == {"a": 8, "b": 38, "c": 38}
    copies = np.asarray(select(t, kmq, seed=0, filters=[]).column(S.SEL_COPIES))
    domains = np.array(t.column(S.DOMAIN).to_pylist())
    # whole documents of 7 tokens: a's 8 tokens hold one document (the threshold falls inside its bin), b and c 38 -> 5 or 6
    assert copies[domains == "a"].sum() in (1, 2) and 5 <= copies[domains == "b"].sum() <= 6 and copies.max() == 1


def test_a_large_temperature_samples_evenly_inside_a_cluster():
    n = 4000
    t = pa.table({
        S.DOC_ID: [f"d{i}" for i in range(n)], S.DOMAIN: ["x"] * n, S.Q_HEURISTIC: np.linspace(0, 1, n),
        S.N_TOKENS: np.ones(n, np.int64), S.INVALID_REASON: pa.nulls(n, pa.string()),
    })
    kmq = _fit(KMQ({S.Q_HEURISTIC: 1.0}, temperature=100.0, seed=1), t, "docs", 1000)
    copies = np.asarray(select(t, kmq, seed=1, filters=[]).column(S.SEL_COPIES))
    assert abs(copies.sum() - 1000) <= 5
    low, high = copies[: n // 2].sum(), copies[n // 2 :].sum()
    assert abs(low - high) < 120  # exp(q / 100) varies by 1%: the two halves are drawn about equally
