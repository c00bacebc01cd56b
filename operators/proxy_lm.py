"""Proxy evaluators: judge a candidate selection by a small LM trained on it.

A QuaDMix parameter search (RegMix-style) and kMQ score many candidate
selections; training a real LM per candidate is out of the question, so each
is judged by a model that fits in seconds on CPU: train on the selected texts,
report the loss on a held-out validation set (lower = better selection).

`NGramProxy` is an interpolated Kneser-Ney n-gram model (Kneser & Ney 1995;
the interpolated form of Chen & Goodman 1998, "An Empirical Study of
Smoothing Techniques for Language Modeling", TR-10-98). With D the discount,
c(h w) the raw count of h w at the highest order and its continuation count
N1+(• h w) (the number of distinct words seen before h w) at every lower one,
and c(h) = Σ_w c(h w):

    p_k(w | h) = (c(h w) − D)⁺ / c(h) + D · N1+(h •) / c(h) · p_{k−1}(w | h′)

h′ the context h without its first word, p_{k−1} alone where c(h) = 0, and
below the unigrams the uniform distribution p_0 = 1 / vocab_size (Chen &
Goodman's zeroth-order model), so no probability is zero; vocab_size stands
for the tokens never seen, and sets what each costs. Loss: negative
log-likelihood in nats per validation token.

Text: lowercased, split into tokens by `\\w+|[^\\w\\s]+` (runs of word
characters or of punctuation, the WordPunct pattern DSIR uses, in Python's
`re`). Each document is padded with order − 1 start symbols `<s>` (context
only, never scored) and ends with `</s>`, which is scored: it is a token of
every document, so an empty one still has a loss, and a model that ends
documents in the wrong places pays for it.

Hashing: a token's id is fmix64(blake2b-64(UTF-8 bytes) xor seed), a
k-gram's fmix64(id(first k − 1 tokens) · K + id(last token)) mod 2^64: stable
across processes and releases, unlike Python's salted `hash()`. The seed only
moves n-grams between slots. Token hashes are cached per text, so the calls
after the first over the same pool only count and score.

Deviations:
- Counts are kept per hash slot, not per n-gram: an n-gram's slot is the
  top log2(buckets) bits of its hash, and n-grams that share a slot share
  their counts (`NGramModel.collisions` says how many did). Only occupied
  slots are stored (sorted, looked up by binary search), so memory grows
  with the n-gram types, not with `buckets`, and the default 2^40 keeps
  collisions negligible (about types² / 2^41 pairs: ~1 for 1.5 M trigram
  types). Few slots are no cheap approximation: a shared slot lends an
  unseen n-gram another one's counts, so the loss falls as slots fill, most
  for the selections with the most n-gram types. On realmix's eval set with
  2^20 slots, 3,000 pool documents (46 % of their trigram types in a shared
  slot) score 3.72 nats instead of 6.68, and the raw web pages score as well
  as the books (6.08 and 6.02; 8.17 and 6.70 with 2^40).
- Training weights (copies, possibly fractional) scale the highest order's
  counts, and each n-gram type is discounted by min(D, c) instead of D, which
  keeps counts below D normalised; lower orders count distinct types, so a
  document with any positive weight adds its types once, whatever the weight.
- One fixed D for every order, not the Ney et al. estimate n1 / (n1 + 2 n2):
  counts of counts mean nothing for fractional copies, and a D estimated per
  candidate would move the losses the search compares.
- The start padding gives every token a full-length context; n-grams that
  begin with `<s>` are continuation-counted like the rest (KenLM keeps their
  raw counts).
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Sequence
from dataclasses import dataclass
from functools import lru_cache
from typing import Protocol

import numpy as np

from .hashing import fmix64

TOKEN_PATTERN = re.compile(r"\w+|[^\w\s]+")
BOS, EOS = "<s>", "</s>"  # never tokens: a token is all word characters or none

_K = np.uint64(1099511628211)  # odd multiplier chaining a context's hash with the next token's


class ProxyEvaluator(Protocol):
    """A model trained on a candidate selection, scored on held-out text (lower loss = better selection).

    `train_weights`: copies of each training text (non-negative, default 1).
    `loss` is the mean loss over every validation token; `per_doc_loss` the
    mean over each validation text's own tokens (to score documents one by one,
    e.g. the unselected documents of a cluster).
    """

    name: str

    def loss(
        self, train_texts: Sequence[str], valid_texts: Sequence[str], train_weights: np.ndarray | None = None
    ) -> float: ...

    def per_doc_loss(
        self, train_texts: Sequence[str], valid_texts: Sequence[str], train_weights: np.ndarray | None = None
    ) -> np.ndarray: ...


def training_weights(proxy: str, train_texts: Sequence[str], train_weights: np.ndarray | None) -> tuple[np.ndarray, np.ndarray]:
    """The copies of each training text (default 1), checked, and the positions of those with a positive weight."""
    if len(train_texts) == 0:
        raise ValueError(f"{proxy} proxy needs at least one training text")
    weights = np.ones(len(train_texts)) if train_weights is None else np.asarray(train_weights, np.float64)
    if weights.shape != (len(train_texts),):
        raise ValueError(f"train_weights has shape {weights.shape}, expected ({len(train_texts)},)")
    if not (np.isfinite(weights).all() and (weights >= 0).all()):
        raise ValueError("train_weights must be finite and non-negative")
    keep = np.flatnonzero(weights > 0)
    if len(keep) == 0:
        raise ValueError(f"{proxy} proxy needs a training text with positive weight")
    return weights, keep


def tokenize(text: str) -> list[str]:
    """Lowercased word and punctuation tokens."""
    return TOKEN_PATTERN.findall(text.lower())


@lru_cache(maxsize=1 << 18)
def _token_hash(token: str) -> int:
    return int.from_bytes(hashlib.blake2b(token.encode(), digest_size=8).digest(), "little")


@lru_cache(maxsize=1 << 14)
def doc_hashes(text: str) -> np.ndarray:
    """Token hashes of one text, then `</s>`.

    Cached (read-only, the latest 16,384 texts): a search scores one pool many times.
    """
    tokens = tokenize(text)
    tokens.append(EOS)
    h = np.fromiter(map(_token_hash, tokens), np.uint64, len(tokens))
    h.flags.writeable = False
    return h


def _ngram_hashes(texts: Sequence[str], order: int, seed: int) -> tuple[list[np.ndarray], np.ndarray, np.ndarray]:
    """(grams, pos, doc): grams[k-1][i] is the hash of the k-gram ending at position i of the
    padded stream; pos the positions scored (every token and `</s>`, no `<s>`); doc their text."""
    docs = [doc_hashes(t) for t in texts]
    pad = np.full(order - 1, _token_hash(BOS), np.uint64)
    stream = fmix64(np.concatenate([a for d in docs for a in (pad, d)]) ^ np.uint64(seed & (2**64 - 1)))
    grams = [stream]
    for _ in range(1, order):
        g = np.zeros_like(stream)  # position 0 is a pad: no k-gram ends there
        g[1:] = fmix64(grams[-1][:-1] * _K + stream[1:])
        grams.append(g)
    sizes = np.array([len(d) for d in docs], np.int64)
    doc = np.repeat(np.arange(len(docs)), sizes)
    pos = np.arange(len(doc)) + (order - 1) * (doc + 1)  # text d's tokens follow d + 1 pads
    return grams, pos, doc


def _slot(h: np.ndarray, buckets: int) -> np.ndarray:
    """The top log2(buckets) bits of each hash: hash order is slot order."""
    return h >> np.uint64(65 - buckets.bit_length())


def _runs(keys: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(order, start): keys[order] is sorted (stably) and each distinct key's run begins at a start."""
    order = np.argsort(keys, kind="stable")  # stable: a key's weights add up in input order, and sorted keys cost a pass
    ordered = keys[order]
    return order, np.flatnonzero(np.concatenate(([True], ordered[1:] != ordered[:-1])))


