import os
import shutil

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import ray

from thresher.operators import schema as S
from thresher.operators.fitted import STATE_FILE
from thresher.operators.dedup import (
    FN_WEIGHT,
    FP_WEIGHT,
    ExactDuplicates,
    NearDuplicates,
    SavedFlags,
    connected_min_labels,
    estimated_jaccard,
    lsh_band_keys,
    lsh_for_threshold,
    lsh_params,
    minhash_signatures,
    normalise_text,
    permutation_params,
    shingle_hashes,
)

from .toy_corpus import generate


def _table(ids, texts):
    return pa.table({S.DOC_ID: pa.array(ids, pa.string()), S.TEXT: pa.array(texts, pa.string())})


def _words(start, stop):
    return " ".join(f"w{i}" for i in range(start, stop))


# --- exact duplicates ---------------------------------------------------------


def test_normalisation_ignores_case_whitespace_and_punctuation():
    out = normalise_text(["Hello,  World!", "hello world", "HELLO\n\tworld", "hello-world", None]).to_list()
    assert out == ["hello world"] * 4 + [None]


def test_exact_duplicates_keep_the_smallest_doc_id():
    ids = ["d3", "d1", "d2", "d0", "d4", "d5"]
    texts = ["Hello World", "hello   world", "HELLO\nworld!", "hello there", None, "Hello there."]
    ex = ExactDuplicates()
    ex.add(_table(ids[:3], texts[:3]))
    ex.add(_table(ids[3:], texts[3:]))
    assert ex.resolve() == {"d2": "d1", "d3": "d1", "d5": "d0"}
    out = ex.transform(_table(ids, texts))
    assert out.column(S.D_EXACT_DUP).to_pylist() == [True, False, True, False, False, True]
    assert out.column(S.D_EXACT_DUP_OF).to_pylist() == ["d1", None, "d1", None, None, "d0"]


def test_exact_duplicates_save_load_roundtrip(tmp_path):
    t = _table(["a", "b", "c"], ["x y", "X  y", "z"])
    ex = ExactDuplicates().fit([t])
    ex.save(tmp_path)
    assert ExactDuplicates.load(tmp_path).transform(t).equals(ex.transform(t))


# --- MinHash ------------------------------------------------------------------


def test_signatures_are_the_minimum_multiply_add_shift():
    from thresher.operators import minhash_kernel

    a, b = permutation_params(8, seed=3)
    a[0], b[0] = 2**64 - 1, 2**64 - 1  # the largest parameters
    a[1], b[1] = 3, 2**32 - 1  # hand-computed: 3 x + 2^32 - 1, top 32 of 64 bits
    x = np.array([0, 1, 2**31, 2**32 - 1, 123456789], np.uint64)
    hashes = [[((int(ai) * int(xi) + int(bi)) % 2**64) >> 32 for ai, bi in zip(a, b)] for xi in x]
    # one document per shingle, then one holding all five, then one without shingles
    offsets = np.array([0, 1, 2, 3, 4, 5, 10, 10], np.int64)
    got = np.empty((7, 8), np.uint32)
    minhash_kernel.signatures(np.concatenate([x, x]), offsets, a, b, got)
    assert got[:5].tolist() == hashes
    assert got[5].tolist() == np.min(hashes, axis=0).tolist()
    assert got[6].tolist() == [0xFFFFFFFF] * 8
    # 3 x + 2^32 - 1 over 2^32: x = 1 -> 1; x = 2^31 -> 2 (2.5 * 2^32 - 1); x = 2^32 - 1 -> 3 (4 * 2^32 - 4);
    # x = 123456789 -> 1 (1.086 * 2^32)
    assert got[:5, 1].tolist() == [0, 1, 2, 3, 1]
    assert len({int(v) for v in a}) == 8 and int(a.max()) >= 2**62  # 64-bit parameters, not 61
    with pytest.raises(ValueError):  # offsets past the shingles
        minhash_kernel.signatures(x, np.array([0, 6], np.int64), a, b, np.empty((1, 8), np.uint32))


