"""Duplicates resolved by shuffles over Ray tasks give the single-process detectors' decisions exactly."""

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from thresher.operators import schema as S
from thresher.operators.dedup import ExactDuplicates, NearDuplicates, bucket_pairs, connected_min_labels, large_star, small_star, unique_pairs
from thresher.pipeline import dedup_shuffle, ids, shuffle
from thresher.pipeline.seen import Order

from .toy_corpus import generate


def _both_ways(edges):
    e = np.array(edges, np.int64)
    return np.r_[e[:, 0], e[:, 1]], np.r_[e[:, 1], e[:, 0]]


def _set(a, b):
    return sorted(set(zip(a.tolist(), b.tolist())))


def test_stars_on_a_path_by_hand():
    # path 1-2-3-4: m(1)=1, m(2)=1, m(3)=2, m(4)=3; large-star links each larger neighbour to m of its node
    assert _set(*large_star(*_both_ways([(1, 2), (2, 3), (3, 4)]))) == [(2, 1), (3, 1), (4, 2)]
    # small-star at 4: N-(4) = {2}, so 4 -> 2 stays; at 2 and 3: N- = {1}; a star around 1 is not yet reached
    assert _set(*small_star(*_both_ways([(2, 1), (3, 1), (4, 2)]))) == [(2, 1), (3, 1), (4, 2)]
    assert _set(*large_star(*_both_ways([(2, 1), (3, 1), (4, 2)]))) == [(2, 1), (3, 1), (4, 1)]
    # a star around its smallest node is left as it is by both
    star = [(2, 1), (3, 1), (4, 1)]
    assert _set(*large_star(*_both_ways(star))) == star and _set(*small_star(*_both_ways(star))) == star


def test_bucket_pairs_by_hand():
    # band 0: ranks 5, 2, 9 share key 7 -> first is 2: (2,5), (2,9) and predecessors (2,5), (5,9); rank 1 alone
    rank = np.array([5, 2, 9, 1, 3, 4])
    band = np.array([0, 0, 0, 0, 1, 0])
    key = np.array([7, 7, 7, 8, 7, 8], np.uint64)
    assert unique_pairs(bucket_pairs(rank, band, key)).tolist() == [[1, 4], [2, 5], [2, 9], [5, 9]]


def _stars_in_process(n, u, v):
    """The loop resolve_near runs, on one partition."""
    a, b = u, v
    before = None
    while True:
        e = unique_pairs(np.stack([np.r_[a, b], np.r_[b, a]], axis=1))
        e = e[e[:, 0] != e[:, 1]]
        now = e.tobytes()
        if now == before:
            break
        before = now
        a, b = large_star(e[:, 0], e[:, 1])
        e = unique_pairs(np.stack([np.r_[a, b], np.r_[b, a]], axis=1))
        e = e[e[:, 0] != e[:, 1]]
        a, b = small_star(e[:, 0], e[:, 1])
    labels = np.arange(n)
    hub = e[:, 1] < e[:, 0]
    labels[e[hub, 0]] = e[hub, 1]
    return labels


@pytest.mark.parametrize("seed", range(5))
def test_stars_settle_on_the_smallest_node_of_each_component(seed):
    rng = np.random.default_rng(seed)
    n = 300
    u, v = rng.integers(0, n, 260), rng.integers(0, n, 260)
    chain = np.arange(200, 259)  # a long path, the worst case for min-label propagation
    u, v = np.r_[u, chain], np.r_[v, chain + 1]
    assert _stars_in_process(n, u, v).tolist() == connected_min_labels(n, u, v).tolist()


