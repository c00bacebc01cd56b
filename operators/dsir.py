"""DSIR: data selection with importance resampling (Xie et al. 2023, arXiv 2302.03169).

Each document is a bag of hashed n-grams. Fit the bucket distributions of a
raw sample of the pool (p_raw) and of the target documents (p_target); the
importance weight of a pool document x with bucket counts c(x) is

    log w(x) = Σ_b c_b(x) · (log(p_target[b] + ε) − log(p_raw[b] + ε))

and `u_dsir` holds log w. `DSIRResample` then draws the selection the way the
paper does: Gumbel top-k on log w.

Faithful to the reference code (p-lambda/dsir, `HashedNgramDSIR`):
- text is lowercased and split with NLTK's WordPunct pattern `\\w+|[^\\w\\s]+`
  (the package's default tokenizer); features are the unigrams plus the
  space-joined 2..n-grams, 10,000 buckets, n = 2;
- the distributions are plain normalised bucket counts and the log ratio
  uses ε = 1e-8 inside both logs (there is no add-one smoothing in the
  reference; `pseudocount` adds a per-bucket count for callers who want it,
  0 by default);
- log w is the raw sum over the document's n-grams (no length normalisation).

Deviations:
- Hash: the reference hashes each n-gram string with SHA-256 (the paper's
  first code used Python's salted `hash()`); here a bucket is
  fmix64(P(bytes)) mod num_buckets, P the polynomial hash Σ b_i·K^(L−1−i)
  mod 2^64 over the n-gram's UTF-8 bytes and fmix64 MurmurHash3's finaliser.
  It is stable across processes and versions, and vectorises: each distinct
  token is hashed once per batch and an n-gram's value follows algebraically
  from its tokens' (P("a b") = P("a")·K^(|b|+1) + ' '·K^|b| + P("b")), so no
  n-gram string is ever built. Bucket ids therefore differ from the
  reference's; their uniformity does not.
- The tokenizer regex runs in polars (Rust `regex`), whose Unicode `\\w`
  differs from Python's `re` on a few combining marks.
- The reference stops fitting p_raw after `num_tokens_to_fit` tokens; here
  the caller decides how large a raw sample to pass. The reference's
  `importance_estimator` also ignores the configured n and bucket count
  (it calls the feature function with its defaults); here fit and transform
  always use the same ones.
- The paper resamples 128-word chunks of the Pile, so log w is comparable
  across examples; thresher scores whole documents, and because log w sums
  over n-grams, long documents get the most extreme weights (either sign).
"""

from __future__ import annotations

import numpy as np
import polars as pl
import pyarrow as pa
import pyarrow.compute as pc

from .selection import ALL, TopK, uniform_from_ids
from . import schema as S
from .fitted import Fitted
from .hashing import fmix64

TOKEN_PATTERN = r"\w+|[^\w\s]+"  # NLTK WordPunctTokenizer
EPS = 1e-8  # the reference's guard inside log(p + ε)

_K = np.uint64(1099511628211)  # odd multiplier of the polynomial hash (the FNV-1a 64 prime)
_SPACE = np.uint64(0x20)
_FIT_CHUNK = 4096  # documents hashed at once while fitting
_QUANTILE_LEVELS = np.linspace(0.0, 1.0, 101)


# --------------------------------------------------------------------------
# Hashed n-gram features.
# --------------------------------------------------------------------------


def _powers(n: int) -> np.ndarray:
    """K^0 .. K^n mod 2^64 (uint64 arithmetic wraps)."""
    p = np.full(n + 1, _K, dtype=np.uint64)
    p[0] = 1
    return np.multiply.accumulate(p)


_POW = _powers(1 << 12)


def _pow_table(n: int) -> np.ndarray:
    global _POW
    if n < len(_POW):
        return _POW
    table = _powers(n)
    if n <= 1 << 20:  # keep the grown table, but not one sized by a pathological token
        _POW = table
    return table


def _string_buffers(arr: pa.Array) -> tuple[np.ndarray, np.ndarray]:
    """(offsets int64 of len n+1, utf-8 bytes) of a string or large_string array."""
    arr = arr.cast(pa.large_string())
    offsets = np.frombuffer(arr.buffers()[1], dtype=np.int64)[arr.offset : arr.offset + len(arr) + 1]
    data = arr.buffers()[2]
    data = np.frombuffer(data, dtype=np.uint8) if data is not None else np.zeros(0, np.uint8)
    return offsets, data


def _poly_hash(arr: pa.Array) -> tuple[np.ndarray, np.ndarray]:
    """Polynomial hash (before finalising) and byte length of each non-empty string."""
    offsets, data = _string_buffers(arr)
    lengths = np.diff(offsets)
    if len(lengths) == 0:
        return np.zeros(0, np.uint64), lengths
    lo, hi = int(offsets[0]), int(offsets[-1])
    table = _pow_table(int(lengths.max()) + 1)
    # Byte i of a string ending at e is weighted K^(e-1-i); reduceat needs non-empty strings,
    # which the token pattern guarantees.
    exponent = np.repeat(offsets[1:] - 1, lengths) - np.arange(lo, hi)
    terms = data[lo:hi].astype(np.uint64) * table[exponent]
    return np.add.reduceat(terms, offsets[:-1] - lo), lengths


