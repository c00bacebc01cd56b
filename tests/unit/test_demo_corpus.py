"""Tests for the deterministic demo corpus generator (planted ground truth)."""

from __future__ import annotations

import collections
import importlib.util
import json
import pathlib
import re
import sys

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

try:
    from thresher import demo_corpus
except ImportError:  # running from a plain checkout without the package installed
    _path = pathlib.Path(__file__).resolve().parents[2] / "pipeline" / "package" / "demo_corpus.py"
    _spec = importlib.util.spec_from_file_location("demo_corpus", _path)
    demo_corpus = importlib.util.module_from_spec(_spec)
    sys.modules["demo_corpus"] = demo_corpus
    _spec.loader.exec_module(demo_corpus)

N = 4000
STOP_WORDS = set(
    "the of and to a an in is it that for on with as was by this be are or at from they their "
    "but if not so more most than then when which who what each".split()
)
EXPECTED_FRACTIONS = {
    "clean": 0.78,
    "exact_dup": 0.05,
    "near_dup": 0.05,
    "boilerplate": 0.04,
    "keyword_spam": 0.04,
    "gibberish": 0.04,
}


def words(text: str) -> list[str]:
    return re.findall(r"\w+", text.lower())


def jaccard5(a: str, b: str) -> float:
    def grams(t: str) -> set[tuple[str, ...]]:
        w = words(t)
        return {tuple(w[i : i + 5]) for i in range(len(w) - 4)}

    ga, gb = grams(a), grams(b)
    return len(ga & gb) / len(ga | gb)


@pytest.fixture(scope="module")
def table() -> pa.Table:
    return demo_corpus.generate(N, seed=0)


@pytest.fixture(scope="module")
def rows(table: pa.Table) -> list[dict]:
    return table.to_pylist()


@pytest.fixture(scope="module")
def by_id(rows: list[dict]) -> dict[str, dict]:
    return {r["id"]: r for r in rows}


def of_kind(rows: list[dict], kind: str) -> list[dict]:
    return [r for r in rows if r["planted"] == kind]


def test_public_constants() -> None:
    assert demo_corpus.PLANTED_KINDS == (
        "clean", "exact_dup", "near_dup", "boilerplate", "keyword_spam", "gibberish",
    )
    assert demo_corpus.LOW_QUALITY_KINDS == ("boilerplate", "keyword_spam", "gibberish")


def test_deterministic() -> None:
    a = demo_corpus.generate(700, seed=11)
    b = demo_corpus.generate(700, seed=11)
    assert a.equals(b)
    c = demo_corpus.generate(700, seed=12)
    assert a.column("text").to_pylist() != c.column("text").to_pylist()


def test_schema_ids_and_row_count(table: pa.Table, rows: list[dict]) -> None:
    assert table.num_rows == N
    assert table.column_names == ["id", "text", "topic", "planted", "dup_of"]
    for name in table.column_names:
        assert pa.types.is_string(table.schema.field(name).type), name
    ids = [r["id"] for r in rows]
    assert len(set(ids)) == N
    assert all(re.fullmatch(r"demo-\d{6}", i) for i in ids)
    assert all(r["text"] for r in rows)


@pytest.mark.parametrize("n", [0, 1, 2, 9, 37, 250])
def test_exact_row_count_small(n: int) -> None:
    t = demo_corpus.generate(n, seed=3)
    assert t.num_rows == n
    assert len(set(t.column("id").to_pylist())) == n
    ids = set(t.column("id").to_pylist())
    assert all(d in ids for d in t.column("dup_of").to_pylist() if d is not None)


def test_composition(rows: list[dict]) -> None:
    counts = collections.Counter(r["planted"] for r in rows)
    assert set(counts) == set(demo_corpus.PLANTED_KINDS)
    assert sum(counts.values()) == N
    for kind, frac in EXPECTED_FRACTIONS.items():
        assert abs(counts[kind] - frac * N) <= 1, (kind, counts[kind])
    # dup_of is set exactly for duplicates and always points at a clean row.
    ids = {r["id"]: r for r in rows}
    for r in rows:
        if r["planted"] in ("exact_dup", "near_dup"):
            assert ids[r["dup_of"]]["planted"] == "clean"
        else:
            assert r["dup_of"] is None


def test_topics(rows: list[dict]) -> None:
    clean_topics = {r["topic"] for r in of_kind(rows, "clean")}
    assert 6 <= len(clean_topics) <= 8
    assert "none" not in clean_topics
    assert {r["topic"] for r in of_kind(rows, "gibberish")} == {"none"}
    for kind in ("boilerplate", "keyword_spam", "exact_dup", "near_dup"):
        assert {r["topic"] for r in of_kind(rows, kind)} <= clean_topics


def test_topics_have_distinct_vocabularies(rows: list[dict]) -> None:
    counters: dict[str, collections.Counter] = collections.defaultdict(collections.Counter)
    for r in of_kind(rows, "clean"):
        counters[r["topic"]].update(w for w in words(r["text"]) if w not in STOP_WORDS and len(w) > 3)
    top = {t: {w for w, _ in c.most_common(30)} for t, c in counters.items()}
    topics = sorted(top)
    for i, a in enumerate(topics):
        for b in topics[i + 1 :]:
            # Shared template words exist, but each topic's core vocabulary is its own.
            assert len(top[a] & top[b]) <= 12, (a, b, top[a] & top[b])


def test_exact_dups_copy_their_original(rows: list[dict], by_id: dict) -> None:
    dups = of_kind(rows, "exact_dup")
    assert dups
    for r in dups:
        orig = by_id[r["dup_of"]]
        assert r["text"] == orig["text"]
        assert r["topic"] == orig["topic"]
        assert r["id"] != orig["id"]


