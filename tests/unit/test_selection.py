import numpy as np
import pyarrow as pa
import pytest

from thresher.operators import schema as S
from thresher.operators.histogram import DomainHistograms
from thresher.operators.selection import ThresholdFilter, TopK, Uniform, filter_reasons, select, uniform_from_ids


def test_uniform_from_ids_is_a_function_of_seed_and_id_only():
    ids = [f"doc-{i}" for i in range(20000)]
    u = uniform_from_ids(7, ids)
    assert np.array_equal(u, uniform_from_ids(7, ids))
    assert np.array_equal(u[5:10], uniform_from_ids(7, ids[5:10]))  # batch boundaries do not matter
    assert not np.array_equal(u, uniform_from_ids(8, ids))
    assert 0.0 <= u.min() and u.max() < 1.0
    assert abs(u.mean() - 0.5) < 0.01
    assert abs(np.mean(u < 0.1) - 0.1) < 0.01


def _scored(q, tokens=None):
    n = len(q)
    return pa.table(
        {
            S.DOC_ID: [f"d{i}" for i in range(n)],
            S.INVALID_REASON: pa.nulls(n, pa.string()),
            S.Q_HEURISTIC: q,
            S.N_TOKENS: tokens or [1] * n,
            S.DOMAIN: ["0"] * n,
        }
    )


def _fitted(strategy, batch, unit, amount, bins=10):
    h = DomainHistograms(bins)
    keys, scores = strategy.keys_and_scores(batch)
    h.add(keys, scores, np.asarray(batch.column(S.N_TOKENS)))
    return strategy.fit(h, unit, amount)


def test_topk_selects_the_best_documents():
    batch = _scored([0.05, 0.95, 0.55, 0.35, 0.75])
    topk = _fitted(TopK({S.Q_HEURISTIC: 1.0}), batch, "docs", 2)
    out = select(batch, topk, seed=0, filters=[])
    assert out.column(S.SEL_COPIES).to_pylist() == [0, 1, 0, 0, 1]


def test_topk_token_budget():
    batch = _scored([0.05, 0.95, 0.55], tokens=[100, 10, 50])
    topk = _fitted(TopK({S.Q_HEURISTIC: 1.0}), batch, "tokens", 60)
    assert select(batch, topk, 0, []).column(S.SEL_COPIES).to_pylist() == [0, 1, 1]


def test_uniform_rate_and_budget():
    n = 20000
    batch = _scored(list(np.linspace(0, 1, n)))
    uni = _fitted(Uniform(), batch, "docs", 5000, bins=64)
    assert uni.rate_ == pytest.approx(0.25)
    copies = np.asarray(select(batch, uni, 3, []).column(S.SEL_COPIES))
    assert abs(copies.sum() - 5000) < 4 * np.sqrt(n * 0.25 * 0.75)


def test_filters_and_invalid_rows_get_reasons():
    batch = _scored([0.9, 0.1, 0.8])
    batch = batch.set_column(1, S.INVALID_REASON, pa.array([None, None, "empty text"]))
    f = [ThresholdFilter(S.Q_HEURISTIC, min=0.5)]
    assert filter_reasons(batch, f).tolist() == [None, f"filter: {S.Q_HEURISTIC} < 0.5", None]
    uni = _fitted(Uniform(), batch, "docs", 100)
    out = select(batch, uni, 0, f)
    assert out.column(S.SEL_REASON).to_pylist() == [None, f"filter: {S.Q_HEURISTIC} < 0.5", "empty text"]
    assert out.column(S.SEL_COPIES).to_pylist()[1:] == [0, 0]


def test_flag_filters_exclude_with_the_decision_as_reason():
    from thresher.operators.selection import FlagFilter

    batch = pa.table(
        {
            "q_rule_c4": pa.array([None, "c4_lorem_ipsum", None, "c4_javascript"]),
            "d_exact_dup": pa.array([False, True, True, None]),
            "q": [0.9, 0.9, 0.1, 0.9],
        }
    )
    filters = [FlagFilter("q_rule_c4"), FlagFilter("d_exact_dup"), ThresholdFilter("q", min=0.5)]
    assert filter_reasons(batch, filters).tolist() == [None, "q_rule_c4: c4_lorem_ipsum", "d_exact_dup", "q_rule_c4: c4_javascript"]