def tokenize(texts: pa.Array | pa.ChunkedArray | list[str]) -> pa.LargeListArray:
    """Lowercased WordPunct tokens of each text (nulls become empty lists)."""
    series = pl.Series(values=texts, dtype=pl.String).fill_null("")
    tokens = series.str.to_lowercase().str.extract_all(TOKEN_PATTERN).to_arrow()
    if isinstance(tokens, pa.ChunkedArray):
        tokens = tokens.combine_chunks()
    return tokens.cast(pa.large_list(pa.large_string()))


def ngram_features(texts, num_buckets: int = 10000, ngrams: int = 2) -> tuple[np.ndarray, np.ndarray]:
    """(document index, bucket id) of every 1..n-gram occurrence in `texts`.

    A bucket is fmix64(P(g)) mod num_buckets for the n-gram string g with its
    tokens joined by one space.
    """
    tokens = tokenize(texts)
    n_docs = len(tokens)
    per_doc = np.asarray(pc.list_value_length(tokens).fill_null(0), dtype=np.int64)
    doc = np.repeat(np.arange(n_docs, dtype=np.int64), per_doc)
    flat = tokens.flatten()
    if len(flat) == 0:
        return doc, np.zeros(0, np.int64)
    encoded = pc.dictionary_encode(flat)
    index = np.asarray(encoded.indices, dtype=np.int64)
    vocab_hash, vocab_len = _poly_hash(encoded.dictionary)
    h1, length = vocab_hash[index], vocab_len[index]
    table = _pow_table(int(vocab_len.max()) + 2)

    docs, hashes = [doc], [h1]
    gram, ok = h1, np.ones(len(h1), bool)
    for n in range(2, ngrams + 1):
        # gram[i] covers tokens i..i+n-2; extend it by token i+n-1 of the same document.
        nxt, first = slice(n - 1, None), slice(0, max(len(doc) - n + 1, 0))
        gram = gram[:-1] * table[length[nxt] + 1] + _SPACE * table[length[nxt]] + h1[nxt]
        ok = ok[:-1] & (doc[nxt] == doc[first])
        docs.append(doc[first][ok])
        hashes.append(gram[ok])
    buckets = (fmix64(np.concatenate(hashes)) % np.uint64(num_buckets)).astype(np.int64)
    return np.concatenate(docs), buckets


# --------------------------------------------------------------------------
# Importance weights.
# --------------------------------------------------------------------------


class DSIR(Fitted):
    """Hashed n-gram importance weights; `transform` appends `u_dsir` = log w."""

    def __init__(self, num_buckets: int = 10000, ngrams: int = 2, pseudocount: float = 0.0, eps: float = EPS):
        if num_buckets < 1 or ngrams < 1:
            raise ValueError("DSIR needs num_buckets >= 1 and ngrams >= 1")
        self.num_buckets = num_buckets
        self.ngrams = ngrams
        self.pseudocount = pseudocount
        self.eps = eps

    def _counts(self, texts: pa.Array) -> np.ndarray:
        counts = np.zeros(self.num_buckets, np.int64)
        for start in range(0, len(texts), _FIT_CHUNK):
            _, buckets = ngram_features(texts.slice(start, _FIT_CHUNK), self.num_buckets, self.ngrams)
            counts += np.bincount(buckets, minlength=self.num_buckets)
        return counts

    def fit(self, raw_texts, target_texts) -> "DSIR":
        """raw_texts: a sample of the pool; target_texts: the documents to look like.

        Either may be a list of str or an Arrow string array.
        """
        raw, target = _text_array(raw_texts), _text_array(target_texts)
        self.raw_counts_, self.raw_docs_ = self._counts(raw), len(raw)
        self.target_counts_, self.target_docs_ = self._counts(target), len(target)
        if self.raw_counts_.sum() == 0 or self.target_counts_.sum() == 0:
            raise ValueError("DSIR needs raw and target texts with at least one token each")
        self._set_log_diff()
        # The spread of log w over the raw sample: the scale DSIRResample maps its keys by.
        log_w = np.concatenate([self.log_weights(raw.slice(i, _FIT_CHUNK)) for i in range(0, len(raw), _FIT_CHUNK)])
        self.raw_log_w_quantiles_ = np.nanquantile(log_w, _QUANTILE_LEVELS).tolist()
        return self

    def _set_log_diff(self) -> None:
        def log_p(counts: np.ndarray) -> np.ndarray:
            c = counts.astype(np.float64) + self.pseudocount
            return np.log(c / c.sum() + self.eps)

        self.log_diff_ = log_p(self.target_counts_) - log_p(self.raw_counts_)

    def log_weights(self, texts) -> np.ndarray:
        """log w per text (float64); null texts give NaN."""
        texts = _text_array(texts)
        doc, buckets = ngram_features(texts, self.num_buckets, self.ngrams)
        out = np.bincount(doc, weights=self.log_diff_[buckets], minlength=len(texts))
        nulls = np.asarray(texts.is_null().to_numpy(zero_copy_only=False), bool)
        out[nulls] = np.nan
        return out

    def transform(self, batch: pa.Table) -> pa.Table:
        """Append `u_dsir` (float32 log importance weight) and `q_dsir` (its percentile in the pool sample, in [0, 1]); null where the text is null.

        `q_dsir` makes "looks like the target" a quality score like any
        other, so QuaDMix's α, top-k, kMQ and ODiS can weigh it against the rest.
        """
        from .quality import percentile_of

        w = self.log_weights(batch.column(S.TEXT))
        q = percentile_of(w, np.asarray(self.raw_log_w_quantiles_), _QUANTILE_LEVELS)
        return batch.append_column(S.U_DSIR, pa.array(w.astype(np.float32), from_pandas=True)).append_column(S.Q_DSIR, pa.array(q.astype(np.float32), from_pandas=True))


