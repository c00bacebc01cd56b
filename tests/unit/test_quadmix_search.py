"""QuaDMix search on a proxy loss that is a known function of the parameters: the regressor ranks and the choice lands near the optimum."""

from __future__ import annotations

import numpy as np
import pytest

from thresher.operators.quadmix_search import ParamSpace, Proposal, SearchResult, best_predicted, choose, fit_regressor, pick_finalist, topk_omega


def known_loss(space: ParamSpace, x: np.ndarray) -> np.ndarray:
    """Lowest at ω = 0.3 and α(q_a) = 0.8 in domain "0"; the other parameters do not matter."""
    names = space.feature_names()
    omega, alpha_a = x[:, names.index("0:omega")], x[:, names.index("0:alpha.q_a")]
    return (omega - 0.3) ** 2 + (alpha_a - 0.8) ** 2


def test_draws_follow_the_documented_ranges():
    space = ParamSpace(("0", "1"), ("q_a", "q_b", "q_c"))
    x = space.draw(2000, np.random.default_rng(0))
    assert x.shape == (2000, space.width) == (2000, 2 * (3 + 4))
    names = space.feature_names()
    for d in ("0", "1"):
        alpha = x[:, [names.index(f"{d}:alpha.{c}") for c in ("q_a", "q_b", "q_c")]]
        assert np.allclose(alpha.sum(axis=1), 1.0) and alpha.min() >= 0
        lam = np.exp(x[:, names.index(f"{d}:log_lam")])
        assert 1.0 <= lam.min() and lam.max() <= 100.0 and np.median(lam) == pytest.approx(10.0, rel=0.25)  # log-uniform: median sqrt(1*100)
        omega = x[:, names.index(f"{d}:omega")]
        assert 0.0 <= omega.min() and omega.max() <= 1.0
    p = space.params(x[0])["1"]
    assert set(p.alpha) == {"q_a", "q_b", "q_c"} and p.lam == pytest.approx(np.exp(x[0, names.index("1:log_lam")]))


def test_the_search_finds_a_known_optimum():
    space = ParamSpace(("0",), ("q_a", "q_b"))
    rng = np.random.default_rng(1)
    x = space.draw(160, rng)
    fit = fit_regressor(x, known_loss(space, x), seed=1)
    assert fit.heldout_spearman >= 0.8, fit.heldout_spearman
    chosen, predicted = choose(Proposal(space), fit, rng, candidates=20_000, top_k=64)
    params = space.params(chosen)["0"]
    assert abs(params.omega - 0.3) < 0.1 and abs(params.alpha["q_a"] - 0.8) < 0.1, params
    assert known_loss(space, chosen[None, :])[0] < np.quantile(known_loss(space, x), 0.05)  # better than 95% of the runs
    assert predicted == pytest.approx(known_loss(space, chosen[None, :])[0], abs=0.05)


def test_a_later_round_runs_draws_near_the_optimum():
    space = ParamSpace(("0", "1", "2"), ("q_a", "q_b"))  # 18 dimensions, 2 of which matter
    rng = np.random.default_rng(3)
    first = space.draw(40, rng)
    fit = fit_regressor(first, known_loss(space, first), seed=3)
    nxt = best_predicted(Proposal(space), fit, rng, candidates=5000, n=40)
    assert nxt.shape == first.shape
    assert np.median(known_loss(space, nxt)) < 0.5 * np.median(known_loss(space, first))  # the second round samples where the loss is low
    again = best_predicted(Proposal(space), fit, np.random.default_rng(7), candidates=5000, n=40)
    assert np.median(known_loss(space, again)) < 0.5 * np.median(known_loss(space, first))


def test_a_search_result_round_trips(tmp_path):
    space = ParamSpace(("a", "b"), ("q",))
    chosen = space.draw(1, np.random.default_rng(2))[0]
    result = SearchResult(space.domains, space.columns, tuple(chosen.tolist()), 3.2, 3.3, 0.9, 64, {})
    result.save(tmp_path / "search.json")
    again = SearchResult.load(tmp_path / "search.json")
    assert again == result and again.params() == space.params(chosen)


