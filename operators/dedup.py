"""Exact and near-duplicate detection: normalised-text hashes and MinHash LSH.

Both detectors are accumulate-then-resolve: `add(batch)` keeps a few NumPy
numbers per document (no text), `resolve()` groups duplicates corpus-wide,
`transform(batch)` appends the `d_*dup*` columns. Nothing depends on batch
order or partitioning: documents are ranked at `resolve`, and

    keep rule: in every duplicate group the document of the smallest rank is
    kept; every other member is flagged with that kept `doc_id`. The rank is
    the `rank` given with the signatures (the pipeline gives each document's
    place in input order, so of a document and a later copy of it the
    earlier one is kept, as with repeated ids), ties and documents given
    none ranked by `doc_id` (plain string order).

Text normalisation (shared by both detectors): lowercase, then keep only the
`\\w+` word runs (Unicode letters, digits, underscore) joined by one space.
So case, whitespace layout and punctuation never matter: "Hello,  World!"
and "hello world" are exact duplicates. `doc_id`s are assumed unique.

Near duplicates follow datasketch's MinHash LSH (Broder 1997; Leskovec et al.,
Mining of Massive Datasets ch. 3), vectorised over a whole batch:

* shingles are word n-grams (default 5) of the normalised words; a document
  shorter than n words is one shingle of all its words; a document with no
  word has no shingles and is never a near duplicate;
* a shingle hashes to 32 bits with a stable hash (BLAKE2b per distinct word,
  then an order-sensitive 64-bit mix over the n words): the same text gives
  the same signature in every process and on every machine (no salted or
  library-internal hash);
* each of `num_perm` permutations is a universal hash of the 32-bit shingle
  hash x: h(x) = ((a x + b) mod 2^64) div 2^32, a and b uniform 64-bit from a
  seeded NumPy generator (Dietzfelbinger's multiply-add-shift); the signature
  is the minimum over shingles. Deviation: datasketch and datatrove use
  (a x + b) mod (2^61 - 1). Both families are 2-independent, the property
  MinHash's estimate rests on; computed exactly in NumPy the Mersenne form
  costs about 16 array passes where this one costs 3 (dedup 2.1x faster per
  core, the same flags on the demo corpus and the same recall and precision on
  realmix's planted copies: bench/RESULTS.md);
* LSH: `bands` x `rows` <= num_perm signature values; a band hashes to one
  uint64 key; two documents are candidates when any band key is equal.

Bands x rows follow the threshold (`lsh_for_threshold`): datasketch's and
Data-Juicer's minimisation of the false-positive plus false-negative areas
under the candidate-probability curve (`lsh_params`), weighted FP_WEIGHT :
FN_WEIGHT = 0.05 : 0.95 rather than their 0.5 : 0.5. Every candidate is
verified, so a false candidate costs one comparison while a missed pair is
lost for good: at threshold 0.8 the equal weights give 9 x 13, where a pair
at Jaccard 0.8 becomes a candidate with probability 0.40 and at 0.9 only
0.93; these weights give 16 x 8 (0.95 and 0.9999), and the false candidates
it adds (0.24 at Jaccard 0.6) are removed by the verification step: a candidate pair is united only when its estimated Jaccard
(fraction of equal signature values) is >= `threshold`, the check
datasketch-based pipelines run before trusting an LSH bucket. Within a bucket
(one band, one key) each member is verified against the bucket's first member
and its predecessor in `doc_id` order - linear in the bucket size, so a huge
bucket of boilerplate never turns quadratic. Verified pairs are merged with a
vectorised union-find, so a group is transitive: A~B and B~C put A, B, C in
one group even when A and C are below the threshold.

Memory while accumulating, per document: the doc_id string plus
16 bytes (exact), `num_perm` x 4 bytes for the signature (near, with
verification; 512 B at 128 permutations) or `bands` x 8 bytes for the band
keys (near, `verify=False`; 128 B at 16 bands). With verification the band
keys are derived from the signatures one band at a time at `resolve`, so they
add n x 8 bytes transiently, not n x bands x 8. `resolve` briefly holds about
twice the accumulated arrays (concatenation, reordering by rank).
"""

