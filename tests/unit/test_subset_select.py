"""The subset strategies on hand-built pools: budgets per group, picks worked out by hand, one copy per pick."""

from __future__ import annotations

import json

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from thresher.operators import schema as S
from thresher.operators.embed import to_fixed_list
from thresher.operators.histogram import DomainHistograms
from thresher.operators.selection import select
from thresher.operators.subset_select import ODiS, FacilityLocation, MaxMin, digests, member, most_docs
from thresher.pipeline.errors import JobError
from thresher.pipeline.picks import Eligible, pick_group, tag_eligible
from thresher.pipeline.spec import odis_columns


def _arc(degrees) -> np.ndarray:
    """Unit vectors at these angles: the cosine distance between two is 1 - cos(their angle apart)."""
    r = np.radians(np.asarray(degrees, np.float64))
    return np.c_[np.cos(r), np.sin(r)]


def _pool(domains, emb=None, tokens=None, **scores) -> pa.Table:
    n = len(domains)
    cols = {
        S.DOC_ID: [f"{d}{i}" for i, d in enumerate(domains)],  # ids sort in row order inside a domain (fewer than 10 rows each)
        S.DOMAIN: domains,
        S.N_TOKENS: np.asarray(tokens if tokens is not None else [1] * n, np.int64),
        S.INVALID_REASON: pa.nulls(n, pa.string()),
    }
    if emb is not None:
        cols[S.EMB] = to_fixed_list(np.asarray(emb, np.float32))
    return pa.table({**cols, **scores})


def _run(strategy, t: pa.Table, unit: str, budget: float) -> tuple[dict, list[str]]:
    """The select phase in miniature: histograms, fit, one pick per group (as the pick pass runs it), select."""
    hist = DomainHistograms(16)
    keys, scores = strategy.keys_and_scores(t)
    hist.add(keys, scores, t.column(S.N_TOKENS).to_numpy())
    strategy.fit(hist, unit, budget)
    tagged = t.drop_columns([S.DOMAIN]).append_column(S.DOMAIN, pa.array(keys.tolist(), pa.string()))
    budgets = strategy.budgets()
    rows = [pick_group(tagged.filter(pa.array(keys == k)), strategy, budgets) for k in strategy.keys_ if budgets[k] > 0]
    picks, facts = [], {}
    for r in pa.concat_tables(rows).to_pylist():
        picks += [(d, r[S.DOMAIN], n) for d, n in zip(r["doc_ids"], r["tokens"])]
        facts[r[S.DOMAIN]] = json.loads(r["facts"])
    table = pa.table({S.DOC_ID: [p[0] for p in picks], S.DOMAIN: [p[1] for p in picks], S.N_TOKENS: pa.array([p[2] for p in picks], pa.int64())})
    strategy.set_picks(table, {k: f for k, f in facts.items() if f})
    out = select(t, strategy, seed=0, filters=[])
    copies = np.asarray(out.column(S.SEL_COPIES))
    assert set(np.asarray(t.column(S.DOC_ID).to_pylist())[copies > 0]) == {p[0] for p in picks} and copies.max(initial=0) <= 1
    return strategy.facts(), [p[0] for p in picks]


# Domain a, five directions: 0, 10, 20 degrees (a tight trio), 50 and 100.
# sim = max(0, cos): rounded,
#        a0    a1    a2    a3    a4
#  a0  1     .985  .940  .643  0
#  a1  .985  1     .985  .766  0
#  a2  .940  .985  1     .866  .174
#  a3  .643  .766  .866  1     .643
#  a4  0     0     .174  .643  1
# Pick 1, gains = column sums: 3.567, 3.736, 3.964, 3.918, 1.816 -> a2 (the trio's centre).
# Pick 2, cover = column a2; gain_j = sum_i max(0, sim(i, j) - cover_i):
#   a0 .060, a1 .060, a3 (1 - .866) + (.643 - .174) = .603, a4 (1 - .174) + 0 = .826 -> a4.
# Pick 3, cover = max(a2, a4): a0 .060, a1 .060, a3 1 - .866 = .134 -> a3.
# (A fourth pick would tie a0 and a1 exactly: each adds what the other would.)
A = [0, 10, 20, 50, 100]
# Domain b, three directions 0, 50, 55: gains 2.216, 2.639, 2.570 -> b1 (50); then
# b0 1 - .643 = .357, b2 1 - .996 = .004 -> b0.
B = [0, 50, 55]


def test_facility_location_covers_each_domain_with_an_equal_split():
    t = _pool(["a"] * 5 + ["b"] * 3, emb=np.r_[_arc(A), _arc(B)])
    facts, picks = _run(FacilityLocation(neighbors=5), t, "docs", 5)
    # 5 over two domains: 2.5 each, floors 2 + 2, the unit left to the tie's lower index (a)
    assert facts["domain_budgets"] == {"a": 3, "b": 2} and facts["domain_picks"] == {"a": 3, "b": 2}
    assert picks == ["a2", "a4", "a3", "b6", "b5"]  # b's rows are b5, b6, b7: b6 is 50 degrees, b5 0
    assert (facts["expected"], facts["shortfall"], facts["max_copies"], facts["neighbors"]) == (5.0, 0.0, 1, 5)


