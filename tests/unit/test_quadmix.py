"""QuaDMix against values computed by hand from the paper's formulas."""

import math

import numpy as np
import pyarrow as pa
import pytest

from thresher.operators import schema as S
from thresher.operators.histogram import DomainHistograms
from thresher.operators.merged_quality import merged_quality
from thresher.operators.quadmix import QuaDMix, QuaDMixParams, sampling_value
from thresher.operators.selection import draw_copies


def test_sampling_value_hand_computed():
    # λ=10, ω=0.5, η=1, ε=0: best document 2/(1+e^-5), boundary exactly 1, beyond ω nothing.
    s = sampling_value(np.array([0.0, 0.5, 0.6]), lam=10, omega=0.5, eta=1, epsilon=0)
    assert s[0] == pytest.approx(2 / (1 + math.exp(-5)))
    assert s[0] == pytest.approx(1.9866142981514305)
    assert s[1] == pytest.approx(1.0)
    assert s[2] == 0.0


def test_sampling_value_eta_and_epsilon():
    # λ=4, ω=0.5, r̄=0.25: 2/(1+e^-1) = 1.4621171572600098, squared = 2.137786...; + ε = 0.1
    s = sampling_value(np.array([0.25, 0.75]), lam=4, omega=0.5, eta=2, epsilon=0.1)
    assert s[0] == pytest.approx(1.4621171572600098**2 + 0.1)
    assert s[1] == pytest.approx(0.1)


def test_copies_floor_plus_bernoulli():
    expected = np.array([1.3, 1.3, 2.0, 0.0, 0.25, 0.25])
    u = np.array([0.2, 0.5, 0.99, 0.0, 0.24, 0.26])
    assert draw_copies(expected, u).tolist() == [2, 1, 2, 0, 1, 0]


def test_token_weighted_midrank_percentile():
    # Three documents of one domain at bin centres (10 bins): q = .85, .45, .05 with 30, 20, 10 tokens.
    # r̄ = (tokens scoring higher + half its own) / 60  ->  15/60, 40/60, 55/60.
    h = DomainHistograms(bins=10)
    dom = np.array(["a", "a", "a"])
    q = np.array([0.85, 0.45, 0.05])
    h.add(dom, q, np.array([30, 20, 10]))
    r = h.top_fraction(dom, q, by_tokens=True)
    assert r.tolist() == pytest.approx([0.25, 40 / 60, 55 / 60])


def test_percentile_is_per_domain():
    h = DomainHistograms(bins=10)
    dom = np.array(["a", "b", "a", "b"])
    q = np.array([0.95, 0.15, 0.55, 0.05])
    h.add(dom, q, np.array([1, 1, 1, 1]))
    r = h.top_fraction(dom, q)
    # Each domain's best document sits at 0.25 whatever the other domain holds.
    assert r.tolist() == pytest.approx([0.25, 0.25, 0.75, 0.75])


def test_histograms_merge_equals_one_pass():
    rng = np.random.default_rng(0)
    dom = rng.choice(["x", "y"], 1000)
    q = rng.random(1000)
    tok = rng.integers(1, 100, 1000)
    whole = DomainHistograms(64).add(dom, q, tok)
    parts = DomainHistograms(64).add(dom[:300], q[:300], tok[:300]).merge(DomainHistograms(64).add(dom[300:], q[300:], tok[300:]))
    assert whole.keys == parts.keys == ["x", "y"]
    assert np.array_equal(whole.tokens, parts.tokens) and np.array_equal(whole.docs, parts.docs)


def test_merged_quality_is_alpha_weighted_mean():
    t = pa.table({"q_a": [1.0, 0.0], "q_b": [0.0, 0.5]})
    assert merged_quality(t, {"q_a": 3, "q_b": 1}).tolist() == pytest.approx([0.75, 0.125])


def _batch(domains, q, tokens):
    return pa.table({S.DOMAIN: domains, S.Q_HEURISTIC: q, S.N_TOKENS: tokens})


def test_quadmix_fit_and_transform_end_to_end():
    # Domain "0": q .85 (30 tok), .45 (20), .05 (10) -> r̄ .25, .667, .917 ; ω=0.7, λ=10, η=1.
    batch = _batch(["0", "0", "0"], [0.85, 0.45, 0.05], [30, 20, 10])
    qm = QuaDMix(QuaDMixParams(lam=10, omega=0.7, eta=1, epsilon=0))
    h = DomainHistograms(10)
    h.add(*qm.keys_and_scores(batch), np.array([30, 20, 10]))
    qm.fit(h, None, None)
    s, r = qm.transform(batch)
    expect = [2 / (1 + math.exp(-10 * (0.7 - 0.25))), 2 / (1 + math.exp(-10 * (0.7 - 40 / 60))), 0.0]
    assert r.tolist() == pytest.approx([0.25, 40 / 60, 55 / 60])
    assert s.tolist() == pytest.approx(expect)
    assert qm.scale_ == 1.0
    # A document budget of 1.5 scales every S by 1.5 / ΣS.
    qm.fit(h, "docs", 1.5)
    s2, _ = qm.transform(batch)
    assert s2.sum() == pytest.approx(1.5)
    assert qm.scale_ == pytest.approx(1.5 / sum(expect))