def _text_array(texts) -> pa.Array:
    if isinstance(texts, pa.ChunkedArray):
        texts = texts.combine_chunks()
    if isinstance(texts, pa.Array):
        return texts.cast(pa.large_string())
    return pa.array(list(texts), pa.large_string())


# --------------------------------------------------------------------------
# Resampling.
# --------------------------------------------------------------------------

GUMBEL_MEDIAN = -np.log(np.log(2.0))
GUMBEL_IQR = np.log(np.log(4.0)) - np.log(np.log(4.0 / 3.0))


def gumbel_from_ids(seed: int, doc_ids: list[str]) -> np.ndarray:
    """Standard Gumbel noise per document, a function of (seed, doc_id) only.

    Its own stream (`gumbel-{seed}`), so it is independent of the uniforms
    `select` draws copies with under `seed`.
    """
    u = uniform_from_ids(f"gumbel-{seed}", doc_ids)
    u = np.clip(u, 2.0**-54, None)  # u = 0 would be -inf
    return -np.log(-np.log(u))


class DSIRResample(TopK):
    """DSIR's resampling step as a selection strategy: Gumbel top-k on log w.

    Why Gumbel top-k: with g_i i.i.d. standard Gumbel, the k largest
    log w_i + g_i are distributed exactly as k draws without replacement,
    each next one chosen with probability proportional to w among the
    documents not drawn yet (the Gumbel-max trick applied k times). The
    reference code does this in memory with `np.argpartition`; here the
    documents stream in batches, so

    - g_i comes from (seed, doc_id) alone: the same document gets the same
      key in the histogram pass and in `transform`, in any batch or partition;
    - the k-th largest key is read from a histogram of the keys (as `TopK`
      does, whose budget logic this reuses; a token budget works the same
      way) and `transform` keeps every key above it. Within the histogram bin
      holding the threshold, documents are assumed spread evenly, so the
      selection has ≈k documents (exactly k when that bin is uniform);
      equivalently, document i is kept when log w_i + g_i > t, that is with
      probability 1 − exp(−w_i e^{−t}). A budget above the pool keeps every
      document, once, and `facts()` reports the shortfall.

    Keys are mapped monotonically into [0, 1] for the histogram by a Cauchy
    CDF, 1/2 + arctan((key − center) / scale) / π: heavy tails keep some
    resolution for the extreme weights that long documents get. `center`
    and `scale` only set the histogram's resolution, never which documents
    win; `from_dsir` takes them from the raw sample's log w (median + the
    Gumbel median, half the interquartile range, at least the Gumbel's).
    """

    name = "dsir"
    columns = (S.DOC_ID, S.U_DSIR)  # what keys_and_scores reads

    def __init__(self, seed: int = 0, center: float = 0.0, scale: float = 1.0):
        if not scale > 0:
            raise ValueError("DSIRResample scale must be positive")
        self.seed = seed
        self.center = float(center)
        self.scale = float(scale)

    @classmethod
    def from_dsir(cls, dsir: DSIR, seed: int = 0) -> "DSIRResample":
        q = np.asarray(dsir.raw_log_w_quantiles_)
        median = float(np.interp(0.5, _QUANTILE_LEVELS, q))
        iqr = float(np.interp(0.75, _QUANTILE_LEVELS, q) - np.interp(0.25, _QUANTILE_LEVELS, q))
        return cls(seed, center=median + GUMBEL_MEDIAN, scale=max(iqr, GUMBEL_IQR) / 2.0)

    def keys(self, batch: pa.Table) -> np.ndarray:
        """log w + Gumbel noise per document (−inf where u_dsir is null)."""
        log_w = np.asarray(batch.column(S.U_DSIR).to_numpy(zero_copy_only=False), np.float64)
        g = gumbel_from_ids(self.seed, batch.column(S.DOC_ID).to_pylist())
        return np.where(np.isnan(log_w), -np.inf, log_w + g)

    def keys_and_scores(self, batch: pa.Table) -> tuple[np.ndarray, np.ndarray]:
        z = (self.keys(batch) - self.center) / self.scale
        return np.full(batch.num_rows, ALL), 0.5 + np.arctan(z) / np.pi