def test_too_few_runs_is_refused():
    space = ParamSpace(("0",), ("q",))
    x = space.draw(5, np.random.default_rng(0))
    with pytest.raises(ValueError, match="at least 10 proxy runs"):
        fit_regressor(x, np.zeros(5), seed=0)


def test_the_validation_split_is_by_text_disjoint_and_near_its_share():
    from thresher.operators.quadmix_search import split_validation

    texts = [f"document number {i}" for i in range(1000)]
    search, held = split_validation(texts, 0.3, seed=0)
    assert sorted(search + held) == sorted(texts) and not set(search) & set(held)
    assert 250 <= len(held) <= 350
    assert split_validation(list(reversed(texts)), 0.3, seed=0)[1] == list(reversed(held))  # by text, not position
    assert split_validation(texts, 0.3, seed=1)[1] != held
    assert split_validation(texts, 0.0, seed=0) == (texts, [])
    assert [len(p) for p in split_validation(["a", "b"], 0.01, seed=0)] == [1, 1]  # two texts: one each side
    assert split_validation(["a"], 0.3, seed=0) == (["a"], [])


def test_topk_omega_by_hand():
    # Domains 0 and 1; scores 0.9 (d0, 2 tokens), 0.8 (d1, 3), 0.7 (d0, 4), 0.1 (d1, 1). A budget of 5 tokens is filled by
    # the first two (2 + 3): domain 0 gives 2 of its 6 tokens, domain 1 all 3 of its 4 -> ω* = (1/3, 3/4).
    # A budget of 6 reaches into the third document (the one crossing the budget is taken): (6/6, 3/4).
    domain, score, weight = np.array([0, 1, 0, 1]), np.array([0.9, 0.8, 0.7, 0.1]), np.array([2.0, 3.0, 4.0, 1.0])
    assert topk_omega(domain, score, weight, 5.0, 2).tolist() == pytest.approx([1 / 3, 3 / 4])
    assert topk_omega(domain, score, weight, 6.0, 2).tolist() == pytest.approx([1.0, 3 / 4])
    assert topk_omega(domain, score, weight, 5.0, 3).tolist() == pytest.approx([1 / 3, 3 / 4, 0.0])  # an empty domain


def test_an_anchor_makes_quadmix_select_what_top_k_selects():
    import pyarrow as pa

    from thresher.operators import schema as S
    from thresher.operators.histogram import DomainHistograms
    from thresher.operators.quadmix import QuaDMix, QuaDMixParams
    from thresher.operators.selection import TopK, select

    rng = np.random.default_rng(0)
    n = 4000
    domain = rng.integers(0, 4, n)
    q = np.clip(rng.beta(2, 5, n) + 0.15 * domain, 0, 1)  # domains differ in quality: top-k takes unevenly
    tokens = rng.integers(50, 500, n)
    table = pa.table({S.DOC_ID: [f"d{i}" for i in range(n)], S.DOMAIN: [str(d) for d in domain], "q_a": q, "q_b": rng.uniform(0, 1, n),
                      S.N_TOKENS: tokens, S.INVALID_REASON: pa.nulls(n, pa.string())})
    budget = 0.2 * tokens.sum()
    space = ParamSpace(("0", "1", "2", "3"), ("q_a", "q_b"))
    vector = space.anchor("q_a", topk_omega(domain, q, tokens.astype(float), budget, 4))

    def picked(strategy) -> set[int]:
        hist = DomainHistograms(1000)
        hist.add(*strategy.keys_and_scores(table), tokens)
        strategy.fit(hist, "tokens", budget)
        return set(np.flatnonzero(select(table, strategy, 0, []).column(S.SEL_COPIES).to_numpy() > 0).tolist())

    quadmix = picked(QuaDMix(QuaDMixParams(alpha={"q_a": 1.0, "q_b": 1.0}), space.params(vector), max_copies=4))
    topk = picked(TopK({"q_a": 1.0}))
    assert len(quadmix & topk) / len(quadmix | topk) >= 0.9, (len(quadmix), len(topk), len(quadmix & topk))