def test_quadmix_per_domain_parameters():
    batch = _batch(["0", "1"], [0.55, 0.55], [10, 10])
    qm = QuaDMix(QuaDMixParams(omega=1.0), {"1": QuaDMixParams(omega=0.0, epsilon=0.2)})
    h = DomainHistograms(10)
    h.add(*qm.keys_and_scores(batch), np.array([10, 10]))
    s, r = qm.fit(h, None, None).transform(batch)
    assert r.tolist() == pytest.approx([0.5, 0.5])
    assert s[0] == pytest.approx(2 / (1 + math.exp(-10 * 0.5)))
    assert s[1] == pytest.approx(0.2)  # beyond ω = 0: ε only


def _fit_one_domain(params, budget_unit, budget, max_copies=4):
    # Domain "0": q .85 (30 tok), .45 (20), .05 (10) at 10-bin centres -> r̄ 15/60, 40/60, 55/60.
    batch = _batch(["0", "0", "0"], [0.85, 0.45, 0.05], [30, 20, 10])
    qm = QuaDMix(params, max_copies=max_copies)
    h = DomainHistograms(10)
    h.add(*qm.keys_and_scores(batch), np.array([30, 20, 10]))
    return qm.fit(h, budget_unit, budget), batch


def test_budget_above_what_the_cap_allows_gives_every_document_the_cap():
    # ω = 0.7, ε = 0: the third document (r̄ 0.917) has S = 0; the other two can give at most 4 copies each.
    # One uncapped factor (c = 100 / (1.978 + 1.165) = 31.8) would give them 63 and 37 expected copies.
    qm, batch = _fit_one_domain(QuaDMixParams(lam=10, omega=0.7, eta=1, epsilon=0), "docs", 100)
    s, _ = qm.transform(batch)
    assert s.tolist() == pytest.approx([4.0, 4.0, 0.0])
    facts = qm.facts()
    assert facts["expected"] == pytest.approx(8.0)
    assert facts["shortfall"] == pytest.approx(92.0)
    assert facts["capped_share"] == pytest.approx(1.0)
    assert (facts["budget"], facts["unit"], facts["max_copies"], facts["pool"]) == (100, "docs", 4, 3.0)
    # In tokens: at most 4 x (30 + 20) = 200 of a 1,000-token budget.
    qm, _ = _fit_one_domain(QuaDMixParams(lam=10, omega=0.7, eta=1, epsilon=0), "tokens", 1000)
    assert qm.facts()["expected"] == pytest.approx(200.0)
    assert qm.facts()["shortfall"] == pytest.approx(800.0)


def test_cap_binds_on_one_document_and_the_scale_rises_to_meet_the_budget():
    # λ=10, ω=0.6, η=1, ε=0.5, max_copies 2, a budget of 4.2 documents:
    #   S0 = 2/(1+e^{-10(0.6-1/4)}) + 0.5 = 2.4414,  S1 = 2/(1+e^{-10(0.6-2/3)}) + 0.5 = 1.1785,  S2 = ε = 0.5
    # One factor would be c0 = 4.2 / ΣS = 1.0195, giving document 0 2.49 > 2 copies. With document 0 at the
    # cap the others must bring the rest: 2 + c (S1 + S2) = 4.2  ->  c = 2.2 / (S1 + S2) = 1.3107,
    # and c S1 = 1.545 < 2, so no other document reaches the cap.
    params = QuaDMixParams(lam=10, omega=0.6, eta=1, epsilon=0.5)
    qm, batch = _fit_one_domain(params, "docs", 4.2, max_copies=2)
    s0, s1, s2 = sampling_value(np.array([0.25, 40 / 60, 55 / 60]), 10, 0.6, 1, 0.5)
    assert s0 == pytest.approx(2 / (1 + math.exp(-3.5)) + 0.5)
    assert s2 == 0.5
    c = 2.2 / (s1 + s2)
    assert qm.scale_ == pytest.approx(c, rel=1e-12)
    s, _ = qm.transform(batch)
    assert s.tolist() == pytest.approx([2.0, c * s1, c * s2], rel=1e-12)
    assert s.sum() == pytest.approx(4.2, rel=1e-12)
    assert qm.facts()["shortfall"] == 0.0
    assert qm.facts()["capped_share"] == pytest.approx(2 / 4.2)