from __future__ import annotations

import functools
import hashlib
import shutil
from pathlib import Path
from typing import Callable

import numpy as np
import polars as pl
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from . import minhash_kernel
from . import schema as S
from .fitted import STATE_FILE, Fitted
from .hashing import fmix64

MINHASH_FAMILY = "multiply-add-shift"  # in the key of stored signatures: another family's are never mixed with these
_GOLDEN = np.uint64(0x9E3779B97F4A7C15)
_EMPTY = np.uint32(0xFFFFFFFF)  # signature value of a document without shingles


# ---------------------------------------------------------------------------
# Normalisation and stable hashing.
# ---------------------------------------------------------------------------


def normalised_words(texts) -> pl.Series:
    """Lowercased `\\w+` runs of each text as a list column (null text -> null)."""
    return pl.Series("t", texts, dtype=pl.String).str.to_lowercase().str.extract_all(r"\w+")


def normalise_text(texts, words: pl.Series | None = None) -> pl.Series:
    """The string exact duplicates are compared on: normalised words joined by one space (`words`: the texts'
    `normalised_words`, when the caller has them already)."""
    return (normalised_words(texts) if words is None else words).list.join(" ")


def text_hashes(texts, words: pl.Series | None = None) -> tuple[np.ndarray, np.ndarray]:
    """(128-bit BLAKE2b of each normalised text as (n, 2) uint64, valid mask); null text is invalid."""
    norm = normalise_text(texts, words)
    valid = norm.is_not_null().to_numpy()
    raw = b"".join(
        hashlib.blake2b(t.encode(), digest_size=16).digest() if t is not None else bytes(16) for t in norm.to_list()
    )
    return np.frombuffer(raw, dtype="<u8").reshape(-1, 2).copy(), valid


def _word_hashes(flat_words: pa.Array) -> np.ndarray:
    """A stable uint64 per word: BLAKE2b of each distinct word, gathered back."""
    if isinstance(flat_words, pa.ChunkedArray):
        flat_words = flat_words.combine_chunks()
    if len(flat_words) == 0:
        return np.zeros(0, np.uint64)
    enc = pc.dictionary_encode(flat_words)
    raw = b"".join(hashlib.blake2b(w.encode(), digest_size=8).digest() for w in enc.dictionary.to_pylist())
    return np.frombuffer(raw, dtype="<u8")[enc.indices.to_numpy(zero_copy_only=False).astype(np.int64)]


def shingle_hashes(texts, ngram: int = 5, words: pl.Series | None = None) -> tuple[np.ndarray, np.ndarray]:
    """32-bit hashes (in uint64) of every word n-gram, doc-major, and offsets (n + 1,).

    Shingles of document i are `hashes[offsets[i]:offsets[i + 1]]`. A document
    with 1 <= L < ngram words has one shingle (all its words); L = 0 has none.
    A shingle folds its words' hashes (`_word_hashes`) as h = fmix64(h * golden
    + w) from h = 0 and keeps fmix64(h) >> 32; the fold runs in C
    (`minhash_kernel.shingles`).
    """
    words = normalised_words(texts) if words is None else words
    n_words = words.list.len().fill_null(0).to_numpy().astype(np.int64)
    w = _word_hashes(words.explode().drop_nulls().to_arrow())
    word_start = np.concatenate([[0], np.cumsum(n_words)]).astype(np.int64)
    n_sh = np.where(n_words > 0, np.maximum(n_words - ngram + 1, 1), 0)
    offsets = np.concatenate([[0], np.cumsum(n_sh)]).astype(np.int64)
    out = np.empty(offsets[-1], np.uint64)
    minhash_kernel.shingles(np.ascontiguousarray(w, np.uint64), word_start, ngram, out, offsets)  # fmix64 folds, in C
    return out, offsets