def test_topk_takes_the_whole_pool_and_reports_the_shortfall():
    batch = _scored([0.05, 0.95, 0.55], tokens=[100, 10, 50])
    topk = _fitted(TopK({S.Q_HEURISTIC: 1.0}), batch, "docs", 10)
    assert select(batch, topk, 0, []).column(S.SEL_COPIES).to_pylist() == [1, 1, 1]
    assert topk.facts() == {"budget": 10, "unit": "docs", "expected": 3.0, "shortfall": 7.0, "max_copies": 1, "pool": 3.0, "threshold": None}
    # 60 of 160 tokens: the budget is met, no shortfall.
    facts = _fitted(TopK({S.Q_HEURISTIC: 1.0}), batch, "tokens", 60).facts()
    assert (facts["expected"], facts["shortfall"], facts["pool"]) == (60, 0, 160.0)


def test_topk_threshold_interpolates_inside_the_bin():
    # 10 bins, one document each in bins 0, 3, 5, 7, 9. A budget of 2.5 documents takes bins 9 and 7,
    # then half of bin 5: threshold = (5 + 1 - 0.5) / 10.
    topk = _fitted(TopK({S.Q_HEURISTIC: 1.0}), _scored([0.05, 0.95, 0.55, 0.35, 0.75]), "docs", 2.5)
    assert topk.threshold_ == pytest.approx(0.55)
    assert topk.facts()["expected"] == 2.5


def test_uniform_never_repeats_a_document():
    batch = _scored([0.5, 0.5, 0.5], tokens=[10, 20, 30])
    uni = _fitted(Uniform(), batch, "docs", 5)
    assert uni.rate_ == 1.0
    assert select(batch, uni, 0, []).column(S.SEL_COPIES).to_pylist() == [1, 1, 1]
    assert uni.facts() == {"budget": 5, "unit": "docs", "expected": 3.0, "shortfall": 2.0, "max_copies": 1, "pool": 3.0, "rate": 1.0}
    half = _fitted(Uniform(), batch, "tokens", 30)
    assert (half.rate_, half.facts()["shortfall"]) == (0.5, 0.0)
    assert _fitted(Uniform(), batch, "tokens", 100).facts()["shortfall"] == 40.0


def test_strategies_declare_their_columns_and_budget_needs():
    from thresher.operators.dsir import DSIRResample
    from thresher.operators.quadmix import QuaDMix, QuaDMixParams

    cases = [
        (QuaDMix(QuaDMixParams(alpha={"q_b": 1.0, "q_a": 2.0})), ("q_a", "q_b"), False, 4),
        (TopK({"q_c": 1.0}), ("q_c",), True, 1),
        (Uniform(), (), True, 1),
        (DSIRResample(), (S.DOC_ID, S.U_DSIR), True, 1),
    ]
    for strategy, columns, needs_budget, max_copies in cases:
        assert (strategy.columns, strategy.needs_budget, strategy.max_copies) == (columns, needs_budget, max_copies)
    for strategy in (TopK({S.Q_HEURISTIC: 1.0}), Uniform(), DSIRResample()):
        with pytest.raises(ValueError, match="needs a budget"):
            strategy.fit(DomainHistograms(10), None, None)


def test_a_value_filter_keeps_listed_values_only():
    from thresher.operators.selection import ValueFilter

    batch = pa.table({"lang": pa.array(["en", "de", None, "fr", "en"])})
    f = ValueFilter("lang", ("en", "fr"))
    why = "filter: lang not in ['en', 'fr']"
    assert filter_reasons(batch, [f]).tolist() == [None, why, why, None, None]  # a null language is not in any list


def test_topk_cut_inside_a_tie_meets_the_budget_in_expectation():
    # 540 documents share the top score, 60 the bottom: a budget of 60 cuts inside the tie. Every tied document lies in
    # the boundary bin and is taken with probability 60 / 540 (a cut inside the tie used to take all 540).
    n = 600
    batch = _scored([0.0 if i % 10 == 0 else 1.0 for i in range(n)])
    topk = _fitted(TopK({S.Q_HEURISTIC: 1.0}), batch, "docs", 60, bins=100)
    assert topk.cut_bin_ == 99 and topk.cut_rate_ == pytest.approx(60 / 540)
    copies = np.asarray(select(batch, topk, 0, []).column(S.SEL_COPIES))
    assert abs(copies.sum() - 60) < 4 * np.sqrt(540 * (1 / 9) * (8 / 9)) and copies[::10].sum() == 0
    # the tie held in full: 540 + half of the 60 at the bottom
    topk = _fitted(TopK({S.Q_HEURISTIC: 1.0}), batch, "docs", 570, bins=100)
    copies = np.asarray(select(batch, topk, 0, []).column(S.SEL_COPIES))
    assert copies[np.arange(n) % 10 != 0].sum() == 540 and topk.cut_rate_ == pytest.approx(0.5)
