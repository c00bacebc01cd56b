"""A job on a real two-node Ray cluster on loopback: its tasks run on both nodes, and it selects byte for byte what a
local run selects, whether it names the cluster in its spec or is submitted with `ray job submit`."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections import Counter
from pathlib import Path

import pyarrow.parquet as pq
import yaml

from .cluster import ENV, RAY
from .helpers import places, write_corpus

THRESHER = str(Path(sys.executable).parent / "thresher")


def _spec(tmp_path: Path, corpus: Path, name: str, **extra) -> Path:
    raw = {
        "input": {"paths": [str(corpus)], "id_column": "id"},
        "output": {"path": str(tmp_path / name), "shard_bytes": 100_000},
        "scorers": {"dedup": {}, "rules": {}},
        "selection": {"budget": {"unit": "docs", "amount": 150}},
        **extra,
    }
    path = tmp_path / f"{name}.yaml"
    path.write_text(yaml.safe_dump(raw))
    return path


def _shards(out: Path) -> list[tuple[str, str]]:
    return [(s["path"], s["sha256"]) for s in json.loads((out / "manifest.json").read_text())["shards"]]


def test_a_job_on_two_nodes_runs_on_both_and_selects_what_a_local_run_selects(ray_cluster, tmp_path):
    corpus = write_corpus(tmp_path / "corpus", 400)
    local_env = {k: v for k, v in os.environ.items() if k != "RAY_ADDRESS"}
    local = subprocess.run([THRESHER, "run", str(_spec(tmp_path, corpus, "local")), "--no-progress"], env=local_env, capture_output=True, text=True, timeout=600)
    assert local.returncode == 0, local.stderr

    before = Counter(ray_cluster.task_nodes())
    on_cluster = _spec(tmp_path, corpus, "cluster", ray={"address": ray_cluster.gcs})
    done = subprocess.run([THRESHER, "run", str(on_cluster), "--no-progress"], env=ENV, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr
    ran = Counter(ray_cluster.task_nodes()) - before
    assert len(ran) == 2 and min(ran.values()) >= 5, ran  # both nodes did the job's work, not a token task each
    manifest = json.loads((tmp_path / "cluster" / "manifest.json").read_text())
    assert {k: manifest["timings"]["ray"][k] for k in ("address", "nodes", "cpus")} == {"address": ray_cluster.gcs, "nodes": 2, "cpus": 4.0}
    assert _shards(tmp_path / "cluster") == _shards(tmp_path / "local")
    assert sorted(places(tmp_path / "cluster")) == sorted(pq.read_table(corpus, columns=["id"]).column("id").to_pylist())

    # `ray job submit -- thresher run SPEC`: no address in the spec; the entrypoint's RAY_ADDRESS names the cluster.
    before = Counter(ray_cluster.task_nodes())
    submitted = _spec(tmp_path, corpus, "submitted")
    job = subprocess.run([RAY, "job", "submit", f"--address={ray_cluster.dashboard}", "--", THRESHER, "run", str(submitted), "--no-progress"],
                         env=ENV, capture_output=True, text=True, timeout=600)
    assert job.returncode == 0, job.stdout[-3000:] + job.stderr[-3000:]
    ran = Counter(ray_cluster.task_nodes()) - before
    assert len(ran) == 2, ran
    manifest = json.loads((tmp_path / "submitted" / "manifest.json").read_text())
    assert manifest["timings"]["ray"]["nodes"] == 2 and manifest["timings"]["ray"]["address"]
    assert _shards(tmp_path / "submitted") == _shards(tmp_path / "local")