# ---------------------------------------------------------------------------
# MinHash and LSH.
# ---------------------------------------------------------------------------


def permutation_params(num_perm: int = 128, seed: int = 1) -> tuple[np.ndarray, np.ndarray]:
    """The (a, b) of each multiply-add-shift hash: uniform 64-bit integers from a seeded NumPy generator."""
    rng = np.random.default_rng(seed)
    a = rng.integers(0, np.iinfo(np.uint64).max, size=num_perm, dtype=np.uint64, endpoint=True)
    b = rng.integers(0, np.iinfo(np.uint64).max, size=num_perm, dtype=np.uint64, endpoint=True)
    return a, b


def minhash_signatures(texts, num_perm: int = 128, ngram: int = 5, seed: int = 1, words: pl.Series | None = None) -> np.ndarray:
    """(n, num_perm) uint32 MinHash signatures of word n-gram sets.

    A document without shingles gets 0xFFFFFFFF everywhere (datasketch's empty
    MinHash); `NearDuplicates` never indexes those. The minimum over each
    document's shingles of each permutation's hash, ((a x + b) mod 2^64) div 2^32
    (Dietzfelbinger's multiply-add-shift, strongly universal on 32-bit keys,
    1996), runs in C (`minhash_kernel`).
    """
    sh, offsets = shingle_hashes(texts, ngram, words)
    a, b = permutation_params(num_perm, seed)
    out = np.empty((len(offsets) - 1, num_perm), np.uint32)
    minhash_kernel.signatures(np.ascontiguousarray(sh, np.uint64), np.ascontiguousarray(offsets, np.int64), a, b, out)
    return out


def estimated_jaccard(sig_a: np.ndarray, sig_b: np.ndarray) -> np.ndarray:
    """Fraction of equal signature values, row by row (the MinHash Jaccard estimate)."""
    return (np.asarray(sig_a) == np.asarray(sig_b)).mean(axis=-1)


def lsh_band_keys(signatures: np.ndarray, bands: int = 16, rows: int = 8) -> np.ndarray:
    """(n, bands) uint64: band k hashes signature values [k rows, (k + 1) rows)."""
    signatures = np.asarray(signatures)
    if bands * rows > signatures.shape[1]:
        raise ValueError(f"bands x rows = {bands * rows} exceeds num_perm = {signatures.shape[1]}")
    keys = np.empty((len(signatures), bands), np.uint64)
    for k in range(bands):
        h = np.zeros(len(signatures), np.uint64)
        for j in range(k * rows, (k + 1) * rows):
            h = fmix64(h * _GOLDEN + signatures[:, j].astype(np.uint64))
        keys[:, k] = h
    return keys


