"""c-TF-IDF domain names on a hand-computed case."""

import math

import pytest

from thresher.operators.ctfidf import class_terms, terms


def test_class_terms_by_hand():
    # A: apple 2, banana 1 (3 terms); B: banana 1, cherry 1 (2 terms). avg = int(2.5) = 2.
    # f: apple 2, banana 2, cherry 1 -> idf: apple log 2, banana log 2, cherry log 3.
    got = class_terms({"A": ["Apple apple", "banana"], "B": ["banana, CHERRY!"]})
    assert [t for t, _ in got["A"]] == ["apple", "banana"] and [t for t, _ in got["B"]] == ["cherry", "banana"]
    assert got["A"][0][1] == pytest.approx(2 / 3 * math.log(2)) and got["A"][1][1] == pytest.approx(1 / 3 * math.log(2))
    assert got["B"][0][1] == pytest.approx(0.5 * math.log(3)) and got["B"][1][1] == pytest.approx(0.5 * math.log(2))


def test_terms_drop_stop_words_digits_and_short_runs():
    assert terms("The 2024 court's ruling, in re: X-ray of the USA") == ["court", "ruling", "ray", "usa"]
    assert class_terms({}) == {} and class_terms({"empty": [""]}) == {"empty": []}
    assert len(class_terms({"a": ["one two three four five six seven eight"]}, top=3)["a"]) == 3