@pytest.mark.parametrize(
    "budget, scale",
    [
        # s = 3, 2, 1, 0 with weights 1, 2, 1, 5 and cap 2.
        (3.0, 3 / 8),  # no cap binds: c = 3 / Σ s w = 3 / 8
        (6.0, 0.8),  # the first cell capped: 2·1 + c (2·2 + 1·1) = 6
        (7.5, 1.5),  # the first two capped: 2·(1 + 2) + c·1 = 7.5
        (8.0, 2.0),  # every cell with s > 0 at the cap: 2·(1 + 2 + 1) = 8
        (9.0, 2.0),  # the same, 1 short
    ],
)
def test_capped_scale_kinks(budget, scale):
    from thresher.operators.quadmix import capped_scale

    s, w = np.array([1.0, 3.0, 0.0, 2.0]), np.array([1.0, 1.0, 5.0, 2.0])
    c = capped_scale(s, w, budget, cap=2.0)
    assert c == pytest.approx(scale, rel=1e-12)
    assert np.minimum(c * s, 2.0) @ w == pytest.approx(min(budget, 8.0), rel=1e-12)


def test_no_budget_still_caps():
    # η = 3: the best document's S = (2/(1+e^{-4.5}))^3 = 7.74 > max_copies 4; c stays 1.
    qm, batch = _fit_one_domain(QuaDMixParams(lam=10, omega=0.7, eta=3, epsilon=0), None, None)
    s, _ = qm.transform(batch)
    assert qm.scale_ == 1.0
    assert s[0] == 4.0
    assert s[1] == pytest.approx((2 / (1 + math.exp(-10 * (0.7 - 40 / 60)))) ** 3)
    assert qm.facts()["shortfall"] == 0.0 and qm.facts()["budget"] is None


def _reference_top_fraction(hist, row, scores):
    """The per-domain formula as the dict-of-arrays histograms computed it."""
    w = hist.tokens[row]
    total = w.sum()
    above = total - np.cumsum(w)
    idx = hist.bin_of(scores)
    return (above[idx] + w[idx] * (1.0 - (scores * hist.bins - idx))) / max(total, 1e-300)


def test_vectorised_fit_and_transform_match_the_per_domain_loop():
    rng = np.random.default_rng(5)
    n = 4000
    domains = rng.choice([f"d{i}" for i in range(7)], n)
    batch = pa.table(
        {S.DOMAIN: domains, S.Q_HEURISTIC: rng.random(n), S.Q_CLASSIFIER: rng.beta(2, 5, n), S.N_TOKENS: rng.integers(1, 500, n)}
    )
    per_domain = {
        "d1": QuaDMixParams(lam=5, omega=0.8, alpha={S.Q_HEURISTIC: 1.0, S.Q_CLASSIFIER: 3.0}),
        "d4": QuaDMixParams(eta=2, epsilon=0.1),
        "absent": QuaDMixParams(omega=0.1),
    }
    qm = QuaDMix(QuaDMixParams(omega=0.6), per_domain)
    hist = DomainHistograms(64)
    tokens = np.asarray(batch.column(S.N_TOKENS))
    hist.add(*qm.keys_and_scores(batch), tokens)
    budget = 0.3 * tokens.sum()
    qm.fit(hist, "tokens", budget)
    assert qm.facts()["capped_share"] == 0.0  # no cap binds: the one-factor answer is the answer

    # The former fit: one pass over the bin centres per domain, S summed domain by domain.
    centres = (np.arange(hist.bins) + 0.5) / hist.bins
    unscaled = 0.0
    for row, key in enumerate(hist.keys):
        p = qm.params(key)
        s = sampling_value(_reference_top_fraction(hist, row, centres), p.lam, p.omega, p.eta, p.epsilon)
        unscaled += float((s * hist.tokens[row]).sum())
    assert qm.scale_ == pytest.approx(budget / unscaled, rel=1e-12)
    assert qm.facts()["expected"] == pytest.approx(budget, rel=1e-12)

    # The former transform: merged quality, percentile and S, domain by domain.
    s, r = qm.transform(batch)
    for row, key in enumerate(hist.keys):
        m = domains == key
        p = qm.params(key)
        q = merged_quality(batch.filter(pa.array(m)), p.alpha)
        r_ref = _reference_top_fraction(hist, row, q)
        assert r[m] == pytest.approx(r_ref, rel=1e-12, abs=1e-15)
        assert s[m] == pytest.approx(sampling_value(r_ref, p.lam, p.omega, p.eta, p.epsilon) * qm.scale_, rel=1e-12, abs=1e-15)


def test_columns_and_unknown_domains():
    qm = QuaDMix(QuaDMixParams(), {"1": QuaDMixParams(alpha={S.Q_CLASSIFIER: 1.0})})
    assert qm.columns == tuple(sorted({S.Q_HEURISTIC, S.Q_CLASSIFIER}))
    assert qm.needs_budget is False
    with pytest.raises(ValueError):
        QuaDMix(max_copies=0)
    with pytest.raises(ValueError):
        QuaDMix(QuaDMixParams(alpha={S.Q_HEURISTIC: 0.0}))
    fitted, _ = _fit_one_domain(QuaDMixParams(epsilon=0.3), None, None)
    s, r = fitted.transform(_batch(["0", "never seen"], [0.5, 0.5], [1, 1]))
    assert s[1] == 0.0 and np.isnan(r[1])  # the budget was fitted without that domain
