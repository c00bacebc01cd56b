"""The C repetition scans against hand-computed cases and against datatrove's loops written out in Python."""

import random
from collections import Counter

import numpy as np
import polars as pl
import pytest

from thresher.operators import rulescan


def lists(rows):
    return pl.Series(rows, dtype=pl.List(pl.String))


def test_duplicates_by_hand():
    n, chars = rulescan.duplicates(lists([["a", "b", "a", "a"], [], None, ["é", "é"], ["a", None, "a"], ["ab", "a", "b"]]))
    assert n.tolist() == [2, 0, 0, 1, 1, 0]
    assert chars.tolist() == [2, 0, 0, 1, 1, 0]  # characters, not bytes: é is two bytes


def test_ngrams_by_hand():
    words = lists([["ab", "c", "a", "bc", "x"], ["a"] * 5, ["x", "y", "x", "y", "x"], ["a"], []])
    top, dup = rulescan.ngram_chars(words, [2], [2])
    # "ab c" "c a" "a bc" "bc x" occur once each: the first, 4 characters; "a a" 4 times x 3 characters;
    # "x y" twice x 3 (it ties with nothing: "y x" is twice too but occurs later); under 2 words: -1
    assert top[:, 0].tolist() == [4, 12, 6, -1, -1]
    # joined without a separator "a"+"bc" equals "ab"+"c" (3 characters); "aa" at 1 and 3 (the scan jumps by 2);
    # "xy" again at 2, then 4 + 2 > 5 words stops the scan
    assert dup[:, 0].tolist() == [3, 4, 2, 0, 0]


def find_top_duplicate(words, n):  # datatrove's GopherRepetitionFilter, written out
    grams = [" ".join(words[i : i + n]) for i in range(len(words) - n + 1)]
    if not grams:
        return -1
    gram, count = Counter(grams).most_common(1)[0]
    return len(gram) * count


def find_all_duplicate(words, n):
    unique, repeated, idx = set(), 0, 0
    while idx < len(words) - n + 1:
        gram = "".join(words[idx : idx + n])
        if gram in unique:
            repeated += len(gram)
            idx += n
        else:
            unique.add(gram)
            idx += 1
    return repeated


@pytest.mark.parametrize("seed", range(3))
def test_ngrams_match_datatrove_loops(seed):
    rng = random.Random(seed)
    alphabet = ["a", "b", "ab", "ba", "é", "aé", "c"]  # few words, many repeats and many equal concatenations
    rows = [[rng.choice(alphabet) for _ in range(rng.randrange(0, 60))] for _ in range(300)]
    top_ns, dup_ns = [2, 3, 4], [1, 5, 6, 10]
    top, dup = rulescan.ngram_chars(lists(rows), top_ns, dup_ns)
    assert top.tolist() == [[find_top_duplicate(r, n) for n in top_ns] for r in rows]
    assert dup.tolist() == [[find_all_duplicate(r, n) for n in dup_ns] for r in rows]
    n, chars = rulescan.duplicates(lists(rows))
    assert n.tolist() == [len(r) - len(set(r)) for r in rows]


def test_sliced_and_empty_input():
    words = lists([["x", "x", "x"], ["a", "b", "a", "b"], ["q"]])[1:2]  # an offset into the Arrow buffers
    top, dup = rulescan.ngram_chars(words, [2], [2])
    assert top.tolist() == [[6]] and dup.tolist() == [[2]]
    top, dup = rulescan.ngram_chars(lists([]), [2], [5])
    assert top.shape == (0, 1) and dup.shape == (0, 1)


def test_bad_buffers_are_refused():
    from thresher.operators import rulescan_kernels

    data, offsets, groups = np.frombuffer(b"ab", np.uint8), np.array([0, 1, 5], np.int64), np.array([0, 2], np.int64)
    with pytest.raises(ValueError):  # an offset past the data
        rulescan_kernels.duplicates(data, offsets, groups, np.zeros(1, np.int64), np.zeros(1, np.int64))
    with pytest.raises(ValueError):  # n = 0
        rulescan_kernels.ngrams(data, np.array([0, 1, 2], np.int64), groups, np.array([0], np.int64), np.zeros(0, np.int64), np.zeros(1, np.int64), np.zeros(0, np.int64))
