"""Skill-It (Chen et al. 2023, "Skill-it! A Data-Driven Skills Framework", arXiv 2307.14430): a mixture over skills that follows the skills graph.

A skill is a group of the pool (a k-means cluster or an input column's value).
The skills graph A (k training skills x m target skills) says how much
training on skill i lowers the loss of target skill j. Skill-It's online
selection (Algorithm 1, the reference code's multiplicative-weights trainer)
evaluates the target skills' losses, trains a round, evaluates again...;
before each round it sets the mixture to

    p ∝ prior ⊙ exp(eta · A · Σ_{τ in the last `window` evaluations} L_τ)

so a skill whose targets are still badly learned, or that feeds many of
them, gets more of the next round.

The parts here are pure: `skills_graph`, `target_skills`, `mixture`, and the
`SkillIt` strategy that applies the shares the rounds ended with to the whole
pool (`pipeline/search.py`, `refine_skillit`, runs the rounds on a sample).

Deviations that batch curation forces, all deliberate:
- The graph is estimated with proxies, not the model being trained: a base
  proxy trained on `graph_docs` documents of every skill, and per skill i a
  proxy trained on the base plus `graph_docs` more of skill i (the paper's
  brute-force estimate, "train on skill i for H steps from the current
  model", with the base as the current model). A_ij is target skill j's
  relative loss decrease, clipped at 0 and scaled so the largest entry is 1
  (the reference's synthetic graphs have entries 1 and 0.5; the scale makes
  eta mean the same across proxies and corpora).
- The target is one validation corpus. Its texts are split into target
  skills by the skill whose proxy (trained on that skill's documents alone)
  gives them the lowest loss; skills no target text falls into are not
  target columns (the reference's target mask). A target that is all one
  kind gives m = 1, the paper's single-target setting.
- Losses are divided by the base proxy's (the reference's `normalize_loss`),
  so the first evaluation is 1 for every target skill and eta is unitless.
- "Training" in round t is a proxy trained on everything selected in rounds
  1..t; the selection is the union of the rounds, each taking budget / T by
  its mixture. The shares the strategy applies to the pool are the fractions
  each skill contributed over all rounds. Inside a skill documents are drawn
  uniformly without replacement (Gumbel top-k on the seeded hash), as
  Skill-It samples uniformly within a skill.
"""

from __future__ import annotations

import numpy as np
import pyarrow as pa

from . import schema as S
from .dsir import GUMBEL_MEDIAN, gumbel_from_ids
from .kmq import KMQ


def skills_graph(before: np.ndarray, after: np.ndarray) -> np.ndarray:
    """A (k x m): target skill j's relative loss decrease when the base proxy also trains on skill i, clipped at 0, largest entry 1.

    `before` (m,): each target skill's loss under the base proxy; `after` (k, m): under the base plus skill i.
    An all-zero graph (no skill helps any target) stays zero: the mixture is then the prior.
    """
    before = np.asarray(before, np.float64)
    decrease = np.clip((before[None, :] - np.asarray(after, np.float64)) / before[None, :], 0.0, None)
    top = decrease.max() if decrease.size else 0.0
    return decrease / top if top > 0 else decrease


def target_skills(losses: np.ndarray) -> np.ndarray:
    """Each target text's skill: the row (skill) whose proxy gives it the lowest loss; `losses` is (k skills, n texts)."""
    return np.argmin(np.asarray(losses, np.float64), axis=0)


def mixture(graph: np.ndarray, losses: list[np.ndarray], eta: float, window: int, prior: np.ndarray | None = None) -> np.ndarray:
    """p ∝ prior ⊙ exp(eta · A · Σ of the last `window` loss vectors), normalised to sum 1.

    `losses`: the evaluations so far, oldest first, each (m,) and divided by the base loss, so the first (the
    base's own, before any round) is all ones. The exponent is shifted by its maximum, which changes nothing but overflow.
    """
    graph = np.asarray(graph, np.float64)
    summed = np.sum(losses[-window:], axis=0)
    prior = np.ones(graph.shape[0]) if prior is None else np.asarray(prior, np.float64)
    z = eta * graph @ summed
    p = prior * np.exp(z - z.max())
    return p / p.sum()


class SkillIt(KMQ):
    """The pool split by the shares Skill-It's rounds ended with (water-filling, as kMQ's weighted split), uniform inside each skill."""

    name = "skillit"

    def __init__(self, shares: dict[str, float], seed: int = 0, rounds: dict | None = None):
        super().__init__({}, temperature=1.0, split="proportional", seed=seed, weights=shares)
        self.rounds = rounds or {}
        self._center = GUMBEL_MEDIAN  # keys are the Gumbel noise alone

    def keys(self, batch: pa.Table) -> np.ndarray:
        return gumbel_from_ids(self.seed, batch.column(S.DOC_ID).to_pylist())

    def facts(self) -> dict:
        facts = super().facts()
        del facts["split"], facts["temperature"]
        return {**facts, "skills": self.rounds}