def test_near_dups_are_near(rows: list[dict], by_id: dict) -> None:
    near = of_kind(rows, "near_dup")
    assert near
    sims = []
    for r in near:
        orig = by_id[r["dup_of"]]
        assert r["text"] != orig["text"]
        assert r["topic"] == orig["topic"]
        sims.append(jaccard5(r["text"], orig["text"]))
    assert min(sims) > 0.7
    # Most near-dups change words, not only whitespace.
    assert np.mean([s < 1.0 for s in sims]) > 0.9


def test_unrelated_clean_docs_are_not_near_dups(rows: list[dict]) -> None:
    clean = [r for r in of_kind(rows, "clean") if len(words(r["text"])) >= 50]
    rng = np.random.default_rng(0)
    for _ in range(300):
        a, b = rng.choice(len(clean), size=2, replace=False)
        assert jaccard5(clean[a]["text"], clean[b]["text"]) < 0.3


def test_rows_are_shuffled(rows: list[dict]) -> None:
    pos = {r["id"]: i for i, r in enumerate(rows)}
    for r in rows:
        if r["dup_of"] is not None:
            assert abs(pos[r["id"]] - pos[r["dup_of"]]) > 1
    # Kinds are interleaved, not in blocks.
    first = collections.Counter(r["planted"] for r in rows[:400])
    assert len(first) == len(demo_corpus.PLANTED_KINDS)


def test_clean_docs_look_like_prose(rows: list[dict]) -> None:
    clean = of_kind(rows, "clean")
    all_words = [w for r in clean for w in r["text"].split()]
    letters = [len(w.strip(".,;:!?")) for w in all_words]
    assert 4.0 <= np.mean(letters) <= 6.0
    multi_paragraph = 0
    for r in clean:
        text = r["text"]
        w = words(text)
        assert sum(x in STOP_WORDS for x in w) / len(w) > 0.15
        assert text.rstrip().endswith(".")
        lines = [ln for ln in text.split("\n") if ln.strip()]
        assert len(lines) == len(set(lines)), "repeated line in clean doc"
        assert "\n\n\n" not in text and not re.search(r"[^\n]\n[^\n]", text)
        multi_paragraph += "\n\n" in text
    assert multi_paragraph / len(clean) > 0.5


def test_clean_lengths_vary_widely(rows: list[dict]) -> None:
    lengths = np.array([len(r["text"].split()) for r in of_kind(rows, "clean")])
    assert lengths.min() <= 25
    assert lengths.max() >= 1500
    assert (lengths >= 1000).sum() >= 10  # a few long ones, not just one
    assert 100 <= np.median(lengths) <= 400


def test_gibberish_is_not_language(rows: list[dict]) -> None:
    vocab = set()
    for r in of_kind(rows, "clean"):
        vocab.update(words(r["text"]))
    vocab |= STOP_WORDS
    for r in of_kind(rows, "gibberish"):
        tokens = [t.strip(".,;:!?\"'()").lower() for t in r["text"].split()]
        tokens = [t for t in tokens if t]
        assert tokens
        in_dict = sum(t in vocab for t in tokens) / len(tokens)
        assert in_dict < 0.1, r["text"][:200]


def test_keyword_spam_is_repetitive(rows: list[dict]) -> None:
    for r in of_kind(rows, "keyword_spam"):
        w = words(r["text"])
        assert len(w) >= 20
        assert len(set(w)) / len(w) < 0.3
        assert sum(x in STOP_WORDS for x in w) / len(w) < 0.05


def test_boilerplate_has_repeated_short_lines(rows: list[dict]) -> None:
    for r in of_kind(rows, "boilerplate"):
        lines = [ln for ln in r["text"].split("\n") if ln.strip()]
        assert len(lines) >= 15
        assert len(set(lines)) < len(lines)
        assert np.median([len(ln.split()) for ln in lines]) <= 4
        assert "All rights reserved." in r["text"]


def test_write_parquet_round_trip(tmp_path: pathlib.Path) -> None:
    path = tmp_path / "nested" / "dir" / "demo.parquet"
    out = demo_corpus.write(str(path), n_docs=300, seed=5)
    assert out == str(path)
    back = pq.read_table(out)
    assert back.equals(demo_corpus.generate(300, seed=5))
    assert pq.ParquetFile(out).metadata.row_group(0).column(0).compression == "ZSTD"


def test_write_parquet_bounds_row_groups(tmp_path: pathlib.Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(demo_corpus, "ROW_GROUP_ROWS", 128)
    meta = pq.ParquetFile(demo_corpus.write(str(tmp_path / "demo.parquet"), n_docs=300, seed=5)).metadata
    assert [meta.row_group(i).num_rows for i in range(meta.num_row_groups)] == [128, 128, 44]


def test_write_jsonl_round_trip(tmp_path: pathlib.Path) -> None:
    path = tmp_path / "out" / "demo.jsonl"
    out = demo_corpus.write(str(path), n_docs=300, seed=5, fmt="jsonl")
    assert out == str(path)
    with open(out, encoding="utf-8") as f:
        lines = f.read().split("\n")
    assert lines[-1] == ""
    back = [json.loads(ln) for ln in lines[:-1]]
    assert back == demo_corpus.generate(300, seed=5).to_pylist()


def test_write_rejects_unknown_format(tmp_path: pathlib.Path) -> None:
    with pytest.raises(ValueError):
        demo_corpus.write(str(tmp_path / "x.csv"), n_docs=10, fmt="csv")
