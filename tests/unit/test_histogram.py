"""DomainHistograms: integer domain codes, mid-rank percentiles, merge and save, on hand-checked inputs."""

import pickle

import numpy as np
import pytest

from thresher.operators.histogram import DomainHistograms


def _three_domains() -> DomainHistograms:
    # 4 bins. "b": q .875 (3 tokens) and .125 (1 token); "a": q .625 (2 tokens). All at bin centres.
    return DomainHistograms(bins=4).add(np.array(["b", "a", "b"]), np.array([0.875, 0.625, 0.125]), np.array([3, 2, 1]))


def test_keys_are_sorted_and_codes_mark_unknown_domains():
    h = _three_domains()
    assert h.keys == ["a", "b"]
    assert h.codes(np.array(["b", "zz", "a", "", "b"])).tolist() == [1, -1, 0, -1, 1]
    assert h.docs.tolist() == [[0, 0, 1, 0], [1, 0, 0, 1]]
    assert h.tokens.tolist() == [[0, 0, 2, 0], [1, 0, 0, 3]]
    assert DomainHistograms(4).codes(["a"]).tolist() == [-1]


def test_top_fraction_hand_computed():
    h = _three_domains()
    dom = np.array(["b", "a", "b", "b", "b", "c"])
    q = np.array([0.875, 0.625, 0.125, 1.0, 0.8, 0.5])
    # By tokens, "b" holds 4: .875 -> half its own 3 = 1.5/4; .125 -> 3 above + half of 1 = 3.5/4.
    # "a" alone: half of itself, 1/2. q = 1.0 is the top edge of bin 3: 0. q = .8 sits 0.2 into bin 3,
    # so 0.8 of the bin's 3 tokens score above it: 2.4/4. "c" was never added: NaN.
    r = h.top_fraction(dom, q, by_tokens=True)
    assert r[:5].tolist() == pytest.approx([0.375, 0.5, 0.875, 0.0, 0.6])
    assert np.isnan(r[5])
    # By documents "b" holds 2: .875 -> 0.5/2, .125 -> 1.5/2.
    assert h.top_fraction(dom[:3], q[:3], by_tokens=False).tolist() == pytest.approx([0.25, 0.5, 0.75])
    # The same through codes, broadcast: every domain at every bin centre.
    grid = h.top_fraction_at(np.arange(2)[:, None], (np.arange(4) + 0.5) / 4)
    assert grid == pytest.approx(np.array([[1.0, 1.0, 0.5, 0.0], [0.875, 0.75, 0.75, 0.375]]))


def test_ranks_follow_later_adds():
    h = _three_domains()
    assert h.top_fraction(["a"], [0.625]).tolist() == [0.5]
    h.add(np.array(["a"]), np.array([0.875]), np.array([2]))  # now 2 of a's 4 tokens score above
    assert h.top_fraction(["a"], [0.625]).tolist() == [0.75]


def test_state_does_not_depend_on_the_order_batches_arrive_in():
    rng = np.random.default_rng(1)
    dom = rng.choice(["k", "c", "x", "a"], 600)
    q, tok = rng.random(600), rng.integers(0, 50, 600)
    forward = DomainHistograms(32)
    for i in range(0, 600, 100):
        forward.add(dom[i : i + 100], q[i : i + 100], tok[i : i + 100])
    backward = DomainHistograms(32)
    for i in reversed(range(0, 600, 100)):
        backward.merge(DomainHistograms(32).add(dom[i : i + 100], q[i : i + 100], tok[i : i + 100]))
    assert forward.keys == backward.keys == ["a", "c", "k", "x"]
    assert np.array_equal(forward.docs, backward.docs) and np.array_equal(forward.tokens, backward.tokens)


def test_merge_aligns_domains_by_name():
    left = DomainHistograms(4).add(np.array(["c", "a"]), np.array([0.1, 0.9]), np.array([5, 7]))
    right = DomainHistograms(4).add(np.array(["b", "c"]), np.array([0.3, 0.1]), np.array([2, 1]))
    left.merge(right)
    assert left.keys == ["a", "b", "c"]
    assert left.tokens.tolist() == [[0, 0, 0, 7], [0, 2, 0, 0], [6, 0, 0, 0]]
    assert left.docs.tolist() == [[0, 0, 0, 1], [0, 1, 0, 0], [2, 0, 0, 0]]
    with pytest.raises(ValueError):
        left.merge(DomainHistograms(8))


def test_save_and_load_round_trip(tmp_path):
    h = _three_domains()
    h.add(np.array(["a"]), np.array([0.3]), np.array([0]))  # a document without tokens still counts as one
    h.save(tmp_path / "histograms.json")
    back = DomainHistograms.load(tmp_path / "histograms.json")
    assert back.bins == 4 and back.keys == h.keys
    assert np.array_equal(back.docs, h.docs) and np.array_equal(back.tokens, h.tokens)
    DomainHistograms(16).save(tmp_path / "empty.json")
    assert DomainHistograms.load(tmp_path / "empty.json").docs.shape == (0, 16)


def test_pickles_without_its_cache():
    h = _three_domains()
    r = h.top_fraction(["b", "a"], [0.875, 0.625])
    back = pickle.loads(pickle.dumps(h))
    assert back._cache == {} and h._cache
    assert np.array_equal(back.top_fraction(["b", "a"], [0.875, 0.625]), r)
