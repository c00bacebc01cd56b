"""Versioned outputs on a real local Ray: each run a new OUT/versions/ID, `latest` moved last, the diff checked from the input side."""

from __future__ import annotations

import os
import subprocess
import sys

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from thresher.demo_corpus import generate
from thresher.pipeline import versions
from thresher.pipeline.errors import JobError
from thresher.pipeline.runner import run

from .helpers import make_spec, places, selection, write_corpus


def _quiet(spec):
    return run(spec, log=lambda m: None, progress=False)


def _ids(path) -> set[str]:
    return set(pq.read_table(path, columns=["id"]).column("id").to_pylist())


def test_each_run_is_a_version_with_its_changes_and_latest_moves_last(local_ray, tmp_path):
    corpus = write_corpus(tmp_path / "corpus", 300)
    out = tmp_path / "out"
    spec = make_spec(corpus / "*.parquet", out, output={"versions": {"keep": 2}}, selection={"budget": {"unit": "docs", "amount": 150}})
    first = _quiet(spec)
    v1 = first["version"]["id"]
    assert versions.current(out) == v1 and (out / "latest").resolve() == (out / "versions" / v1).resolve()
    assert first["published"] == str(out / "versions" / v1) and "changes" not in first
    assert sorted(places(out / "latest")) == sorted(_ids(corpus))

    # The night's change: a new file, and one old file gone.
    removed = _ids(corpus / "part-2.parquet")
    (corpus / "part-2.parquet").unlink()
    extra = generate(60, seed=11)
    pq.write_table(extra.set_column(0, "id", pa.array([f"new-{i}" for i in range(60)])), corpus / "part-9.parquet")
    second = _quiet(spec)
    v2 = second["version"]["id"]
    assert v2 > v1 and versions.current(out) == v2 and versions.listed(out) == [v1, v2]
    assert sorted(places(out / "latest")) == sorted(_ids(corpus))  # every input row of this night in one place

    before, after = selection(out / "versions" / v1), selection(out / "versions" / v2)
    ch = second["changes"]
    assert sorted(p.name for p in (out / "latest" / "changes").iterdir()) == ["added.parquet", "dropped.parquet"]  # the shuffle's parts gone
    added = pq.read_table(out / "latest" / "changes" / "added.parquet").column("doc_id").to_pylist()
    assert added == sorted(added)
    dropped = pq.read_table(out / "latest" / "changes" / "dropped.parquet").to_pylist()
    assert ch["previous"] == v1 and set(added) == set(after) - set(before) and ch["added"] == len(added)
    assert {d["doc_id"] for d in dropped} == set(before) - set(after) and ch["kept"] == len(set(before) & set(after))
    gone = {d["doc_id"] for d in dropped if d["reason"] == versions.SOURCE_REMOVED}
    assert gone == set(before) & removed and gone  # a removed file's selected documents, and only those
    assert sum(ch["dropped_by_reason"].values()) == ch["dropped"]
    for d, v in ch["domains"].items():  # the domain shifts, recounted from the two versions' shards
        shards = {name: pq.read_table(out / "versions" / name / "data", columns=["domain"]).column("domain").to_pylist() for name in (v1, v2)}
        assert (v["before"], v["after"]) == (shards[v1].count(d), shards[v2].count(d))

    # A third run over unchanged input: the same selection, its shards hard links to the second's.
    third = _quiet(spec)
    assert third["changes"]["added"] == third["changes"]["dropped"] == 0 and third["version"]["shards_shared"] == len(third["shards"]) > 0
    shard = third["shards"][0]["path"]
    assert os.stat(out / "latest" / shard).st_ino == os.stat(out / "versions" / v2 / shard).st_ino
    assert versions.listed(out) == [v2, third["version"]["id"]]  # keep: 2

    from thresher.pipeline.explain import explain

    some = next(iter(selection(out / "latest")))
    assert explain(out, some)["doc_id"] == some  # a versioned output explains its latest version, from OUT's work directory
    listing = subprocess.run([sys.executable, "-m", "thresher.cli", "versions", str(out)], capture_output=True, text=True, check=True).stdout.splitlines()
    assert listing[0].startswith(f"* {third['version']['id']}") and "+0 -0" in listing[0] and listing[1].startswith(f"  {v2}") and len(listing) == 2


def test_a_version_a_killed_publish_finished_is_never_current_and_is_cleared(local_ray, tmp_path):
    corpus = write_corpus(tmp_path / "corpus", 120)
    out = tmp_path / "out"
    spec = make_spec(corpus, out, output={"versions": {}}, selection={"budget": {"unit": "docs", "amount": 50}})
    v1 = _quiet(spec)["version"]["id"]
    orphan = out / "versions" / "29991231T000000Z-dead00"  # renamed into place, then the job died before moving latest
    orphan.mkdir()
    (out / "versions" / ".partial-29991231T000000Z-dead01").mkdir()
    assert versions.current(out) == v1
    v2 = _quiet(spec)["version"]["id"]
    assert versions.listed(out) == [v1, v2] and versions.current(out) == v2 and not orphan.exists()