def lsh_params(threshold: float, num_perm: int, fp_weight: float = 0.5, fn_weight: float = 0.5) -> tuple[int, int]:
    """datasketch's choice of (bands, rows): minimise the weighted false-positive area
    (candidate probability 1 - (1 - s^r)^b integrated over s < threshold) plus the
    false-negative area (its complement over s > threshold), b r <= num_perm."""
    lo = np.linspace(0.0, threshold, 1001)
    hi = np.linspace(threshold, 1.0, 1001)
    best, best_err = (1, 1), np.inf
    for b in range(1, num_perm + 1):
        for r in range(1, num_perm // b + 1):
            fp = np.trapezoid(1 - (1 - lo**r) ** b, lo)
            fn = np.trapezoid((1 - hi**r) ** b, hi)
            err = fp_weight * fp + fn_weight * fn
            if err < best_err:
                best, best_err = (b, r), err
    return best


FP_WEIGHT, FN_WEIGHT = 0.05, 0.95  # see the module's docstring: candidates are verified, misses are lost


@functools.lru_cache(maxsize=64)
def lsh_for_threshold(threshold: float, num_perm: int) -> tuple[int, int]:
    """The (bands, rows) a near-duplicate finder uses at this threshold: `lsh_params` with FP_WEIGHT and FN_WEIGHT."""
    return lsh_params(threshold, num_perm, FP_WEIGHT, FN_WEIGHT)


def candidate_probability(similarity: float, bands: int, rows: int) -> float:
    """The chance two documents at this Jaccard similarity share at least one band: 1 - (1 - s^r)^b."""
    return 1.0 - (1.0 - similarity**rows) ** bands


def bucket_pairs(rank: np.ndarray, *bucket: np.ndarray) -> np.ndarray:
    """(lo, hi) rank pairs of rows in one bucket (equal values in every `bucket` array): each member with its
    bucket's first member and with its predecessor, both in rank order. Linear in a bucket's size, and a bucket's
    pairs depend on its members alone, so buckets can be paired wherever they are gathered."""
    rank = np.asarray(rank, np.int64)
    if len(rank) < 2:
        return np.zeros((0, 2), np.int64)
    order = np.lexsort((rank, *reversed(bucket)))  # the last key sorts first
    r = rank[order]
    cont = np.ones(len(r) - 1, bool)
    for b in bucket:
        b = np.asarray(b)[order]
        cont &= b[1:] == b[:-1]
    same = np.flatnonzero(cont) + 1  # sorted positions continuing a bucket
    run_start = np.maximum.accumulate(np.where(np.r_[True, ~cont], np.arange(len(r)), 0))
    return np.concatenate([np.stack([r[run_start[same]], r[same]], axis=1), np.stack([r[same - 1], r[same]], axis=1)])


def unique_pairs(pairs: np.ndarray) -> np.ndarray:
    """Distinct rows of an (m, 2) int64 array, sorted."""
    if len(pairs) == 0:
        return np.zeros((0, 2), np.int64)
    return np.unique(np.asarray(pairs, np.int64), axis=0)


def large_star(u: np.ndarray, v: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Kiveris et al. 2014 (Connected Components in MapReduce and Beyond), large-star: given every edge of the
    nodes u it names (both directions present), connect each neighbour v > u to m(u) = min(u, N(u))."""
    m = _min_neighbour(u, v, v)
    keep = v > u
    return v[keep], m[keep]


def small_star(u: np.ndarray, v: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Kiveris et al. 2014, small-star: with N-(u) = {v in N(u), v <= u} and m = min(u, N-(u)), connect u and
    every v in N-(u) to m (edges to itself dropped)."""
    low = v <= u
    m = _min_neighbour(u, v, np.where(low, v, u))
    a = np.concatenate([v[low], u])
    b = np.concatenate([m[low], m])
    keep = a != b
    return a[keep], b[keep]


def _min_neighbour(u: np.ndarray, v: np.ndarray, candidates: np.ndarray) -> np.ndarray:
    """For each edge, min(u, candidates over u's edges), for its u."""
    nodes, inv = np.unique(u, return_inverse=True)
    m = nodes.copy()
    np.minimum.at(m, inv, candidates)
    return m[inv]


def connected_min_labels(n: int, u: np.ndarray, v: np.ndarray) -> np.ndarray:
    """Union-find over edges (u, v), vectorised: each node's label is the smallest
    node of its connected component (hook the larger root under the smaller,
    then compress paths fully, until every edge joins one root)."""
    parent = np.arange(n, dtype=np.int64)
    u = np.asarray(u, np.int64)
    v = np.asarray(v, np.int64)
    while len(u):
        ru, rv = parent[u], parent[v]
        lo, hi = np.minimum(ru, rv), np.maximum(ru, rv)
        split = lo != hi
        if not split.any():
            break
        np.minimum.at(parent, hi[split], lo[split])
        while True:
            grand = parent[parent]
            if np.array_equal(grand, parent):
                break
            parent = grand
        u, v = u[split], v[split]
    return parent


# ---------------------------------------------------------------------------
# Accumulate, resolve, transform.
# ---------------------------------------------------------------------------


class DuplicateMap(Fitted):
    """Shared shape: `add` batches, `resolve` once, `transform` any batch, save/load."""

    flag_col: str
    of_col: str
    _extra_state = ("duplicate_ids_", "kept_ids_", "pieces_")  # Arrow arrays, saved as Parquet parts (`write_pairs`)
    pieces_: pa.Array | None = None  # each duplicate's piece (its partition of the pool), where the decisions give it

    def _reset(self) -> None:
        self._ids: list[pa.Array] = []
        self._rows: list[np.ndarray] = []
        self._ranks: list[np.ndarray] = []

    def fit(self, batches) -> "DuplicateMap":
        for batch in batches:
            self.add(batch)
        self.resolve()
        return self

    def _ranked(self) -> tuple[pa.Array, np.ndarray]:
        """All accumulated doc_ids in rank order (the given ranks, then doc_id), and the accumulated rows in that order."""
        ids = pa.concat_arrays(self._ids) if self._ids else pa.array([], pa.string())
        rows = np.concatenate(self._rows) if self._rows else None
        order = pc.sort_indices(ids).to_numpy()
        if self._ranks:
            if len(self._ranks) != len(self._ids):
                raise ValueError("give a rank with every batch of signatures or with none")
            by_id = np.empty(len(order), np.int64)
            by_id[order] = np.arange(len(order))
            order = np.lexsort((by_id, np.concatenate(self._ranks)))
        return ids.take(pa.array(order)), (rows[order] if rows is not None else None)

    def _keep(self, ids: pa.Array, rows: np.ndarray, rank: np.ndarray | None) -> None:
        self._ids.append(ids)
        self._rows.append(rows)
        if rank is not None:
            self._ranks.append(np.asarray(rank, np.int64))

    def _set_groups(self, ids: pa.Array, labels: np.ndarray) -> dict[str, str]:
        """labels[i] = rank of the kept document for rank i; keep only the flagged ones."""
        dup = np.flatnonzero(labels != np.arange(len(labels)))
        self.duplicate_ids_ = ids.take(pa.array(dup, pa.int64()))
        self.kept_ids_ = ids.take(pa.array(labels[dup], pa.int64()))
        self._reset()
        return dict(zip(self.duplicate_ids_.to_pylist(), self.kept_ids_.to_pylist()))

    def set_pairs(self, duplicate_ids: pa.Array, kept_ids: pa.Array, pieces: pa.Array | None = None) -> "DuplicateMap":
        """Take decisions made elsewhere (a grouped or distributed pass): each duplicate's doc_id and the kept one's,
        and with `pieces` the piece each duplicate lies in, so a task can load one piece's pairs (`pairs_of_piece`)."""
        self.duplicate_ids_ = duplicate_ids.cast(pa.string())
        self.kept_ids_ = kept_ids.cast(pa.string())
        self.pieces_ = None if pieces is None else pieces.cast(pa.int32())
        self._reset()
        return self

    def pairs_written_apart(self) -> "DuplicateMap":
        """This map without its pairs, to save its state beside the pairs the tasks that decided them wrote into the
        same directory (`write_pairs`): no process holds them all."""
        self.duplicate_ids_ = self.kept_ids_ = self.pieces_ = None
        self._reset()
        return self

    def transform(self, batch: pa.Table) -> pa.Table:
        """Append `<flag>` (bool) and `<flag>_of` (kept doc_id, null for kept/unique docs)."""
        pos = pc.index_in(batch.column(S.DOC_ID), value_set=self.duplicate_ids_)
        of = self.kept_ids_.take(pos.combine_chunks() if isinstance(pos, pa.ChunkedArray) else pos).cast(pa.string())
        flag = pc.is_valid(pos)
        return batch.append_column(self.flag_col, flag).append_column(self.of_col, of)

    def _save_extra(self, directory: Path) -> None:
        if self.duplicate_ids_ is not None:  # else written apart
            shutil.rmtree(directory / PAIRS, ignore_errors=True)
            write_pairs(directory, 0, np.arange(len(self.duplicate_ids_)), self.duplicate_ids_, self.kept_ids_, self.pieces_)

    def _load_extra(self, directory: Path) -> None:
        t = read_pairs(directory)
        self.duplicate_ids_ = t.column(S.DOC_ID).combine_chunks()
        self.kept_ids_ = t.column("kept").combine_chunks()
        self.pieces_ = t.column(PIECE).combine_chunks() if PIECE in t.column_names else None

    @classmethod
    def pairs_of_piece(cls, directory: str | Path, piece: int) -> "DuplicateMap":
        """A map of the saved pairs whose duplicate lies in `piece` (reading that piece's row groups only) of a map
        saved with pieces."""
        t = pq.read_table(Path(directory) / PAIRS, columns=[S.DOC_ID, "kept"], filters=[(PIECE, "=", piece)])
        return cls().set_pairs(t.column(S.DOC_ID).combine_chunks(), t.column("kept").combine_chunks())


PAIRS, PIECE = "pairs", "piece"  # DIR/pairs/part-Q.parquet: (doc_id, kept, rank[, piece]), by piece then rank
LEGACY_GROUPS = "groups.parquet"  # (doc_id, kept) in rank order: a map saved by an older thresher
GROUP_ROWS = 65_536  # rows per row group of a part (one piece's pairs may take several)


def write_pairs(directory: str | Path, part: int, rank: np.ndarray, duplicate_ids: pa.Array, kept_ids: pa.Array, pieces: pa.Array | np.ndarray | None = None) -> int:
    """One part of a map's pairs (each duplicate's doc_id, its kept one's, its rank in the keep order and, where given,
    its piece), sorted by piece then rank, each row group one piece's: reading a piece skips the others' row groups.
    Returns the pairs written."""
    t = pa.table({S.DOC_ID: pa.array(duplicate_ids, pa.string()), "kept": pa.array(kept_ids, pa.string()), "rank": pa.array(np.asarray(rank, np.int64))})
    keys = [np.asarray(rank, np.int64)]
    if pieces is not None:
        t = t.append_column(PIECE, pa.array(pieces, pa.int32()))
        keys.append(t.column(PIECE).to_numpy())
    t = t.take(pa.array(np.lexsort(keys)))
    d = Path(directory) / PAIRS
    d.mkdir(parents=True, exist_ok=True)
    runs = _runs(t.column(PIECE).to_numpy(), GROUP_ROWS) if pieces is not None else [(0, t.num_rows)]
    with pq.ParquetWriter(d / f"part-{part:05d}.parquet", t.schema) as writer:
        for lo, hi in runs:
            writer.write_table(t.slice(lo, hi - lo), row_group_size=max(hi - lo, 1))
    return t.num_rows


def read_pairs(directory: str | Path) -> pa.Table:
    """A saved map's pairs in rank order (doc_id, kept[, piece]): its parts, or an older map's single file."""
    d = Path(directory)
    if (d / LEGACY_GROUPS).exists():
        return pq.read_table(d / LEGACY_GROUPS, columns=[S.DOC_ID, "kept"])
    t = pq.read_table(d / PAIRS)
    return t.take(pc.sort_indices(t.column("rank"))).drop_columns(["rank"])


def _runs(values: np.ndarray, most: int) -> list[tuple[int, int]]:
    """[lo, hi) spans of equal sorted values, none longer than `most`."""
    starts = np.flatnonzero(np.r_[True, values[1:] != values[:-1]]) if len(values) else np.zeros(0, np.int64)
    out = []
    for lo, hi in zip(starts, [*starts[1:], len(values)]):
        out += [(a, min(a + most, hi)) for a in range(int(lo), int(hi), most)]
    return out


class SavedFlags:
    """A saved DuplicateMap applied where the batches are (a Ray task): loaded there, once per process, so whoever
    builds the task (the driver) never holds the pairs. Given `pieces` (each row's piece of the pool) and a map saved
    with pieces, a batch loads only the pairs of the pieces its rows lie in (`DuplicateMap.pairs_of_piece`), so a
    worker holds a few pieces' pairs, not the pool's. Its directory is an immutable phase output."""

    def __init__(self, cls: type[DuplicateMap], directory: str | Path, pieces: Callable[[pa.Table], np.ndarray] | None = None):
        self.cls, self.directory, self.pieces = cls, str(directory), pieces

    def transform(self, batch: pa.Table) -> pa.Table:
        saved = (Path(self.directory) / STATE_FILE).stat().st_mtime_ns
        if self.pieces is None or not _has_pieces(self.directory, saved):
            return _loaded(self.cls, self.directory, saved).transform(batch)
        piece = self.pieces(batch)  # each row's piece (`partitions.PieceRanges`)
        found = np.unique(piece)
        if len(found) == 1:
            return _loaded_piece(self.cls, self.directory, saved, int(found[0])).transform(batch)
        rows = [np.flatnonzero(piece == p) for p in found]
        parts = [_loaded_piece(self.cls, self.directory, saved, int(p)).transform(batch.take(pa.array(r))) for p, r in zip(found, rows)]
        return pa.concat_tables(parts).take(pa.array(np.argsort(np.concatenate(rows), kind="stable")))


@functools.lru_cache(maxsize=4)  # the exact, near and semantic maps of the job at hand
def _loaded(cls: type[DuplicateMap], directory: str, saved_ns: int) -> DuplicateMap:
    return cls.load(directory)


@functools.lru_cache(maxsize=8)
def _has_pieces(directory: str, saved_ns: int) -> bool:
    parts = sorted((Path(directory) / PAIRS).glob("*.parquet"))
    return bool(parts) and PIECE in pq.read_schema(parts[0]).names


@functools.lru_cache(maxsize=16)  # a task's pieces (a row-group span may cross into the next piece), per map
def _loaded_piece(cls: type[DuplicateMap], directory: str, saved_ns: int, piece: int) -> DuplicateMap:
    return cls.pairs_of_piece(directory, piece)


class ExactDuplicates(DuplicateMap):
    """Documents whose normalised text is identical (128-bit BLAKE2b of it).

    Memory: 16 bytes plus the doc_id per accumulated document.
    """

    flag_col, of_col = S.D_EXACT_DUP, S.D_EXACT_DUP_OF

    def __init__(self):
        self._reset()

    def add(self, batch: pa.Table) -> None:
        kept, hashes = self.signatures(batch)
        self.add_signatures(batch.column(S.DOC_ID).combine_chunks().filter(pa.array(kept)), hashes)

    @staticmethod
    def signatures(batch: pa.Table, words: pl.Series | None = None) -> tuple[np.ndarray, np.ndarray]:
        """Which rows have a text (mask), and their (n, 2) uint64 hashes: what `add` keeps, computable anywhere
        (`words`: the batch's `normalised_words`, shared with `NearDuplicates.signatures`)."""
        h, valid = text_hashes(batch.column(S.TEXT), words)
        return valid, h[valid]

    def add_signatures(self, ids: pa.Array, hashes: np.ndarray, rank: np.ndarray | None = None) -> None:
        self._keep(ids, hashes, rank)

    def resolve(self) -> dict[str, str]:
        """{doc_id: kept doc_id} for every duplicate (kept documents are absent)."""
        ids, h = self._ranked()
        n = len(ids)
        if n == 0:
            return self._set_groups(ids, np.zeros(0, np.int64))
        order = np.lexsort((np.arange(n), h[:, 1], h[:, 0]))  # by hash, then rank
        hs = h[order]
        new_group = np.r_[True, (hs[1:] != hs[:-1]).any(axis=1)]
        first = order[np.flatnonzero(new_group)]
        labels = np.empty(n, np.int64)
        labels[order] = first[np.cumsum(new_group) - 1]
        return self._set_groups(ids, labels)


class NearDuplicates(DuplicateMap):
    """MinHash LSH near duplicates with verified candidates and union-find groups."""

    flag_col, of_col = S.D_NEAR_DUP, S.D_NEAR_DUP_OF

    def __init__(
        self,
        threshold: float = 0.8,
        num_perm: int = 128,
        ngram: int = 5,
        bands: int | None = None,
        rows: int | None = None,
        seed: int = 1,
        verify: bool = True,
    ):
        """bands and rows: both, or neither to derive them from the threshold (`lsh_for_threshold`)."""
        if (bands is None) != (rows is None):
            raise ValueError("give both bands and rows, or neither (derived from the threshold)")
        if bands is None:
            bands, rows = lsh_for_threshold(threshold, num_perm)
        if bands * rows > num_perm:
            raise ValueError(f"bands x rows = {bands * rows} exceeds num_perm = {num_perm}")
        self.threshold, self.num_perm, self.ngram = threshold, num_perm, ngram
        self.bands, self.rows, self.seed, self.verify = bands, rows, seed, verify
        self._reset()

    def add(self, batch: pa.Table) -> None:
        """Keep doc_id and the signature (verify) or band keys (no verify) of docs with shingles."""
        kept, sig = self.signatures(batch)
        self.add_signatures(batch.column(S.DOC_ID).combine_chunks().filter(pa.array(kept)), sig)

    def signatures(self, batch: pa.Table, words: pl.Series | None = None) -> tuple[np.ndarray, np.ndarray]:
        """Which rows have shingles (mask), and their (n, num_perm) uint32 MinHash signatures: computable anywhere
        (a Ray task per input partition), then given to `add_signatures` with the kept rows' doc_ids (`words`: the
        batch's `normalised_words`, when the caller has them)."""
        sig = minhash_signatures(batch.column(S.TEXT), self.num_perm, self.ngram, self.seed, words)
        has = (sig != _EMPTY).any(axis=1)
        return has, sig[has]

    def add_signatures(self, ids: pa.Array, sig: np.ndarray, rank: np.ndarray | None = None) -> None:
        self._keep(ids, sig if self.verify else lsh_band_keys(sig, self.bands, self.rows), rank)

    def candidate_pairs(self, band_keys_of) -> np.ndarray:
        """Unique (lo, hi) rank pairs sharing a band key (`bucket_pairs`, band by band)."""
        pairs, n = [], 0
        for k in range(self.bands):
            keys = band_keys_of(k)
            n = len(keys)
            pairs.append(bucket_pairs(np.arange(n), keys))
        return unique_pairs(np.concatenate(pairs)) if pairs else np.zeros((0, 2), np.int64)

    def resolve(self) -> dict[str, str]:
        """{doc_id: kept doc_id} for every near duplicate (kept documents are absent)."""
        ids, rows = self._ranked()
        n = len(ids)
        if n == 0:
            return self._set_groups(ids, np.zeros(0, np.int64))
        if self.verify:
            sig = rows
            r = self.rows
            pairs = self.candidate_pairs(lambda k: lsh_band_keys(sig[:, k * r : (k + 1) * r], 1, r)[:, 0])
            ok = np.zeros(len(pairs), bool)
            for s in range(0, len(pairs), 1 << 16):
                p = pairs[s : s + (1 << 16)]
                ok[s : s + len(p)] = estimated_jaccard(sig[p[:, 0]], sig[p[:, 1]]) >= self.threshold
            pairs = pairs[ok]
        else:
            keys = rows
            pairs = self.candidate_pairs(lambda k: keys[:, k])
        self.n_union_pairs_ = len(pairs)  # pairs merged by union-find (verified ones with verify)
        return self._set_groups(ids, connected_min_labels(n, pairs[:, 0], pairs[:, 1]))