def test_the_shingle_kernel_folds_each_window_of_word_hashes_as_the_numpy_expression_does():
    from thresher.operators import minhash_kernel
    from thresher.operators.hashing import fmix64

    golden = np.uint64(0x9E3779B97F4A7C15)
    rng = np.random.default_rng(7)
    for ngram in (1, 2, 5, 9):
        lengths = np.array([0, 1, ngram - 1, ngram, ngram + 3, 0, 40])
        words = rng.integers(0, 2**64, lengths.sum(), dtype=np.uint64, endpoint=False)
        word_start = np.concatenate([[0], np.cumsum(lengths)]).astype(np.int64)
        want: list[int] = []
        for d, n in enumerate(lengths):  # by hand: every window, cut at the document's end; one for a short document
            for i in range(max(n - ngram + 1, 1) if n else 0):
                h = np.zeros(1, np.uint64)  # arrays wrap mod 2^64 without a warning
                for j in range(i, min(i + ngram, n)):
                    h = fmix64(h * golden + words[word_start[d] + j : word_start[d] + j + 1])
                want.append(int(fmix64(h)[0] >> np.uint64(32)))
        offsets = np.concatenate([[0], np.cumsum([max(n - ngram + 1, 1) if n else 0 for n in lengths])]).astype(np.int64)
        got = np.empty(offsets[-1], np.uint64)
        minhash_kernel.shingles(words, word_start, ngram, got, offsets)
        assert got.tolist() == want, ngram
    with pytest.raises(ValueError):  # offsets that do not hold each document's shingle count
        minhash_kernel.shingles(words, word_start, 9, np.empty(offsets[-1] + 1, np.uint64), offsets + np.arange(len(offsets)))


def test_shingles_are_word_5grams_of_normalised_words():
    sh, off = shingle_hashes(["a b c d e f", "A, b c  d E F!", "a b", ""], ngram=5)
    assert off.tolist() == [0, 2, 4, 5, 5]  # 6 words -> 2 shingles; 2 words -> 1; none -> 0
    assert sh[0:2].tolist() == sh[2:4].tolist()
    assert len(set(sh.tolist())) == 3
    assert sh.max() < 2**32


@pytest.mark.parametrize("overlap", [0, 25, 50, 80, 100])
def test_minhash_estimates_jaccard(overlap):
    # Distinct words: A has 100 shingles (104 words); B shifts by 100 - overlap,
    # sharing exactly `overlap` shingles, so J = overlap / (200 - overlap).
    shift = 100 - overlap
    sig = minhash_signatures([_words(0, 104), _words(shift, shift + 104)], num_perm=256)
    assert sig.dtype == np.uint32 and sig.shape == (2, 256)
    true_j = overlap / (200 - overlap)
    # sd of the estimate is sqrt(J(1-J)/256) <= 0.032
    assert estimated_jaccard(sig[0], sig[1]) == pytest.approx(true_j, abs=0.1)


def test_minhash_is_deterministic_and_empty_docs_have_no_signature():
    texts = [_words(0, 50), "", None]
    sig = minhash_signatures(texts)
    assert np.array_equal(sig, minhash_signatures(texts))
    assert (sig[1:] == 0xFFFFFFFF).all()
    assert not np.array_equal(sig[:1], minhash_signatures(texts[:1], seed=2))


def test_band_keys_collide_only_on_equal_bands():
    sig = np.arange(3 * 16, dtype=np.uint32).reshape(3, 16)
    sig[1, :8] = sig[0, :8]
    keys = lsh_band_keys(sig, bands=2, rows=8)
    assert keys.shape == (3, 2) and keys.dtype == np.uint64
    assert keys[0, 0] == keys[1, 0] and keys[0, 1] != keys[1, 1]
    assert len(set(keys[:, 1].tolist())) == 3
    with pytest.raises(ValueError):
        lsh_band_keys(sig, bands=3, rows=8)


def test_lsh_params_match_datasketch_for_threshold_08():
    assert lsh_params(0.8, 128) == (9, 13)


def test_union_find_labels_components_by_their_smallest_node():
    labels = connected_min_labels(7, np.array([5, 3, 4, 6]), np.array([3, 1, 5, 2]))
    assert labels.tolist() == [0, 1, 2, 1, 1, 1, 2]


# --- duplicates planted in a toy corpus ------------------------------------------


@pytest.fixture(scope="module")
def corpus():
    t = generate(1000, seed=0)
    return t.select([S.DOC_ID, S.TEXT]), t


def _fit(finder, table, batch_rows):
    for s in range(0, table.num_rows, batch_rows):
        finder.add(table.slice(s, batch_rows))
    return finder.resolve()


