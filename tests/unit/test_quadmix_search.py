"""QuaDMix search on a proxy loss that is a known function of the parameters: the regressor ranks and the choice lands near the optimum."""

from __future__ import annotations

import numpy as np
import pytest

from thresher.operators.quadmix_search import ParamSpace, SearchResult, best_predicted, choose, fit_regressor


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
    chosen, predicted = choose(space, fit, rng, candidates=20_000, top_k=64)
    params = space.params(chosen)["0"]
    assert abs(params.omega - 0.3) < 0.1 and abs(params.alpha["q_a"] - 0.8) < 0.1, params
    assert known_loss(space, chosen[None, :])[0] < np.quantile(known_loss(space, x), 0.05)  # better than 95% of the runs
    assert predicted == pytest.approx(known_loss(space, chosen[None, :])[0], abs=0.05)


def test_a_later_round_runs_draws_near_the_optimum():
    space = ParamSpace(("0", "1", "2"), ("q_a", "q_b"))  # 18 dimensions, 2 of which matter
    rng = np.random.default_rng(3)
    first = space.draw(40, rng)
    fit = fit_regressor(first, known_loss(space, first), seed=3)
    nxt = best_predicted(space, fit, rng, candidates=5000, n=40)
    assert nxt.shape == first.shape
    assert np.median(known_loss(space, nxt)) < 0.5 * np.median(known_loss(space, first))  # the second round samples where the loss is low
    again = best_predicted(space, fit, np.random.default_rng(7), candidates=5000, n=40)
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
