"""Bad bytes inside an otherwise valid corpus: the job succeeds and every input row is in one place."""

from __future__ import annotations

import gzip
import json
import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from thresher.operators.validate import content_id
from thresher.demo_corpus import generate
from thresher.pipeline.runner import run

from .helpers import jsonl_positions, make_spec, places, positions

BAD_LINES = {  # raw line -> the reason it is quarantined (None: a valid document)
    b'{"id": "utf8", "text": "caf\xff au lait with some more words"}': "invalid UTF-8 at byte 27",
    b'{"id": "sur", "text": "a lone \\ud800 surrogate half in a sentence"}': "lone surrogate in text or id (not encodable as UTF-8)",
    b"not json at all": "malformed JSON line",
    b'["a", "list"]': "malformed JSON line",
    '{"id": "ls", "text": "a line\u2028separator and a next\u0085line inside one string, both valid JSON"}'.encode(): None,
    b'{"id": "crlf", "text": "a document whose line ends with CR LF as written on Windows"}\r': None,
}




def test_bad_bytes_are_quarantined_and_everything_else_is_kept(local_ray, tmp_path):
    rows = generate(400, seed=4).select(["id", "text", "topic"]).to_pylist()
    good = [json.dumps(r).encode() for r in rows]
    lines = good[:150] + list(BAD_LINES) + [b"", b"   "] + good[150:]
    (tmp_path / "in").mkdir()
    (tmp_path / "in" / "a.jsonl").write_bytes(b"\xef\xbb\xbf" + b"\n".join(lines[:300]) + b"\n")  # starts with a BOM
    (tmp_path / "in" / "b.jsonl.gz").write_bytes(gzip.compress(b"\n".join(lines[300:])))
    spec = make_spec(tmp_path / "in", tmp_path / "out", selection={"filters": [], "budget": {"unit": "docs", "amount": 100}})
    m = run(spec, log=lambda m: None, progress=False)
    n_docs = len(good) + len(BAD_LINES)
    assert m["counts"]["input"] == n_docs and m["accounting_holds"]
    bad = [r for r, why in BAD_LINES.items() if why]
    assert m["counts"]["invalid"] == len(bad)
    assert m["counts"]["invalid_by_reason"] == {"invalid UTF-8 at byte 27": 1, "lone surrogate in text or id (not encodable as UTF-8)": 1, "malformed JSON line": 2}
    found = places(tmp_path / "out")
    assert len(found) == len(set(found)) == n_docs  # every row in exactly one place
    assert sorted(positions(tmp_path / "out")) == sorted(jsonl_positions(tmp_path / "in" / "a.jsonl", tmp_path / "in" / "b.jsonl.gz"))
    valid_ids = [r["id"] for r in rows] + ["ls", "crlf"]
    assert set(valid_ids) <= set(found)
    assert rows[0]["id"] in found  # the first line, behind the BOM, is a document
    q = pq.read_table(tmp_path / "out" / "quarantine").to_pylist()
    kept = [json.loads(r["metadata"]) for r in q]
    assert any("raw_line_base64" in k for k in kept) and any(k.get("raw_line") == "not json at all" for k in kept)


def _bad_line(rng) -> bytes:
    """One of the shapes a crawl holds: broken bytes, broken JSON, wrong types, odd sizes."""
    kind = rng.integers(9)
    junk = bytes(rng.integers(0, 256, int(rng.integers(1, 40)), dtype=np.uint8))
    return [
        b'{"text": "' + junk + b'"}',  # arbitrary bytes inside a string (often invalid UTF-8 or bad escapes)
        junk,  # not JSON
        b'{"text": ' + str(int(rng.integers(1e6))).encode() + b"}",  # text is a number
        b'{"text": null}',
        b'{"text": ""}',
        b'{"text": "\\ud83d only half of a pair"}',
        b'{"id": "x", "txt": "the text key is missing"}',
        b'{"text": "' + b"w " * int(rng.integers(20_000, 30_000)) + b'"}',  # over max_bytes
        b"[" * int(rng.integers(1, 50)),
    ][kind]