def _recall_precision(mapping, truth, kinds):
    """Recall: a planted copy counts when it ends in the same group as its original
    (same kept doc_id; the kept one may be either, whichever has the smaller id).
    Precision: a flagged doc counts when its kept doc is from its planted group
    (original plus its copies); any other flag - including a genuine but
    unplanted duplicate - counts against it."""
    ids = truth.column(S.DOC_ID).to_pylist()
    planted = truth.column("planted").to_pylist()
    dup_of = truth.column("dup_of").to_pylist()
    kept = lambda d: mapping.get(d, d)  # noqa: E731
    copies = [(d, o) for d, o, p in zip(ids, dup_of, planted) if p in kinds]
    recall = np.mean([kept(d) == kept(o) for d, o in copies])
    group = {d: (o or d) for d, o in zip(ids, dup_of)}
    precision = np.mean([group[d] == group[k] for d, k in mapping.items()]) if mapping else 1.0
    return recall, precision


def test_near_duplicates_find_the_planted_copies(corpus):
    table, truth = corpus
    near = NearDuplicates()
    mapping = _fit(near, table, 300)
    recall, precision = _recall_precision(mapping, truth, ("near_dup", "exact_dup"))
    near_only, _ = _recall_precision(mapping, truth, ("near_dup",))
    assert recall >= 0.95 and near_only >= 0.95
    assert precision >= 0.95
    assert all(k < d for d, k in mapping.items())  # the smallest doc_id is kept
    out = near.transform(table.slice(0, 500))
    flagged = out.column(S.D_NEAR_DUP).to_numpy(zero_copy_only=False)
    of = out.column(S.D_NEAR_DUP_OF).to_pylist()
    assert flagged.any()
    assert all((o is not None) == f for o, f in zip(of, flagged))


def test_exact_duplicates_find_the_planted_exact_copies(corpus):
    table, truth = corpus
    mapping = _fit(ExactDuplicates(), table, 300)
    recall, precision = _recall_precision(mapping, truth, ("exact_dup",))
    assert recall == 1.0 and precision == 1.0


def test_near_duplicates_do_not_depend_on_batching_or_order(corpus):
    table, _ = corpus
    sub = table.slice(0, 500)
    a = _fit(NearDuplicates(), sub, 500)
    shuffled = sub.take(np.random.default_rng(0).permutation(sub.num_rows))
    b = _fit(NearDuplicates(), shuffled, 111)
    assert a == b and len(a) > 0


def test_near_duplicates_without_verification_store_band_keys():
    texts = [_words(0, 60), _words(0, 60) + " extra", _words(500, 560)]
    near = NearDuplicates(verify=False)
    near.add(_table(["b", "a", "c"], texts))
    assert near._rows[0].shape == (3, 16) and near._rows[0].dtype == np.uint64
    assert near.resolve() == {"b": "a"}


def test_near_duplicates_save_load_keeps_params_and_groups(tmp_path):
    t = _table(["b", "a", "c"], [_words(0, 60), _words(0, 60) + " extra", _words(500, 560)])
    near = NearDuplicates(threshold=0.7, num_perm=64, bands=8, rows=8, verify=False).fit([t])
    near.save(tmp_path)
    again = NearDuplicates.load(tmp_path)
    assert (again.threshold, again.num_perm, again.bands, again.verify) == (0.7, 64, 8, False)
    assert again.n_union_pairs_ == near.n_union_pairs_
    assert again.transform(t).equals(near.transform(t))


def test_the_document_of_the_smallest_rank_is_kept_then_the_smallest_doc_id():
    """Ranks are the pipeline's input positions: an earlier document is kept over a later copy whatever their ids."""
    import numpy as np
    import pyarrow as pa

    from thresher.operators.dedup import ExactDuplicates, NearDuplicates

    text = "the same words in the same order for every copy of this document " * 3
    batch = pa.table({"doc_id": ["b-old", "a-copy", "c-copy", "d-other"], "text": [text, text, text, "something else entirely " * 5]})
    for finder in (ExactDuplicates(), NearDuplicates(threshold=0.8)):
        kept, rows = finder.signatures(batch)
        ids = batch.column("doc_id").combine_chunks().filter(pa.array(kept))
        finder.add_signatures(ids, rows, rank=np.array([5, 9, 5, 1])[kept])  # b-old and c-copy tie at 5: b-old by doc_id
        assert finder.resolve() == {"a-copy": "b-old", "c-copy": "b-old"}
    plain = ExactDuplicates()
    plain.add(batch)  # no ranks: the smallest doc_id is kept
    assert plain.resolve() == {"b-old": "a-copy", "c-copy": "a-copy"}