def test_anchored_draws_lie_on_lines_from_the_anchors_and_in_the_ranges():
    space = ParamSpace(("0", "1", "2"), ("q_a", "q_b"))
    star = (0.9, 0.1, 0.0)
    proposal = Proposal(space, (("q_a", star),), tied_omega=0.2, anchored=0.5)
    x = proposal.draw(1000, np.random.default_rng(0))
    assert x.shape == (1000, space.width)
    names = space.feature_names()
    col = {n: x[:, names.index(n)] for n in names}
    on = slice(0, 500)  # the anchored half comes first
    beta = (col["0:omega"][on] - 0.9) / (0.2 - 0.9)
    for d, w in zip(("1", "2"), star[1:]):
        assert np.allclose(col[f"{d}:omega"][on], (1 - beta) * w + beta * 0.2)  # one β moves every domain toward ω̄
        for p in ("log_lam", "eta", "epsilon", "alpha.q_a"):
            assert np.allclose(col[f"{d}:{p}"][on], col[f"0:{p}"][on])  # tied across domains
    assert 0 <= beta.min() and beta.max() <= 1 and beta.std() > 0.2
    assert not np.allclose(col["1:omega"][500:], col["0:omega"][500:])  # the rest: independent per domain
    for v in x:
        for p in space.params(v).values():
            assert 1.0 - 1e-9 <= p.lam <= 100.0 + 1e-9 and 0 <= p.omega <= 1 and 0.25 <= p.eta <= 3.0 and 0 <= p.epsilon <= 0.05
            assert sum(p.alpha.values()) == pytest.approx(1.0)
    point = proposal.anchor_points()[0]
    params = space.params(point)
    assert [params[d].omega for d in ("0", "1", "2")] == pytest.approx(list(star)) and params["0"].alpha == {"q_a": 1.0, "q_b": 0.0}
    assert params["0"].lam == pytest.approx(100.0) and params["0"].eta == 0.25 and params["0"].epsilon == 0.0
    assert Proposal(space).draw(10, np.random.default_rng(0)).tolist() == space.draw(10, np.random.default_rng(0)).tolist()


def test_the_winner_is_the_widest_finalist_within_one_standard_error():
    # Means 5.0, 5.05, 5.5; the best's standard error sd([4.9, 5.0, 5.1]) / sqrt(3) = 0.1 / 1.732 = 0.0577.
    losses = np.array([[4.9, 5.0, 5.1], [5.05, 5.05, 5.05], [5.5, 5.5, 5.5]])
    entropy = np.array([0.6, 0.8, 0.9])
    assert pick_finalist(losses, entropy, diverse=True) == 1  # 5.05 <= 5.0577 and wider; 5.5 is beyond
    assert pick_finalist(losses, entropy, diverse=False) == 0
    assert pick_finalist(losses, np.array([0.9, 0.8, 0.95]), diverse=True) == 0  # the lowest is also the widest
    assert pick_finalist(np.array([[np.nan, 1.0], [3.0, 3.0]]), np.array([1.0, 0.0]), diverse=True) == 1  # selected nothing once: out
    assert pick_finalist(losses[:, :1], entropy, diverse=True) == 0  # one seed: no standard error, the lowest wins


def test_with_per_text_losses_the_standard_error_is_of_the_paired_difference():
    # Three finalists on 4 held-out texts. A = [1, 2, 3, 4] (mean 2.5) is lowest.
    # B - A = [.1, .1, 0, .2]: mean .1, sd sqrt(.02 / 3) = .0816, se .0408 -> beyond.
    # C - A = [0, .1, -.1, .1]: mean .025, sd sqrt(.0275 / 3) = .0957, se .0479 -> within, and wider than A: C wins.
    per_doc = np.array([[1, 2, 3, 4], [1.1, 2.1, 3.0, 4.2], [1.0, 2.1, 2.9, 4.1]])
    losses = per_doc.mean(axis=1, keepdims=True)  # one seed
    assert pick_finalist(losses, np.array([0.5, 0.9, 0.7]), True, per_doc) == 2
    assert pick_finalist(losses, np.array([0.5, 0.9, 0.4]), True, per_doc) == 0  # C within but narrower
    assert pick_finalist(losses, np.array([0.5, 0.9, 0.7]), False, per_doc) == 0