def _group(keys: np.ndarray, weights: np.ndarray | None) -> tuple[np.ndarray, np.ndarray]:
    """(index of one occurrence, summed weight, or number of occurrences if None) of each distinct key."""
    order, start = _runs(keys)
    if weights is None:
        return order[start], np.diff(np.append(start, len(keys))).astype(np.float64)
    return order[start], np.add.reduceat(weights[order], start)


@dataclass(frozen=True)
class SlotSums:
    """Sums of values per occupied hash slot: `keys` sorted, `values[..., i]` the sums of slot keys[i]."""

    keys: np.ndarray
    values: np.ndarray

    @classmethod
    def of(cls, slots: np.ndarray, values: np.ndarray) -> SlotSums:
        order, start = _runs(slots)
        return cls(slots[order][start], np.add.reduceat(values[..., order], start, axis=-1))

    def __getitem__(self, slots: np.ndarray) -> np.ndarray:
        """The sums of each slot, 0 where it is empty."""
        order = np.argsort(slots)  # searched in sorted order, they walk the keys front to back: 2x faster
        i = np.empty(len(slots), np.intp)
        i[order] = np.minimum(np.searchsorted(self.keys, slots[order]), len(self.keys) - 1)
        return np.where(self.keys[i] == slots, self.values[..., i], 0.0)


