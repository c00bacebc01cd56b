"""QuaDMix against values computed by hand from the paper's formulas."""

import math

import numpy as np
import pyarrow as pa
import pytest

from thresher.operators import schema as S
from thresher.operators.histogram import DomainHistograms
from thresher.operators.quadmix import QuaDMix, QuaDMixParams, merged_quality, sampling_value
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
    for k in ("x", "y"):
        assert np.array_equal(whole.tokens[k], parts.tokens[k])


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