def test_facility_location_on_a_sparse_graph():
    # 2 neighbours: a point can be covered only by itself and its nearest: a0 by a1, a1 by a0 (or a2: a tie),
    # a2 by a1, a3 by a2, a4 by a3. Gains: a0 1 + .985, a1 .985 + 1 + .985 = 2.970, a2 1 + .866, a3 1 + .643,
    # a4 1 -> a1. Then a0 .015, a2 (1 - .985) + .866 = .881, a3 1 + .643 = 1.643, a4 1 -> a3.
    t = _pool(["a"] * 5, emb=_arc(A))
    _, picks = _run(FacilityLocation(neighbors=2), t, "docs", 2)
    assert picks == ["a1", "a3"]


def test_a_token_budget_keeps_the_shortest_prefix_that_reaches_it():
    # Greedy order a2 (40 tokens), a4 (20), a3 (30), ...: 40, 60, 90. 65 tokens need a2, a4 and a3
    # (90 >= 65; 60 falls short); the greedy run asked for most_docs = 4 (10 + 10 + 20 + 30 = 70 >= 65).
    t = _pool(["a"] * 5, emb=_arc(A), tokens=[10, 10, 40, 30, 20])
    assert most_docs(np.array([10, 10, 40, 30, 20]), 65) == 4
    facts, picks = _run(FacilityLocation(neighbors=5), t, "tokens", 65)
    assert picks == ["a2", "a4", "a3"] and facts["expected"] == 90.0 and facts["shortfall"] == 0.0 and facts["unit"] == "tokens"
    facts, picks = _run(FacilityLocation(neighbors=5), t, "tokens", 500)  # more than the pool: all of it, and a shortfall
    assert len(picks) == 5 and facts["expected"] == 110.0 and facts["shortfall"] == 390.0


def test_most_docs_is_enough_for_any_order():
    assert most_docs(np.array([5, 1, 3]), 1) == 1 and most_docs(np.array([5, 1, 3]), 4) == 2 and most_docs(np.array([5, 1, 3]), 10) == 3


# Domain m, directions 0, 10, 20, 30, 40, 60, 90: the mean direction is at 34.9 degrees, so the first pick is
# 90 (55 degrees off), the next the farthest from it (0), the third the farthest from both: 40 (40 from 0, 50
# from 90; 60 is 30 from 90). Domain n, 0, 10, 80: mean at 28.2, so 80 first, then 0.
M = [0, 10, 20, 30, 40, 60, 90]
N = [0, 10, 80]


def test_max_min_spreads_out_equal_and_proportional_splits():
    t = _pool(["m"] * 7 + ["n"] * 3, emb=np.r_[_arc(M), _arc(N)])
    facts, picks = _run(MaxMin(split="equal"), t, "docs", 4)
    assert facts["domain_budgets"] == {"m": 2, "n": 2} and picks == ["m6", "m0", "n9", "n7"]
    # proportional: 4 * 7 / 10 = 2.8, 4 * 3 / 10 = 1.2: floors 2 + 1, the unit to the larger fraction (m)
    facts, picks = _run(MaxMin(split="proportional"), t, "docs", 4)
    assert facts["domain_budgets"] == {"m": 3, "n": 1} and picks == ["m6", "m0", "m4", "n9"]
    assert facts["split"] == "proportional" and facts["expected"] == 4.0


# Two correlated scores (r = 0.6), the same values in another order, so z-scoring treats them alike.
# With two z-scored columns the PCA axes are (1, 1) / sqrt 2 (80% of the variance) and (1, -1) / sqrt 2 (20%):
# axis 1 ranks by q1 + q2 = 2, 6, 5, 10, 8, 11; axis 2 by q1 - q2 = 0, -2, 1, -2, 2, 1 (it is uncorrelated
# with quality, so its sign makes the first of its equal loadings positive).
Q1 = [1.0, 2, 3, 4, 5, 6]
Q2 = [1.0, 4, 2, 6, 3, 5]


def test_odis_takes_the_top_of_each_axis_over_the_whole_pool():
    t = _pool(["x", "x", "x", "y", "y", "y"], q_one=Q1, q_two=Q2)
    strategy = ODiS(["q_one", "q_two"], components=4)
    facts, picks = _run(strategy, t, "docs", 2)
    # one from each axis: the best sum (row 5) and the best difference (row 4); top-2 by sum would be rows 5 and 3
    assert picks == ["y5", "y4"] and facts["domain_budgets"] == {"*": 2}  # one group: the pool, whatever the domains
    f = facts["odis"]["*"]
    assert f["columns"] == ["q_one", "q_two"] and f["explained_variance_ratio"] == [0.8, 0.2] and f["overlap"] == [[1.0, 0.0], [0.0, 1.0]]
    assert f["loadings"] == [[0.7071, 0.7071], [0.7071, -0.7071]] and facts["columns"] == ["q_one", "q_two"]
    _, picks = _run(ODiS(["q_one", "q_two"]), t, "docs", 3)
    assert picks == ["y5", "y3", "y4"]  # shares 2 + 1: axis 1's top two, then axis 2's


