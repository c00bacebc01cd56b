"""Bad Parquet files are refused before any work, in one line naming the file."""

from __future__ import annotations

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from thresher.pipeline.errors import InputError
from thresher.pipeline.runner import run

from .helpers import make_spec, write_corpus


def _corpus_with(tmp_path, name: str, write) -> object:
    corpus = write_corpus(tmp_path / "corpus", 90)
    write(corpus / name)
    return corpus


CASES = {
    "corrupt": (lambda p: p.write_bytes(b"PAR1 this is not really parquet"), "part-9.parquet: not a readable Parquet file"),
    "truncated": (lambda p: (pq.write_table(pa.table({"id": ["t"], "text": ["x y z"]}), p), p.write_bytes(p.read_bytes()[:-20])), "part-9.parquet: not a readable Parquet file"),
    "int text": (lambda p: pq.write_table(pa.table({"id": ["i"], "text": [5]}), p), "input.text_column 'text' is int64, not a string"),
    "binary text": (lambda p: pq.write_table(pa.table({"id": ["b"], "text": pa.array([b"raw"], pa.binary())}), p), "is binary, not a string"),
    "no text": (lambda p: pq.write_table(pa.table({"id": ["n"], "body": ["words"]}), p), "part-9.parquet: no column 'text'"),
    "reserved name": (lambda p: pq.write_table(pa.table({"id": ["r"], "text": ["some words"], "input_offset": [7]}), p), "part-9.parquet: column 'input_offset' is a name thresher writes"),
    "drift": (lambda p: pq.write_table(pa.table({"id": ["d"], "text": ["some words"], "topic": [3]}), p), "column 'topic' is string in .*part-0.parquet but int64 in .*part-9.parquet"),
}


@pytest.mark.parametrize("case", list(CASES))
def test_a_bad_file_is_refused_naming_it(tmp_path, case):
    write, message = CASES[case]
    corpus = _corpus_with(tmp_path, "part-9.parquet", write)
    with pytest.raises(InputError, match=message):
        run(make_spec(corpus, tmp_path / "out"), log=lambda m: None, progress=False)
    assert not (tmp_path / "out.work").exists()


def test_an_extra_column_in_one_file_is_unified(local_ray, tmp_path):
    corpus = write_corpus(tmp_path / "corpus", 200)
    t = pq.read_table(corpus / "part-2.parquet")
    pq.write_table(t.append_column("lang", pa.array(["en"] * t.num_rows)), corpus / "part-2.parquet")
    m = run(make_spec(corpus, tmp_path / "out", selection={"filters": []}), log=lambda m: None, progress=False)
    assert m["counts"]["input"] == 200 and m["accounting_holds"]
    langs = pq.read_table(tmp_path / "out" / "data", columns=["doc_id", "lang"]).column("lang").to_pylist()
    assert set(langs) <= {"en", None} and "en" in langs


@pytest.mark.parametrize("empty", [
    lambda p: pq.write_table(pa.table({"id": pa.array([], pa.string()), "text": pa.array([], pa.string())}), p.with_suffix(".parquet")),
    lambda p: pq.write_table(pa.table({"other": pa.array([], pa.int64())}), p.with_suffix(".parquet")),  # no rows, so its columns do not matter
])
def test_an_empty_file_is_skipped_counted_and_warned_about_not_refused(local_ray, tmp_path, empty):
    """A night must not stop on an empty upstream shard."""
    corpus = write_corpus(tmp_path / "corpus", 90)
    empty(corpus / "part-9")
    lines: list[str] = []
    m = run(make_spec(corpus, tmp_path / "out", selection={"budget": {"unit": "docs", "amount": 30}}), log=lines.append, progress=False)
    assert m["counts"]["input"] == 90 and m["accounting_holds"]
    assert m["inputs"]["empty_files"] == [str(corpus / "part-9.parquet")]
    assert any("part-9.parquet" in w and "no rows" in w for w in m["warnings"]) and any("warning:" in line and "part-9.parquet" in line for line in lines)


def test_an_input_of_only_empty_files_is_refused(tmp_path):
    (tmp_path / "corpus").mkdir()
    pq.write_table(pa.table({"id": pa.array([], pa.string()), "text": pa.array([], pa.string())}), tmp_path / "corpus" / "a.parquet")
    with pytest.raises(InputError, match="every input file is empty"):
        run(make_spec(tmp_path / "corpus", tmp_path / "out"), log=lambda m: None, progress=False)