@pytest.mark.parametrize("seed", [1, 2])
def test_random_bad_rows_never_kill_the_job_and_every_row_is_accounted(local_ray, tmp_path, seed):
    rng = np.random.default_rng(seed)
    good = [json.dumps(r).encode() for r in generate(int(rng.integers(150, 300)), seed=seed).select(["text", "topic"]).to_pylist()]
    bad = [_bad_line(rng) for _ in range(int(rng.integers(5, 40)))]
    lines = good + bad
    order = rng.permutation(len(lines))
    (tmp_path / "in").mkdir()
    chunks = np.array_split(order, 3)
    for k, idx in enumerate(chunks):
        (tmp_path / "in" / f"part-{k}.jsonl").write_bytes(b"\n".join(lines[i] for i in idx) + b"\n")
    spec = make_spec(
        tmp_path / "in",
        tmp_path / "out",
        input={"id_column": None, "max_bytes": 40_000},
        selection={"filters": [], "budget": {"unit": "docs", "amount": 50}},
    )
    m = run(spec, log=lambda m: None, progress=False)
    n = len([ln for ln in lines if ln.strip()])
    assert m["counts"]["input"] == n and m["accounting_holds"]
    out = tmp_path / "out"
    assert len(places(out)) == n
    # from the input side: every non-blank line, by file and byte offset, is in exactly one of data/, rejected/, quarantine/
    assert sorted(positions(out)) == sorted(jsonl_positions(*(tmp_path / "in").glob("*.jsonl")))
    kept = set(pq.read_table(out / "data", columns=["doc_id"]).column("doc_id").to_pylist())
    kept |= set(pq.read_table(out / "rejected", columns=["doc_id"]).column("doc_id").to_pylist())
    assert {content_id(json.loads(g)["text"]) for g in good} <= kept  # no good document lost among the bad
    assert m["counts"]["invalid"] >= sum(1 for b in bad if b.startswith((b"[", b'{"text": null', b'{"text": ""', b'{"text": "\\ud83d')))


@pytest.mark.parametrize("id_column,on_workers", [("id", False), (None, False), ("id", True)])
def test_a_repeated_id_keeps_its_first_row_and_quarantines_the_rest(local_ray, tmp_path, monkeypatch, id_column, on_workers):
    """With an id column, one id on two texts; without, one text twice (one content id). The first row in input order
    wins. `on_workers`: every pool counts as large, so the shuffles, the marking of the repeats and the accounting run
    as Ray tasks, as a large job's do."""
    if on_workers:
        from thresher.pipeline import shuffle

        monkeypatch.setattr(shuffle, "PART_ROWS", 0)
    rows = [{k: r[k] for k in ("id", "text", "topic")} for r in generate(300, seed=6).to_pylist() if r["planted"] != "exact_dup"]
    first, other = rows[10], rows[20]
    repeat = {**first, "text": other["text"]} if id_column else {**first, "id": "copy-of-10"}
    (tmp_path / "in").mkdir()
    a = rows[:150] + [repeat]  # a later row in the first file
    b = [repeat] + rows[150:]  # and the first row of the second file
    for name, part in (("a.parquet", a), ("b.parquet", b)):
        pq.write_table(pa.Table.from_pylist(part), tmp_path / "in" / name, row_group_size=64)
    spec = make_spec(tmp_path / "in", tmp_path / "out", input={"id_column": id_column}, selection={"filters": [], "budget": {"unit": "docs", "amount": 100}})
    m = run(spec, log=lambda m: None, progress=False)
    out = tmp_path / "out"
    reason = "duplicate id" if id_column else "duplicate text (same content id as an earlier row)"
    assert m["counts"]["invalid_by_reason"] == {reason: 2} and m["accounting_holds"]
    q = pq.read_table(out / "quarantine", columns=["input_file", "input_offset", "invalid_reason"]).to_pylist()
    assert sorted((r["input_file"].rsplit("/", 1)[1], r["input_offset"]) for r in q) == [("a.parquet", 150), ("b.parquet", 0)]
    expected = [(str((tmp_path / "in" / n).resolve()), i) for n, part in (("a.parquet", a), ("b.parquet", b)) for i in range(len(part))]
    assert sorted(positions(out)) == sorted(expected)
    ids = places(out)
    assert len(ids) == len(expected)
    kept = [i for i in ids if ids.count(i) > 1]  # the repeated id: once kept, twice quarantined
    assert len(set(kept)) == 1 and len(kept) == 3
