"""Shared set-up for the integration tests: corpora and specs on real files."""

from __future__ import annotations

from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

from thresher.demo_corpus import generate
from thresher.pipeline.spec import JobSpec, parse_spec

DEMO_FILTERS = [
    {"column": "sig_n_stopwords", "min": 2},
    {"column": "sig_dup_line_frac", "max": 0.3},
    {"column": "sig_mean_word_len", "min": 3, "max": 10},
    {"column": "q_heuristic", "min": 0.35},
]

BAD_ROWS = [  # text, why it must be quarantined
    (None, "null text"),
    ("", "empty text"),
    ("   \n\t ", "empty text"),
    ("y" * 50_000, "text over max_bytes (40000)"),
]


def write_corpus(path: Path, n_docs: int, with_bad_rows: bool = False, seed: int = 0) -> Path:
    table = generate(n_docs, seed)
    if with_bad_rows:
        bad = pa.table(
            {
                "id": [f"bad-{i}" for i in range(len(BAD_ROWS))],
                "text": pa.array([t for t, _ in BAD_ROWS], pa.string()),
                "topic": ["none"] * len(BAD_ROWS),
                "planted": ["bad"] * len(BAD_ROWS),
                "dup_of": pa.nulls(len(BAD_ROWS), pa.string()),
            }
        )
        table = pa.concat_tables([table, bad.cast(table.schema)])
    path.mkdir(parents=True, exist_ok=True)
    # several files, so Ray reads in parallel blocks
    step = (table.num_rows + 2) // 3
    for i in range(3):
        pq.write_table(table.slice(i * step, step), path / f"part-{i}.parquet")
    return path


def make_spec(corpus: Path, out: Path, **overrides) -> JobSpec:
    raw = {
        "input": {"paths": [str(corpus)], "id_column": "id", "max_bytes": 4000 * 1000},
        "output": {"path": str(out), "shard_bytes": 200_000, "row_group_rows": 50},
        "embedder": {"model": "static"},
        "clustering": {"n_clusters": 8},
        "selection": {"strategy": "quadmix", "budget": {"unit": "docs", "amount": 800}, "filters": DEMO_FILTERS},
    }
    for key, value in overrides.items():
        raw[key] = {**raw.get(key, {}), **value} if isinstance(value, dict) else value
    return parse_spec(raw)


def selection(out: Path) -> dict[str, int]:
    t = pq.read_table(out / "data", columns=["doc_id", "sel_copies"])
    return dict(zip(t.column("doc_id").to_pylist(), t.column("sel_copies").to_pylist()))


def write_jsonl_corpus(path: Path, n_docs: int, seed: int = 0) -> Path:
    """The demo corpus as JSON lines (id, text, topic, planted): extra keys live in `metadata`."""
    import json

    rows = generate(n_docs, seed).select(["id", "text", "topic", "planted"]).to_pylist()
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


def places(out: Path) -> list[str]:
    """Every doc_id in OUT's data/, rejected/ and quarantine/, with repeats: each input row must be in exactly one."""
    ids = pq.read_table(out / "data", columns=["doc_id"]).column("doc_id").to_pylist()
    for sub in ("rejected", "quarantine"):
        if (out / sub).exists():
            ids += pq.read_table(out / sub, columns=["doc_id"]).column("doc_id").to_pylist()
    return ids


def positions(out: Path) -> list[tuple[str, int]]:
    """Every (input_file, input_offset) in OUT's data/, rejected/ and quarantine/, with repeats."""
    found: list[tuple[str, int]] = []
    for sub in ("data", "rejected", "quarantine"):
        if (out / sub).exists() and any((out / sub).glob("*.parquet")):
            t = pq.read_table(out / sub, columns=["input_file", "input_offset"])
            found += list(zip(t.column(0).to_pylist(), t.column(1).to_pylist()))
    return found


def jsonl_positions(*files: Path) -> list[tuple[str, int]]:
    """What the input side says: (file, byte offset) of every non-blank line (a .gz read decompressed, BOM counted)."""
    import gzip

    found = []
    for f in files:
        data = f.read_bytes()
        data = gzip.decompress(data) if f.suffix == ".gz" else data
        pos = 3 if data.startswith(b"\xef\xbb\xbf") else 0
        for line in data[pos:].split(b"\n"):
            if line.strip():
                found.append((str(f.resolve()), pos))
            pos += len(line) + 1
    return found


def chromium() -> str | None:
    """Debian's headless Chromium, or None; CI sets THRESHER_REQUIRE_CHROMIUM so a missing browser fails instead of skipping."""
    import os
    import shutil

    found = shutil.which("chromium") or shutil.which("chromium-browser")
    if found is None and os.environ.get("THRESHER_REQUIRE_CHROMIUM"):
        raise RuntimeError("THRESHER_REQUIRE_CHROMIUM is set but chromium is not on PATH (apt-get install chromium)")
    return found


def screenshot(page: Path, png: Path, size: tuple[int, int] = (1200, 1600)) -> dict:
    """Render a local HTML file in headless Chromium (no network) and describe the PNG: size, share of non-white pixels, distinct colours."""
    import subprocess

    import numpy as np
    import pytest
    from PIL import Image

    browser = chromium()
    if browser is None:
        pytest.skip("chromium not installed (apt-get install chromium)")
    profile = png.parent / f"{png.stem}-profile"
    subprocess.run(
        [browser, "--headless", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage", f"--user-data-dir={profile}",
         f"--window-size={size[0]},{size[1]}", f"--screenshot={png}", page.resolve().as_uri()],
        check=True, capture_output=True, timeout=120,
    )
    pixels = np.asarray(Image.open(png).convert("RGB")).reshape(-1, 3)
    return {
        "size": Image.open(png).size,
        "inked": float(np.mean(pixels.min(axis=1) < 240)),
        "colours": len(np.unique(pixels[::7], axis=0)),
        "blue": float(np.mean((pixels[:, 2] > 150) & (pixels[:, 0] < 90))),  # the selection's colour in the charts
    }
