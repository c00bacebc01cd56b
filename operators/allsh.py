"""ALLSH local sensitivity: u_allsh, how far a proxy LM's predictions move under small perturbations of a document.

ALLSH (Zhang et al. 2022, "ALLSH: Active Learning Guided by Local Sensitivity
and Hardness", arXiv 2205.04980; its public repository holds only a README,
so the paper is the reference) prefers the examples whose model
output changes most when the input is slightly perturbed: for K perturbed
copies x'_k of x, the score is the largest divergence between the model's
output distribution on x and on x'_k.

    u_allsh(x) = max_k JS( pbar(x), pbar(x'_k) ),   pbar(x) = (1/L) sum_t softmax(z_t(x))

with JS the Jensen-Shannon divergence in nats (in [0, ln 2]) and z_t the proxy's
next-token logits at the L positions of the document's first window. The
perturbations act on the window's token ids (never on `<s>`), cycling through
three kinds with a generator seeded by the seed and the window's ids (the score
is a function of the text alone, as the score cache needs):

- word dropout: each token dropped with probability `drop` (one at least);
- span swap: two non-overlapping spans of `span` tokens exchanged;
- n-gram substitution: the `span`-gram at one position replaced by the one at
  another position of the same document.

Deviations that batch curation forces: the model is a proxy transformer
trained on the pool sample (operators/proxy_scorer.py), not the task model
being trained; its output on a document is the mean next-token distribution
over the window, the LM counterpart of a classifier's output distribution; the
perturbations are the paper's kinds of local edits on token ids, not its
back-translation or its text-level augmentations; JS rather than KL so the
score is symmetric and bounded (the paper's choice of divergence could not be
checked from this machine).
"""

from __future__ import annotations

import hashlib

import numpy as np

from . import schema as S
from .proxy_scorer import BATCH, ProxyLMScorer

KINDS = ("dropout", "span_swap", "ngram_substitution")


def js_divergence(p: np.ndarray, q: np.ndarray) -> np.ndarray:
    """Jensen-Shannon divergence in nats between distributions along the last axis."""
    p, q = np.asarray(p, np.float64), np.asarray(q, np.float64)
    m = (p + q) / 2

    def kl(a: np.ndarray, b: np.ndarray) -> np.ndarray:
        with np.errstate(divide="ignore", invalid="ignore"):
            return np.where(a > 0, a * np.log(a / np.where(b > 0, b, 1.0)), 0.0).sum(axis=-1)

    return np.maximum((kl(p, m) + kl(q, m)) / 2, 0.0)


def perturb(window: np.ndarray, kind: str, rng: np.random.Generator, drop: float, span: int) -> np.ndarray:
    """One perturbed copy of a window (`<s>` first, kept); a window too short for the kind comes back unchanged."""
    head, body = window[:1], window[1:].copy()
    n = len(body)
    if kind == "dropout":
        if n < 2:
            return window.copy()
        keep = rng.random(n) >= drop
        if keep.all():
            keep[rng.integers(n)] = False
        return np.concatenate([head, body[keep]])
    s = min(span, n // 2)
    if s < 1:
        return window.copy()
    if kind == "span_swap":
        a = int(rng.integers(0, n - 2 * s + 1))
        b = int(rng.integers(a + s, n - s + 1))
        body[a : a + s], body[b : b + s] = body[b : b + s].copy(), body[a : a + s].copy()
        return np.concatenate([head, body])
    if kind == "ngram_substitution":
        at, source = rng.choice(n - s + 1, size=2, replace=False) if n - s + 1 >= 2 else (0, 0)
        body[at : at + s] = window[1:][source : source + s]
        return np.concatenate([head, body])
    raise ValueError(f"unknown perturbation {kind!r}; known: {', '.join(KINDS)}")


class LocalSensitivity(ProxyLMScorer):
    """u_allsh and q_allsh from the proxy trained on the pool sample (operators/proxy_scorer.py)."""

    u_column, q_column = S.U_ALLSH, S.Q_ALLSH

    def __init__(self, steps: int = 200, context: int = 128, seed: int = 0, device: str = "auto", perturbations: int = 3, drop: float = 0.1, span: int = 3):
        super().__init__(steps, context, seed, device)
        if perturbations < 1 or not 0 < drop < 1 or span < 1:
            raise ValueError(f"ALLSH needs perturbations >= 1, 0 < drop < 1 and span >= 1, got {perturbations}, {drop}, {span}")
        self.perturbations, self.drop, self.span = perturbations, drop, span

    def perturbed(self, window: np.ndarray) -> list[np.ndarray]:
        """The K perturbed copies of a window, kinds in turn, from a generator seeded by the seed and the window's ids."""
        digest = hashlib.blake2b(np.ascontiguousarray(window, np.int64).tobytes(), digest_size=8, key=str(self.seed).encode()).digest()
        rng = np.random.default_rng(int.from_bytes(digest, "little"))
        return [perturb(window, KINDS[k % len(KINDS)], rng, self.drop, self.span) for k in range(self.perturbations)]

    def mean_distributions(self, windows: list[np.ndarray]) -> np.ndarray:
        """pbar of each window: its mean next-token distribution, (n, vocabulary)."""
        import torch

        proxy = self.proxy()
        out = []
        with torch.inference_mode(), proxy.torch_threads():
            for b in range(0, len(windows), BATCH):
                logits, lengths = self.logits(windows[b : b + BATCH])
                probs = torch.softmax(logits, dim=-1)
                probs *= (torch.arange(logits.shape[1], device=lengths.device)[None, :] < lengths[:, None])[..., None]
                out.append((probs.sum(dim=1) / lengths[:, None]).cpu().numpy())
        return np.concatenate(out)

    def scores(self, texts: list[str]) -> np.ndarray:
        """u_allsh of each text."""
        windows = self.windows(texts)
        copies = [c for w in windows for c in self.perturbed(w)]
        original = self.mean_distributions(windows)
        perturbed = self.mean_distributions(copies).reshape(len(windows), self.perturbations, -1)
        return js_divergence(original[:, None, :], perturbed).max(axis=1)
