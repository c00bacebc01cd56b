"""Skill-It's parts by hand: the skills graph, the target skills, and two rounds of multiplicative weights."""

from __future__ import annotations

import math

import numpy as np
import pytest

from thresher.operators.skillit import mixture, skills_graph, target_skills


def test_the_graph_is_each_target_skills_relative_loss_decrease_clipped_and_scaled_to_one():
    before = np.array([4.0, 2.0])
    after = np.array([[3.0, 2.2],  # skill 0: target 0 down 25%, target 1 up 10% (clipped to 0)
                      [4.0, 1.8]])  # skill 1: target 1 down 10%
    np.testing.assert_allclose(skills_graph(before, after), [[1.0, 0.0], [0.0, 0.4]])
    assert not skills_graph(before, np.array([[4.0, 2.0], [5.0, 3.0]])).any()  # nothing helps: all zero, the mixture is the prior


def test_target_texts_go_to_the_skill_whose_proxy_explains_them_best():
    losses = np.array([[3.0, 5.0, 4.0],
                       [4.0, 2.0, 4.5]])
    assert target_skills(losses).tolist() == [0, 1, 0]


def test_two_rounds_of_weights_on_a_two_skill_graph():
    graph = np.array([[1.0, 0.5],  # skill 0 teaches both targets, skill 1 only its own
                      [0.0, 1.0]])
    first = [np.ones(2)]  # the base's losses over themselves
    # round 1: A @ [1, 1] = [1.5, 1.0]; p ∝ exp(0.5 [1.5, 1.0])
    p1 = mixture(graph, first, eta=0.5, window=3)
    assert p1[0] == pytest.approx(math.exp(0.75) / (math.exp(0.75) + math.exp(0.5)))
    assert p1[0] == pytest.approx(0.562177, abs=1e-6)
    # after round 1 target 0's loss fell to 0.8 of the base's, target 1's did not move: summed [1.8, 2.0]; A @ that = [2.8, 2.0]
    second = first + [np.array([0.8, 1.0])]
    p2 = mixture(graph, second, eta=0.5, window=3)
    assert p2[0] == pytest.approx(1 / (1 + math.exp(-0.4)))
    assert p2[0] == pytest.approx(0.598688, abs=1e-6)
    # a window of 1 sees only the last evaluation: A @ [0.8, 1.0] = [1.3, 1.0]
    assert mixture(graph, second, eta=0.5, window=1)[0] == pytest.approx(1 / (1 + math.exp(-0.15)))
    # a prior multiplies in; a huge exponent does not overflow
    assert mixture(graph, first, eta=0.5, window=3, prior=np.array([0.0, 1.0])).tolist() == [0.0, 1.0]
    assert np.isfinite(mixture(graph, [np.full(2, 1e4)], eta=1.0, window=1)).all()