def test_versioned_and_unversioned_outputs_are_not_mixed(local_ray, tmp_path):
    corpus = write_corpus(tmp_path / "corpus", 120)
    _quiet(make_spec(corpus, tmp_path / "plain", selection={"budget": {"unit": "docs", "amount": 50}}))
    with pytest.raises(JobError, match="holds an unversioned output"):
        _quiet(make_spec(corpus, tmp_path / "plain", output={"versions": {}}))
    _quiet(make_spec(corpus, tmp_path / "v", output={"versions": {}}, selection={"budget": {"unit": "docs", "amount": 50}}))
    with pytest.raises(JobError, match="holds versions"):
        _quiet(make_spec(corpus, tmp_path / "v", output={"overwrite": True}))


def _intact(out, version: str) -> None:
    """A version directory as its manifest describes it: every shard there with its sha256."""
    import json

    from thresher.pipeline.shards import sha256

    m = json.loads((out / "versions" / version / "manifest.json").read_text())
    assert m["version"]["id"] == version and all(sha256(out / "versions" / version / s["path"]) == s["sha256"] for s in m["shards"])


@pytest.mark.parametrize("phase", ["embed", "write"])
def test_kill_9_during_a_nightly_run_leaves_a_complete_version_current_and_the_rerun_publishes(tmp_path, phase):
    """The whole process group SIGKILLed during a phase: `latest` still points at a complete version (the previous one,
    or, had the kill come after the pointer moved, the new one), its dedup index as it was, nothing unpublished is
    listed, and the rerun publishes (its index then holds the night's documents)."""
    import json
    import signal
    import time

    import yaml

    from .test_trust import THRESHER

    corpus = write_corpus(tmp_path / "corpus", 800)
    out = tmp_path / "out"
    raw = {"input": {"paths": [str(corpus)], "id_column": "id"}, "output": {"path": str(out), "versions": {}}, "clustering": {"n_clusters": 4},
           "selection": {"budget": {"unit": "docs", "amount": 200}}, "scorers": {"dedup": {}}, "ray": {"num_cpus": 2}}
    (tmp_path / "job.yaml").write_text(yaml.safe_dump(raw))
    subprocess.run([THRESHER, "run", str(tmp_path / "job.yaml"), "--no-progress"], check=True, capture_output=True, timeout=600)
    v1 = versions.current(out)
    index = out / "versions" / v1 / "state" / "dedup" / "index"
    index_bytes = {f.name: f.read_bytes() for f in sorted(index.iterdir())}
    extra = generate(200, seed=9)
    pq.write_table(extra.set_column(0, "id", pa.array([f"night-{i}" for i in range(200)])), corpus / "part-7.parquet")

    job = subprocess.Popen([THRESHER, "run", str(tmp_path / "job.yaml"), "--no-progress"], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    deadline = time.time() + 300
    while job.poll() is None and time.time() < deadline:
        try:
            if json.loads((tmp_path / "out.work" / "status.json").read_text()).get("phase") == phase:
                break
        except (OSError, ValueError):
            pass
        time.sleep(0.005)
    os.killpg(job.pid, signal.SIGKILL)
    job.wait()
    now = versions.current(out)
    assert now == v1 or phase == "write", (phase, now, v1)  # killed in embed: nothing was published
    _intact(out, v1)
    _intact(out, now)
    assert {f.name: f.read_bytes() for f in sorted(index.iterdir())} == index_bytes != {}  # the index a killed night read is untouched
    listed = subprocess.run([sys.executable, "-m", "thresher.cli", "versions", str(out)], capture_output=True, text=True, check=True).stdout
    assert f"* {now}" in listed and ".partial" not in listed

    subprocess.run([THRESHER, "run", str(tmp_path / "job.yaml"), "--no-progress"], check=True, capture_output=True, timeout=600)
    last = versions.current(out)
    assert last > v1 and sorted(places(out / "latest")) == sorted(_ids(corpus))
    _intact(out, last)
    since = dict(zip(*pq.read_table(out / "latest" / "state" / "dedup" / "index", columns=["doc_id", "since"]).to_pydict().values()))
    assert {since[f"night-{i}"] for i in range(200) if f"night-{i}" in since} == {2} and set(since.values()) == {1, 2}
    assert set(versions.listed(out)) <= {v1, now, last} <= {v1, now, last}  # the killed run's finished-but-unpublished version, if any, was cleared