@pytest.fixture(scope="module")
def pieces(tmp_path_factory):
    """The toy corpus (planted exact and near copies) as three signature pieces of unequal size, the files of
    the dedup phase, with its documents' ranks (input order, a few reversed as if seen by an earlier run)."""
    t = generate(1200, seed=3).select([S.DOC_ID, S.TEXT])
    d = tmp_path_factory.mktemp("pieces")
    files = {"a.parquet": 0, "b.parquet": 1, "c.parquet": 2}
    near = NearDuplicates(threshold=0.7)
    paths = {"exact": [], "near": []}
    for (name, i), (s, e) in zip(files.items(), [(0, 500), (500, 620), (620, 1200)]):
        part = t.slice(s, e - s)
        where = pa.table({S.DOC_ID: part.column(S.DOC_ID), S.INPUT_FILE: pa.array([name] * part.num_rows), S.INPUT_OFFSET: pa.array(np.arange(part.num_rows), pa.int64())})
        kept, h = ExactDuplicates.signatures(part)
        pq.write_table(where.filter(pa.array(kept)).append_column("h0", pa.array(h[:, 0])).append_column("h1", pa.array(h[:, 1])), d / f"{name}.exact")
        kept, sig = near.signatures(part)
        sig_col = pa.FixedSizeListArray.from_arrays(pa.array(sig.reshape(-1), pa.uint32()), near.num_perm)
        pq.write_table(where.filter(pa.array(kept)).append_column("sig", sig_col), d / f"{name}.near")
        paths["exact"].append((str(d / f"{name}.exact"), i))  # each file its own piece
        paths["near"].append((str(d / f"{name}.near"), i))
    pos = [(i << ids.OFFSET_BITS) + np.arange(n) for i, n in enumerate([500, 120, 580])]
    since = [np.zeros(n, np.int64) for n in (500, 120, 580)]
    since[2][80:140] = -1  # seen by an earlier run: kept before their earlier copies
    return files, paths, Order.write(d / "order", list(zip(pos, since)))


def _in_process(finder, paths, files, order):
    for p, piece in paths:
        t = pq.read_table(p)
        mine, rank = order.of(piece, ids.positions(t, files))
        assert mine.all()
        if "sig" in t.column_names:
            a = t.column("sig").combine_chunks()
            rows = np.asarray(a.flatten().to_numpy(), np.uint32).reshape(len(a), -1)
        else:
            rows = np.stack([t.column("h0").to_numpy(), t.column("h1").to_numpy()], axis=1)
        finder.add_signatures(t.column(S.DOC_ID).combine_chunks(), rows, rank=rank)
    return finder.resolve()


@pytest.mark.parametrize("parts", [1, 2, 5])
def test_near_duplicates_on_the_workers_equal_the_single_process_detector(local_ray, pieces, parts, tmp_path):
    files, paths, order = pieces
    expected = _in_process(NearDuplicates(threshold=0.7), paths["near"], files, order)
    assert len(expected) > 100  # the toy corpus plants copies, and the earlier run's documents move some groups' kept one
    facts = dedup_shuffle.resolve_near(NearDuplicates(threshold=0.7), paths["near"], files, order, parts, tmp_path, tmp_path / "near")
    got = NearDuplicates.load(tmp_path / "near")  # saved by a task: the caller never held the pairs
    assert dict(zip(got.duplicate_ids_.to_pylist(), got.kept_ids_.to_pylist())) == expected
    assert got.duplicate_ids_.to_pylist() == list(expected)  # and in the same (rank) order
    assert facts == {"duplicates": len(expected)} and got.n_union_pairs_ == len(expected)
    assert [p.name for p in tmp_path.iterdir()] == ["near"]  # the exchange files are gone


@pytest.mark.parametrize("parts", [1, 3])
def test_exact_duplicates_on_the_workers_equal_the_single_process_detector(local_ray, pieces, parts, tmp_path):
    files, paths, order = pieces
    expected = _in_process(ExactDuplicates(), paths["exact"], files, order)
    assert len(expected) > 20
    facts = dedup_shuffle.resolve_exact(ExactDuplicates(), paths["exact"], files, order, parts, tmp_path, tmp_path / "exact")
    got = ExactDuplicates.load(tmp_path / "exact")
    assert dict(zip(got.duplicate_ids_.to_pylist(), got.kept_ids_.to_pylist())) == expected and facts == {"duplicates": len(expected)}


def test_no_pieces_no_duplicates(local_ray, pieces, tmp_path):
    files, _, order = pieces
    assert dedup_shuffle.resolve_near(NearDuplicates(), [], files, order, 2, tmp_path, tmp_path / "near") == {"duplicates": 0}
    assert dedup_shuffle.resolve_exact(ExactDuplicates(), [], files, order, 2, tmp_path, tmp_path / "exact") == {"duplicates": 0}
    assert len(NearDuplicates.load(tmp_path / "near").duplicate_ids_) == len(ExactDuplicates.load(tmp_path / "exact").duplicate_ids_) == 0


def test_reduce_partitions_are_one_per_cpu_and_none_smaller_than_part_rows(local_ray):
    assert shuffle.partition_count() == 2
    assert [shuffle.reduce_partitions(n) for n in (0, 4000, shuffle.PART_ROWS, shuffle.PART_ROWS + 1, 10**7)] == [1, 1, 1, 2, 2]