def _areas(b: int, r: int, t):
    """The false-positive and false-negative areas of (b, r) at threshold t, integrated exactly (binomial expansion)."""
    from fractions import Fraction
    from math import comb

    fp = -sum(Fraction(comb(b, k) * (-1) ** k) * t ** (r * k + 1) / (r * k + 1) for k in range(1, b + 1))
    fn = sum(Fraction(comb(b, k) * (-1) ** k) * (1 - t ** (r * k + 1)) / (r * k + 1) for k in range(b + 1))
    return fp, fn


def test_bands_and_rows_minimise_the_weighted_areas_as_integrated_by_hand():
    from fractions import Fraction

    for t, num_perm in ((Fraction(4, 5), 12), (Fraction(1, 2), 12), (Fraction(7, 10), 20)):
        pairs = [(b, r) for b in range(1, num_perm + 1) for r in range(1, num_perm // b + 1)]
        for wp, wn, chosen in ((Fraction(1, 2), Fraction(1, 2), lsh_params(float(t), num_perm)), (Fraction(1, 20), Fraction(19, 20), lsh_for_threshold(float(t), num_perm))):
            errors = {p: wp * a + wn * m for p, (a, m) in ((p, _areas(*p, t)) for p in pairs)}
            assert chosen == min(errors, key=errors.get), (t, num_perm, wp)
    assert (FP_WEIGHT, FN_WEIGHT) == (0.05, 0.95) and lsh_for_threshold(0.8, 128) == (16, 8)  # the defaults' choice
    assert lsh_for_threshold(0.5, 128)[1] < lsh_for_threshold(0.9, 128)[1]  # a lower threshold: shorter bands, more candidates


def test_a_finder_takes_its_bands_from_the_threshold_unless_given_both():
    a, b = NearDuplicates(threshold=0.5), NearDuplicates(threshold=0.5, bands=4, rows=8)
    assert (a.bands, a.rows) == lsh_for_threshold(0.5, 128) and (b.bands, b.rows) == (4, 8)
    with pytest.raises(ValueError, match="both bands and rows"):
        NearDuplicates(bands=4)


def test_saved_flags_apply_a_saved_map_where_the_batch_is(local_ray, tmp_path):
    """The score phase hands its tasks the map's directory, not its pairs: each process loads it once, and a map saved
    again in the same place is read again."""
    ExactDuplicates().set_pairs(pa.array(["b"]), pa.array(["a"])).save(tmp_path / "m")
    flags = SavedFlags(ExactDuplicates, tmp_path / "m")
    batch = pa.table({S.DOC_ID: ["a", "b", "c"]})
    there = ray.get(ray.remote(lambda f, b: f.transform(b)).remote(flags, batch))
    for out in (flags.transform(batch), there):
        assert out.column(S.D_EXACT_DUP).to_pylist() == [False, True, False] and out.column(S.D_EXACT_DUP_OF).to_pylist() == [None, "a", None]
    ExactDuplicates().set_pairs(pa.array(["c"]), pa.array(["a"])).save(tmp_path / "m")
    state = tmp_path / "m" / STATE_FILE
    os.utime(state, ns=(state.stat().st_atime_ns, state.stat().st_mtime_ns + 10**9))
    assert flags.transform(batch).column(S.D_EXACT_DUP).to_pylist() == [False, False, True]


def test_a_map_saved_with_pieces_loads_one_piece_and_flags_as_the_whole_map(local_ray, tmp_path):
    """Pairs saved with each duplicate's piece: one row group per piece, the whole map back in its own order, and
    SavedFlags given each row's piece loads only the pieces a batch's rows lie in, with the whole map's flags."""
    from thresher.operators.dedup import PAIRS, _loaded_piece
    from thresher.pipeline.partitions import PieceRanges

    dup, kept, piece = ["d3", "d0", "d2", "d1"], ["k3", "k0", "k2", "k1"], [1, 0, 1, 0]
    ExactDuplicates().set_pairs(pa.array(dup), pa.array(kept), pa.array(piece)).save(tmp_path / "m")
    meta = pq.ParquetFile(tmp_path / "m" / PAIRS / "part-00000.parquet").metadata
    stats = [meta.row_group(i).column(3).statistics for i in range(meta.num_row_groups)]  # doc_id, kept, rank, piece
    assert [(s.min, s.max) for s in stats] == [(0, 0), (1, 1)]
    whole = ExactDuplicates.load(tmp_path / "m")
    assert whole.duplicate_ids_.to_pylist() == dup and whole.pieces_.to_pylist() == piece
    assert ExactDuplicates.pairs_of_piece(tmp_path / "m", 1).duplicate_ids_.to_pylist() == ["d3", "d2"]

    # file f: rows 0-9 are piece 0, rows 10 on piece 1; another file's rows are in no piece
    pieces = PieceRanges.of([{"path": "f", "range": [0, 10]}, {"path": "f", "range": [10, -1]}])
    batch = pa.table({S.DOC_ID: ["d1", "d2", "x", "d0", "d3"], S.INPUT_FILE: ["f", "f", "g", "f", "f"], S.INPUT_OFFSET: [1, 12, 0, 3, 500]})
    assert pieces(batch).tolist() == [0, 1, -1, 0, 1]
    flags = SavedFlags(ExactDuplicates, tmp_path / "m", pieces)
    out = flags.transform(batch)
    assert out.column(S.D_EXACT_DUP).to_pylist() == [True, True, False, True, True]
    assert out.column(S.D_EXACT_DUP_OF).to_pylist() == ["k1", "k2", None, "k0", "k3"]
    assert out.equals(SavedFlags(ExactDuplicates, tmp_path / "m").transform(batch))
    _loaded_piece.cache_clear()
    only = batch.filter(pa.array([True, False, False, True, False]))  # piece 0's rows
    flags.transform(only)
    assert _loaded_piece.cache_info().currsize == 1  # piece 1's pairs were never read
    there = ray.get(ray.remote(lambda f, b: f.transform(b)).remote(flags, batch))
    assert there.equals(out)


def test_a_map_saved_without_pieces_is_applied_whole(tmp_path):
    """Maps of an older work directory (and SemDeDup's) have no pieces: SavedFlags with pieces applies the whole map."""
    from thresher.pipeline.partitions import PieceRanges

    ExactDuplicates().set_pairs(pa.array(["b"]), pa.array(["a"])).save(tmp_path / "m")
    pieces = PieceRanges.of([{"path": "f", "range": [0, -1]}])
    out = SavedFlags(ExactDuplicates, tmp_path / "m", pieces).transform(pa.table({S.DOC_ID: ["a", "b"], S.INPUT_FILE: ["f", "f"], S.INPUT_OFFSET: [0, 1]}))
    assert out.column(S.D_EXACT_DUP).to_pylist() == [False, True]


def test_pairs_written_apart_by_the_deciding_tasks_load_as_one_map(tmp_path):
    """Each reduce task writes its partition's pairs (`write_pairs`) and the state is saved beside them without pairs:
    the map loads whole in rank order, and a piece at a time from every part; a map of an older thresher (one
    groups.parquet) still loads."""
    from thresher.operators.dedup import write_pairs

    write_pairs(tmp_path / "m", 1, np.array([5, 1]), pa.array(["e", "b"]), pa.array(["a", "a"]), np.array([1, 0]))
    write_pairs(tmp_path / "m", 0, np.array([3]), pa.array(["d"]), pa.array(["c"]), np.array([1]))
    write_pairs(tmp_path / "m", 2, np.zeros(0, np.int64), pa.array([], pa.string()), pa.array([], pa.string()), np.zeros(0, np.int64))
    ExactDuplicates().pairs_written_apart().save(tmp_path / "m")
    m = ExactDuplicates.load(tmp_path / "m")
    assert (m.duplicate_ids_.to_pylist(), m.kept_ids_.to_pylist(), m.pieces_.to_pylist()) == (["b", "d", "e"], ["a", "c", "a"], [0, 1, 1])
    assert sorted(ExactDuplicates.pairs_of_piece(tmp_path / "m", 1).duplicate_ids_.to_pylist()) == ["d", "e"]

    legacy = tmp_path / "old"
    ExactDuplicates().set_pairs(pa.array(["y"]), pa.array(["x"])).save(legacy)
    shutil.rmtree(legacy / "pairs")
    pq.write_table(pa.table({S.DOC_ID: ["y"], "kept": ["x"]}), legacy / "groups.parquet")
    assert ExactDuplicates.load(legacy).duplicate_ids_.to_pylist() == ["y"]
