"""Reading JSONL as raw lines in byte ranges: every line exactly once, split on b'\\n' only."""

from __future__ import annotations

import gzip
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.fs as pafs
import pytest

from thresher.pipeline import io


def _random_jsonl(rng: np.random.Generator, n: int) -> tuple[bytes, list[bytes]]:
    """A file's bytes and the lines a reader must return (blank lines skipped, CR and BOM dropped)."""
    pieces, expected = [], []
    for i in range(n):
        kind = rng.integers(6)
        if kind == 0:
            pieces.append(b"   ")  # blank: skipped
            continue
        body = b"x" * int(rng.integers(0, 300))
        line = b'{"id": %d, "text": "%s\xe2\x80\xa8%s"}' % (i, body, b"\xff" if kind == 1 else b"")  # U+2028 inside, sometimes a bad byte
        expected.append(line)
        pieces.append(line + (b"\r" if kind == 2 else b""))
    data = b"\n".join(pieces) + (b"\n" if rng.integers(2) else b"")
    if rng.integers(2):
        data = io.BOM + data
    return data, expected


def _read_all(found: io.InputFiles) -> list[bytes]:
    ranges = pa.Table.from_pylist(io.jsonl_ranges(found))
    lines = []
    for i in range(ranges.num_rows):
        for t in io.read_jsonl_ranges(ranges.slice(i, 1), found.fs):
            lines += t.column("line").to_pylist()
    return lines


@pytest.mark.parametrize("seed", range(8))
def test_byte_ranges_return_every_line_once(tmp_path: Path, monkeypatch, seed: int) -> None:
    rng = np.random.default_rng(seed)
    monkeypatch.setattr(io, "JSONL_RANGE_BYTES", int(rng.integers(7, 900)))  # ranges cut lines anywhere
    files, expected = [], []
    for k in range(3):
        data, lines = _random_jsonl(rng, int(rng.integers(0, 120)))
        path = tmp_path / f"part-{k}.jsonl"
        path.write_bytes(data)
        files.append(str(path))
        expected += lines
    found = io.InputFiles(pafs.LocalFileSystem(), files, "jsonl")
    assert len(io.jsonl_ranges(found)) > 3
    assert _read_all(found) == expected


def test_compressed_files_are_streamed_whole(tmp_path: Path) -> None:
    import pyarrow as pa

    data, expected = _random_jsonl(np.random.default_rng(1), 200)
    gz = tmp_path / "a.jsonl.gz"
    gz.write_bytes(gzip.compress(data))
    zst = tmp_path / "b.jsonl.zst"
    with pa.CompressedOutputStream(str(zst), "zstd") as out:
        out.write(data)
    fs, files = io.expand([str(tmp_path / "*.jsonl.*")])
    assert io.detect_format(files, "auto") == "jsonl"
    found = io.InputFiles(fs, files, "jsonl")
    assert [r["end"] for r in io.jsonl_ranges(found)] == [-1, -1]
    assert _read_all(found) == expected + expected