def test_odis_token_budget_bisects_on_the_document_count():
    # 12 tokens: most_docs = 3 (5 + 5 + 5); ODiS of 1 (y5: 5 tokens) and of 2 (y5, y4: 10) fall short, of 3
    # (y5, y3, y4: 60) reaches it. A prefix cut of the 3 would have been y5, y3: only axis 1.
    t = _pool(["x", "x", "x", "y", "y", "y"], tokens=[5, 5, 5, 50, 5, 5], q_one=Q1, q_two=Q2)
    facts, picks = _run(ODiS(["q_one", "q_two"]), t, "tokens", 12)
    assert picks == ["y5", "y3", "y4"] and facts["expected"] == 60.0


def test_odis_per_domain_and_missing_scores():
    t = _pool(["x", "x", "x", "y", "y", "y"], q_one=Q1, q_two=pa.array([1.0, None, 2, 3, 5, 6]))
    facts, picks = _run(ODiS(["q_one", "q_two"], per_domain=True), t, "docs", 2)
    assert facts["domain_budgets"] == {"x": 1, "y": 1} and set(facts["odis"]) == {"x", "y"}
    # x: q_two's null counts as x's mean, 1.5, so both columns rank x0 < x1 < x2: one axis, x2 on top;
    # y: the axes are fitted on y alone, where both columns rank y3 < y4 < y5
    assert picks == ["x2", "y5"] and facts["odis"]["x"]["explained_variance_ratio"] == [1.0]


def test_odis_on_scores_that_do_not_vary_takes_the_first_documents():
    t = _pool(["x"] * 4, q_one=[0.5] * 4)
    facts, picks = _run(ODiS(["q_one"]), t, "docs", 2)
    assert picks == ["x0", "x1"] and facts["odis"]["*"]["columns"] == []


def test_strategies_declare_what_the_select_phase_needs():
    for s, source, cols in ((FacilityLocation(), "embed", (S.EMB,)), (MaxMin(), "embed", (S.EMB,)), (ODiS(["q_a"]), "score", ("q_a",))):
        assert (s.needs_picks, s.needs_budget, s.max_copies, s.columns, s.source, s.pick_columns) == (True, True, 1, (S.DOC_ID,), source, cols)
        with pytest.raises(ValueError, match="needs a budget"):
            s.fit(DomainHistograms(16), None, None)
    with pytest.raises(ValueError, match="split"):
        MaxMin(split="by size")


def test_membership_by_digest():
    picked = np.sort(digests(["a", "b", "c"]))
    hit, _ = member(picked, digests(["c", "d", "a"]))
    assert hit.tolist() == [True, False, True]
    assert member(np.zeros(0, np.uint64), digests(["a"]))[0].tolist() == [False]


def test_the_join_keeps_valid_eligible_rows_and_tags_their_group():
    e = Eligible()
    e.add(pa.chunked_array([["d1", "d2"]]), np.array(["7", "3"]), np.array([0.25, 0.5]))
    e.add(pa.chunked_array([["d4"]]), np.array(["7"]), np.array([0.75]))
    digest, code, score = e.arrays(["3", "7"])
    batch = pa.table({
        S.DOC_ID: ["d1", "d2", "d3", "d4", "d1"],
        S.INVALID_REASON: [None, None, None, None, "duplicate id"],  # a repeated id's later row shares d1's digest
        S.N_TOKENS: [1, 2, 3, 4, 5],
    })
    out = tag_eligible(batch, digest, code, score, ["3", "7"])
    assert out.to_pydict() == {S.DOC_ID: ["d1", "d2", "d4"], S.N_TOKENS: [1, 2, 4], S.DOMAIN: ["7", "3", "7"], S.PICK_SCORE: [0.25, 0.5, 0.75]}


def test_pick_group_sorts_its_rows_so_shuffle_order_does_not_matter():
    t = _pool(["a"] * 5, emb=_arc(A))
    strategy = FacilityLocation(neighbors=5)
    _, picks = _run(strategy, t, "docs", 3)
    shuffled = t.take(pa.array([3, 0, 4, 2, 1]))
    assert pick_group(shuffled, strategy, {"a": 3}).column("doc_ids").to_pylist() == [picks] == [["a2", "a4", "a3"]]


def test_odis_columns_default_and_validation(tmp_path):
    (tmp_path / "data").mkdir()
    pq.write_table(pa.table({"q_heuristic": [0.1], "q_classifier": [0.2], "q_lang_score": [0.9], "q_rule_c4": ["x"], "sig_n_words": [3]}), tmp_path / "data" / "0.parquet")
    assert odis_columns([], tmp_path) == ["q_classifier", "q_heuristic"]  # not the language score, not a rule's reason
    assert odis_columns(["sig_n_words", "q_heuristic"], tmp_path) == ["sig_n_words", "q_heuristic"]
    with pytest.raises(JobError, match=r"selection.scores.1: 'q_nope' is not a column"):
        odis_columns(["q_heuristic", "q_nope"], tmp_path)
    with pytest.raises(JobError, match="not numeric"):
        odis_columns(["q_rule_c4"], tmp_path)