@dataclass(frozen=True)
class NGramModel:
    """Interpolated Kneser-Ney counts, as `NGramProxy.fit` builds them; index k-1 holds order k.

    num[k-1][slot of h w] = c(h w) − min(D, c(h w)); ctx[k-1][slot of h] = (c(h), Σ_w min(D, c(h w))),
    the unigrams' empty context in slot 0. types[k-1]: distinct k-grams counted; collisions[k-1]: how
    many of them landed in a slot another one already held.
    """

    order: int
    buckets: int
    vocab_size: int
    seed: int
    num: tuple[SlotSums, ...]
    ctx: tuple[SlotSums, ...]
    types: tuple[int, ...]
    collisions: tuple[int, ...]

    def token_nll(self, texts: Sequence[str]) -> tuple[np.ndarray, np.ndarray]:
        """(text index, negative log-likelihood in nats) of every scored token of `texts`."""
        if len(texts) == 0:
            raise ValueError("NGramModel needs at least one validation text")
        grams, pos, doc = _ngram_hashes(texts, self.order, self.seed)
        B = self.buckets
        p = np.full(len(pos), 1.0 / self.vocab_size)
        for k in range(self.order):
            c, gam = self.ctx[k][_slot(grams[k - 1][pos - 1], B) if k else np.zeros(len(pos), np.uint64)]
            seen = c > 0  # always, for the unigrams
            p = np.where(seen, (self.num[k][_slot(grams[k][pos], B)] + gam * p) / np.where(seen, c, 1.0), p)
        return doc, -np.log(p)


class NGramProxy:
    """Hashed interpolated Kneser-Ney n-gram proxy (see the module docstring)."""

    name = "ngram"

    def __init__(
        self, order: int = 3, buckets: int = 2**40, discount: float = 0.75, vocab_size: int = 2**20, seed: int = 0
    ):
        if order < 1 or vocab_size < 1:
            raise ValueError("NGramProxy needs order >= 1 and vocab_size >= 1")
        if not 2 <= buckets <= 2**64 or buckets & (buckets - 1):
            raise ValueError("NGramProxy buckets must be a power of two from 2 to 2^64")
        if not 0.0 < discount <= 1.0:
            raise ValueError("NGramProxy discount must be in (0, 1]: 0 would give unseen n-grams zero probability")
        self.order = order
        self.buckets = buckets
        self.discount = discount
        self.vocab_size = vocab_size
        self.seed = seed

    def fit(self, train_texts: Sequence[str], train_weights: np.ndarray | None = None) -> NGramModel:
        """Count the texts, each `train_weights` times (fractions allowed, default 1)."""
        weights, keep = training_weights(self.name, train_texts, train_weights)
        grams, rep, doc = _ngram_hashes([train_texts[i] for i in keep], self.order, self.seed)

        B = self.buckets
        num, ctx, types, collisions = [], [], [], []
        w = weights[keep][doc]  # the highest order counts copies; each lower one counts distinct longer types
        for k in range(self.order, 0, -1):
            first, count = _group(grams[k - 1][rep], w)
            rep, w = rep[first], None  # a k-gram's (k-1)-gram suffix ends where it does
            disc = np.minimum(self.discount, count)
            num.append(SlotSums.of(_slot(grams[k - 1][rep], B), count - disc))  # already in slot order
            context = _slot(grams[k - 2][rep - 1], B) if k > 1 else np.zeros(len(rep), np.uint64)
            ctx.append(SlotSums.of(context, np.stack([count, disc])))
            types.append(len(count))
            collisions.append(len(count) - len(num[-1].keys))
        num, ctx, types, collisions = (tuple(x[::-1]) for x in (num, ctx, types, collisions))
        return NGramModel(self.order, self.buckets, self.vocab_size, self.seed, num, ctx, types, collisions)

    def loss(
        self, train_texts: Sequence[str], valid_texts: Sequence[str], train_weights: np.ndarray | None = None
    ) -> float:
        """Mean negative log-likelihood in nats over every validation token (`</s>` included)."""
        _, nll = self.fit(train_texts, train_weights).token_nll(valid_texts)
        return float(nll.mean())

    def per_doc_loss(
        self, train_texts: Sequence[str], valid_texts: Sequence[str], train_weights: np.ndarray | None = None
    ) -> np.ndarray:
        """Mean negative log-likelihood in nats over each validation text's tokens (`</s>` included)."""
        doc, nll = self.fit(train_texts, train_weights).token_nll(valid_texts)
        return np.bincount(doc, nll, minlength=len(valid_texts)) / np.bincount(doc, minlength=len(valid_texts))
