"""No silent wrong output: the cases a new user hit (overlapping paths, new input files,
typos, budgets larger than the pool, ordered ids, two jobs on one work directory)."""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
import pytest
import yaml

from thresher.demo_corpus import generate
from thresher.pipeline.errors import InputError, JobError, SpecError
from thresher.pipeline.runner import run
from thresher.pipeline.spec import parse_spec

from .helpers import make_spec, places, write_corpus, write_jsonl_corpus

THRESHER = str(Path(sys.executable).parent / "thresher")


def _quiet(spec, **kw):
    return run(spec, log=lambda m: None, progress=False, **kw)




# --- 1. output over the input ----------------------------------------------------


def test_output_over_the_input_directory_is_refused_and_nothing_is_deleted(tmp_path):
    corpus = write_corpus(tmp_path / "corpus", 60)
    before = sorted(p.name for p in corpus.iterdir())
    spec = make_spec(corpus, corpus, output={"overwrite": True})
    with pytest.raises(InputError, match="holds the input file"):
        _quiet(spec)
    assert sorted(p.name for p in corpus.iterdir()) == before
    inside = make_spec(corpus, corpus / "curated", output={"overwrite": True})
    with pytest.raises(InputError, match="inside the input directory"):
        _quiet(inside)
    assert not (corpus / "curated").exists() and not (corpus / "curated.work").exists()
    with pytest.raises(SpecError, match="overlap"):
        _quiet(make_spec(corpus, tmp_path / "out", output={"overwrite": True, "work_dir": str(tmp_path / "out" / "cache")}))


def test_output_that_is_an_existing_file_is_refused_and_kept(tmp_path):
    corpus = write_corpus(tmp_path / "corpus", 60)
    target = tmp_path / "notes.txt"
    target.write_text("keep me")
    with pytest.raises(InputError, match="is an existing file"):
        _quiet(make_spec(corpus, target, output={"overwrite": True}))
    assert target.read_text() == "keep me"


# --- 2. a new input file ------------------------------------------------------------


def test_an_added_input_file_is_embedded_and_counted(local_ray, tmp_path):
    corpus = write_corpus(tmp_path / "corpus", 300)
    spec = make_spec(tmp_path / "corpus" / "*.parquet", tmp_path / "out", output={"overwrite": True})
    first = _quiet(spec)
    extra = generate(40, seed=7)
    extra = extra.set_column(0, "id", pa.array([f"new-{i}" for i in range(40)]))
    pq.write_table(extra, corpus / "part-9.parquet")
    second = _quiet(spec)
    assert not second["phases"]["embed"]["reused"]
    assert second["counts"]["input"] == first["counts"]["input"] + 40
    assert sorted(places(tmp_path / "out")) == sorted(pq.read_table(corpus, columns=["id"]).column("id").to_pylist())
    assert str(corpus / "part-9.parquet") in {f["path"] for f in second["inputs"]["files"]}
    assert all({"path", "size", "mtime_ns"} <= set(f) for f in second["inputs"]["files"])


# --- 4. misconfiguration found before any work ------------------------------------------


@pytest.fixture
def jsonl(tmp_path):
    return write_jsonl_corpus(tmp_path / "corpus.jsonl", 120)


@pytest.mark.parametrize(
    "changes, error, message",
    [
        ({"selection": {"domain": "sourc"}}, SpecError, "selection.domain: no JSON key 'sourc'"),
        ({"scorers": {"columns": [{"column": "ppl"}]}}, SpecError, "scorers.columns.0.column: no JSON key 'ppl'"),
        ({"selection": {"filters": [{"column": "perplexity", "max": 3}]}}, SpecError, "selection.filters.0.column: no JSON key 'perplexity'"),
        ({"input": {"text_column": "body"}}, InputError, "input.text_column: no JSON key 'body'"),
        ({"scorers": {"classifier": {"reference": {"paths": ["/nonexistent/ref.parquet"]}}}}, InputError, "scorers.classifier.reference: /nonexistent/ref.parquet: no such file"),
        ({"selection": {"strategy": "topk", "budget": {"amount": 10}, "by": {"q_classifier": 1}}}, SpecError, "no JSON key 'q_classifier'"),
    ],
)
def test_misconfiguration_is_refused_before_any_work(tmp_path, jsonl, changes, error, message):
    spec = make_spec(jsonl, tmp_path / "out", **changes)
    with pytest.raises(error, match=message.replace("(", r"\(").replace(".", r"\.")):
        _quiet(spec)
    assert not (tmp_path / "out.work").exists()  # refused before the work directory, Ray or the model


def test_topk_ranks_by_its_own_columns_not_quadmix_alpha(tmp_path):
    with pytest.raises(SpecError, match="selection.quadmix: Extra inputs"):
        make_spec(tmp_path, tmp_path / "o", selection={"strategy": "topk", "budget": {"amount": 5}, "quadmix": {"alpha": {"q_heuristic": 1}}})


def test_jsonl_keys_are_lifted_and_used_like_columns(local_ray, tmp_path):
    path = tmp_path / "corpus.jsonl"
    rows = generate(300, seed=3).select(["id", "text", "topic"]).to_pylist()
    for i, r in enumerate(rows):
        r["ppl"] = float(i % 50)
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    spec = make_spec(
        path,
        tmp_path / "out",
        scorers={"columns": [{"column": "ppl", "higher_is_better": False}]},
        selection={"strategy": "topk", "budget": {"amount": 60}, "by": {"q_ppl": 1.0}, "filters": [{"column": "ppl", "max": 40}], "domain": "topic"},
    )
    m = _quiet(spec)
    picked = pq.read_table(tmp_path / "out" / "data", columns=["doc_id", "q_ppl", "domain", "metadata"]).to_pylist()
    ppl = {r["id"]: r["ppl"] for r in rows}
    assert all(ppl[r["doc_id"]] <= 40 for r in picked)
    assert max(ppl[r["doc_id"]] for r in picked) < np.quantile([v for v in ppl.values() if v <= 40], 0.35)  # the lowest ppl win
    assert {r["domain"] for r in picked} <= {r["topic"] for r in rows}
    assert m["counts"]["not_selected_by_reason"]["filter: ppl > 40.0"] == sum(v > 40 for v in ppl.values())


# --- 5. a budget larger than the eligible pool ----------------------------------------------


def test_a_shortfall_is_capped_reported_or_refused(local_ray, tmp_path):
    corpus = write_corpus(tmp_path / "corpus", 400)
    work = tmp_path / "shared.work"
    small_pool = [{"column": "q_heuristic", "min": 0.62}]
    for strategy, cap in (("quadmix", 4), ("uniform", 1), ("topk", 1)):
        out = tmp_path / strategy
        spec = make_spec(corpus, out, output={"work_dir": str(work)}, selection={"strategy": strategy, "budget": {"unit": "tokens", "amount": 600_000}, "filters": small_pool})
        m = _quiet(spec)
        eligible = m["counts"]["valid"] - sum(v for k, v in m["counts"]["not_selected_by_reason"].items() if k != "not sampled")
        copies = pq.read_table(out / "data", columns=["sel_copies"]).column("sel_copies").to_numpy()
        assert 0 < eligible < 100 and copies.max() <= cap
        assert m["selection"]["shortfall"] > 0 and m["selection"]["max_copies"] == cap
        assert m["selection"]["expected"] + m["selection"]["shortfall"] == pytest.approx(600_000)
        assert len(m["warnings"]) == 1 and "budget" in m["warnings"][0]
        if strategy != "quadmix":  # without replacement: the whole eligible pool, once
            assert m["counts"]["selected_docs"] == eligible == copies.sum()
    refuse = make_spec(corpus, tmp_path / "refused", output={"work_dir": str(work)}, selection={"budget": {"unit": "tokens", "amount": 600_000}, "filters": small_pool, "on_shortfall": "error"})
    with pytest.raises(JobError, match="fills .* of the 600000 tokens budget"):
        _quiet(refuse)
    assert not (tmp_path / "refused").exists()


# --- 6. the fit sample with ordered ids ---------------------------------------------------


def test_fit_sample_is_unbiased_when_ids_follow_the_topic(local_ray, tmp_path):
    """Ids in topic order: a sample truncated by doc_id would only see the first topics."""
    table = generate(1200, seed=5)
    table = table.take(pc.sort_indices(table, [("topic", "ascending")]))
    results = {}
    for name, ids in (("ordered", [f"doc-{i:06d}" for i in range(table.num_rows)]), ("shuffled", [f"doc-{i:06d}" for i in np.random.default_rng(0).permutation(table.num_rows)])):
        d = tmp_path / name
        d.mkdir()
        pq.write_table(table.set_column(0, "id", pa.array(ids)), d / "corpus.parquet")
        spec = make_spec(d / "corpus.parquet", d / "out", clustering={"n_clusters": 8, "sample_size": 300}, selection={"filters": []})
        _quiet(spec)
        work = d / "out.work"
        score = pq.read_table(next(work.glob("score-*")) / "data", columns=["invalid_reason", "d_cluster", "d_cluster_size", "d_centroid_dist"])
        score = score.filter(pc.is_null(score.column("invalid_reason")))
        actual = np.bincount(score.column("d_cluster").to_numpy(), minlength=8)
        sizes = {c: s for c, s in zip(score.column("d_cluster").to_pylist(), score.column("d_cluster_size").to_pylist())}
        assert all(sizes[c] == actual[c] for c in sizes), (name, actual, sizes)  # a sample of 300: sizes counted over the pool, exactly
        results[name] = float(np.mean(score.column("d_centroid_dist").to_numpy()))
    # the centroids fit the whole pool as well as those of a shuffled-id run
    assert abs(results["ordered"] - results["shuffled"]) / results["shuffled"] < 0.15, results


# --- 7. two jobs on one work directory --------------------------------------------------------


def _spec_file(tmp_path: Path, corpus: Path, out: Path, **extra) -> Path:
    raw = {
        "input": {"paths": [str(corpus)], "id_column": "id"},
        "output": {"path": str(out), "overwrite": True},
        "clustering": {"n_clusters": 4},
        "selection": {"budget": {"unit": "docs", "amount": 200}},
        "ray": {"num_cpus": 2},
        **extra,
    }
    path = tmp_path / f"{out.name}.yaml"
    path.write_text(yaml.safe_dump(raw))
    return path


def _wait_for_phase(work: Path, phase: str, proc: subprocess.Popen, timeout: float = 300) -> None:
    deadline = time.time() + timeout
    while time.time() < deadline:
        assert proc.poll() is None, proc.communicate()
        try:
            status = json.loads((work / "status.json").read_text())
        except (FileNotFoundError, json.JSONDecodeError):
            status = {}
        if status.get("phase") == phase:
            return
        time.sleep(0.2)
    raise AssertionError(f"job never reached {phase}")


def test_a_second_job_on_a_busy_work_directory_is_refused_in_one_line(tmp_path):
    corpus = write_corpus(tmp_path / "corpus", 1500)
    spec = _spec_file(tmp_path, corpus, tmp_path / "out")
    first = subprocess.Popen([THRESHER, "run", str(spec), "--no-progress"], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    _wait_for_phase(tmp_path / "out.work", "embed", first)
    second = subprocess.run([THRESHER, "run", str(spec), "--no-progress"], capture_output=True, text=True, timeout=300)
    assert second.returncode == 1
    lines = second.stderr.strip().splitlines()
    assert len(lines) == 1 and "is in use by pid" in lines[0], second.stderr
    assert first.wait(timeout=600) == 0, first.communicate()
    manifest = json.loads((tmp_path / "out" / "manifest.json").read_text())
    assert sorted(places(tmp_path / "out")) == sorted(pq.read_table(corpus, columns=["id"]).column("id").to_pylist())
    assert manifest["counts"]["input"] == 1500


# --- 8. side corpora embed on the actors, not the driver -------------------------------------------


def test_side_corpora_are_embedded_by_the_actor_pool(tmp_path):
    corpus = write_corpus(tmp_path / "corpus", 400)
    side = generate(300, seed=11)
    pq.write_table(side.filter(pc.equal(side.column("planted"), "clean")), tmp_path / "reference.parquet")
    spec = make_spec(
        corpus,
        tmp_path / "out",
        scorers={"classifier": {"reference": {"paths": [str(tmp_path / "reference.parquet")]}}, "target_sim": {"target": {"paths": [str(tmp_path / "reference.parquet")]}}},
    )
    script = (
        "import sys, json\n"
        "from thresher import parse_spec, run\n"
        f"m = run(parse_spec(json.loads({json.dumps(spec.model_dump_json())!s})), log=lambda m: None, progress=False)\n"
        "loaded = [name for name in ('model2vec', 'sentence_transformers') if name in sys.modules]\n"
        "print(json.dumps({'loaded': loaded, 'fit': m['fit']}))\n"
    )
    p = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=600)
    assert p.returncode == 0, p.stderr
    result = json.loads(p.stdout.strip().splitlines()[-1])
    assert result["loaded"] == []  # the driver never loaded an embedding model
    assert result["fit"]["classifier"]["reference_docs"] > 100 and result["fit"]["target_sim_docs"] > 100


# --- the work directory does not grow by a corpus per selection ----------------------------------------


def test_gc_and_work_directory_growth_across_budgets(local_ray, tmp_path):
    corpus = write_corpus(tmp_path / "corpus", 600)
    work = tmp_path / "shared.work"
    sizes, specs = [], []
    for amount in (100, 150, 200, 250, 300):
        spec = make_spec(corpus, tmp_path / f"out-{amount}", output={"work_dir": str(work)}, selection={"budget": {"unit": "docs", "amount": amount}})
        _quiet(spec)
        specs.append(spec)
        sizes.append(sum(f.stat().st_size for f in work.rglob("*") if f.is_file()))
    assert sizes[-1] < 1.2 * sizes[0], sizes
    path = tmp_path / "keep.yaml"
    path.write_text(yaml.safe_dump(specs[-1].model_dump(mode="json")))
    p = subprocess.run([THRESHER, "gc", str(work), str(path)], capture_output=True, text=True, timeout=120)
    assert p.returncode == 0, p.stderr
    left = sorted(d.name.split("-")[0] for d in work.iterdir() if d.is_dir() and not d.name.startswith(".") and d.name not in ("pieces", "content-cache"))
    assert left == ["clusters", "embed", "fit", "score", "select"]
    listed = [name for phase in ("embed", "score") for name in json.loads((next(work.glob(f"{phase}-*")) / "pieces.json").read_text())]
    assert sorted(p.name for p in (work / "pieces").iterdir()) == sorted(listed)  # the kept phases' pieces, no other
    assert "removed 4 phase directories" in p.stdout
    assert _quiet(specs[-1].model_copy(update={"output": specs[-1].output.model_copy(update={"overwrite": True})}))["phases"]["select"]["reused"]


def test_run_events_report_phases_rows_and_reuse(local_ray, tmp_path):
    corpus = write_corpus(tmp_path / "corpus", 900)
    spec = make_spec(corpus, tmp_path / "out", output={"overwrite": True})
    events: list[dict] = []
    _quiet(spec, on_event=events.append)
    starts = [e["phase"] for e in events if e["event"] == "phase_start"]
    assert starts == ["embed", "clusters", "fit", "score", "select", "write"]
    embed = [e for e in events if e["event"] == "progress" and e["phase"] == "embed"]
    assert embed and all(e["rows_total"] == 900 for e in embed)
    assert [e["rows_done"] for e in embed] == sorted(e["rows_done"] for e in embed) and embed[-1]["rows_done"] <= 900
    assert events[-1]["event"] == "job_end" and events[-1]["counts"]["input"] == 900
    again: list[dict] = []
    _quiet(spec, on_event=again.append)
    assert [e["phase"] for e in again if e["event"] == "phase_reused"] == starts[:-1]  # the output is always written


@pytest.mark.parametrize("signum, code", [(signal.SIGINT, 130), (signal.SIGTERM, 143)])
def test_a_signal_stops_the_job_in_one_line_and_a_rerun_resumes(tmp_path, signum, code):
    corpus = write_corpus(tmp_path / "corpus", 1500)
    spec = _spec_file(tmp_path, corpus, tmp_path / "out")
    work = tmp_path / "out.work"
    job = subprocess.Popen([THRESHER, "run", str(spec), "--no-progress"], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    _wait_for_phase(work, "embed", job)
    time.sleep(1.0)
    sent = time.time()
    job.send_signal(signum)
    _, err = job.communicate(timeout=60)
    assert job.returncode == code and time.time() - sent < 30, err
    assert err.strip().splitlines()[-1] == "thresher: interrupted: in phase embed; rerun the same command to resume", err
    assert "Traceback" not in err
    assert json.loads((work / "status.json").read_text())["state"] == "failed"
    assert not [d for d in work.iterdir() if d.name.startswith(".tmp-")] and not list(tmp_path.glob(".out.partial-*"))
    if signum == signal.SIGTERM:
        return  # resuming is the same after either signal; once is enough
    again = subprocess.run([THRESHER, "run", str(spec), "--no-progress"], capture_output=True, text=True, timeout=600)
    assert again.returncode == 0, again.stderr
    assert sorted(places(tmp_path / "out")) == sorted(pq.read_table(corpus, columns=["id"]).column("id").to_pylist())


def test_a_full_disk_under_the_work_directory_is_one_line(local_ray, tmp_path):
    full = tmp_path / "small"
    full.mkdir()
    if subprocess.run(["mount", "-t", "tmpfs", "-o", "size=1M", "tmpfs", str(full)], capture_output=True).returncode != 0:
        pytest.skip("needs permission to mount a small tmpfs")
    try:
        corpus = write_corpus(tmp_path / "corpus", 600)
        spec = make_spec(corpus, tmp_path / "out", output={"work_dir": str(full / "work")})
        with pytest.raises(JobError, match=r"no space left on the device of the work directory .*small/work \(phase embed\)"):
            _quiet(spec)
        assert not (tmp_path / "out").exists()
    finally:
        subprocess.run(["umount", str(full)], check=False)


def _kill_driver_in(phase: str, spec: Path, work: Path) -> None:
    """Start a job, SIGKILL its driver (alone, not its group) the moment status.json shows PHASE, and check what is left."""
    import psutil

    job = subprocess.Popen([THRESHER, "run", str(spec), "--no-progress"], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.time() + 300
    status: dict = {}
    while True:
        assert job.poll() is None and time.time() < deadline, f"the job ended or stalled before {phase}: {status}"
        try:
            status = json.loads((work / "status.json").read_text())
        except (FileNotFoundError, json.JSONDecodeError):
            pass
        if status.get("phase") == phase:
            os.kill(job.pid, signal.SIGSTOP)  # held in PHASE at once, while its processes are listed: some phases last tens of ms
            break
        time.sleep(0.002)
    family = psutil.Process(job.pid).children(recursive=True)
    commands = []
    for p in family:
        with contextlib.suppress(psutil.Error):  # a worker may exit (or be a zombie) while we look
            commands.append(" ".join(p.cmdline()))
    os.kill(job.pid, signal.SIGKILL)
    job.wait()
    assert json.loads((work / "status.json").read_text())["phase"] == phase  # it died in that phase, not later
    assert any("raylet" in c for c in commands), commands  # a local Ray was running
    _, alive = psutil.wait_procs(family, timeout=30)
    assert not alive, (phase, [(p.pid, " ".join(p.cmdline())[:80]) for p in alive])  # local Ray and the reaper are gone
    named = [d for d in work.iterdir() if d.is_dir() and not d.name.startswith(".") and d.name not in ("pieces", "content-cache")]
    named += [d for d in (work / "pieces").iterdir() if not d.name.startswith(".")] if (work / "pieces").exists() else []
    assert all((d / "_SUCCESS").exists() for d in named), f"a half-written phase or piece has its final name after a kill in {phase}"
    for f in (work / "content-cache").rglob("*.parquet") if (work / "content-cache").exists() else []:
        pq.ParquetFile(f)  # a cache file has its final name only when complete


def test_kill_9_in_each_phase_then_a_rerun_gives_the_uninterrupted_output(local_ray, tmp_path):
    """One job killed in every phase in turn (each rerun resumes, then dies in the next phase); the last rerun finishes."""
    from thresher.pipeline.runner import keys_for

    corpus = write_corpus(tmp_path / "corpus", 800)
    scorers = {"dedup": {}, "semdedup": {}}
    # small shards, so the write phase runs long enough (tens of shard tasks) to be killed in
    spec = _spec_file(tmp_path, corpus, tmp_path / "out", scorers=scorers, output={"path": str(tmp_path / "out"), "overwrite": True, "shard_bytes": 20_000})
    raw = yaml.safe_load(spec.read_text())
    reference = _quiet(parse_spec({**raw, "output": {**raw["output"], "path": str(tmp_path / "ref")}}))
    work = tmp_path / "out.work"
    phases = [name for name, key in keys_for(parse_spec(yaml.safe_load(spec.read_text()))).items() if key]
    assert phases == ["embed", "clusters", "fit", "dedup", "semdedup", "score", "select"]
    for phase in [*phases, "write"]:
        _kill_driver_in(phase, spec, work)
    done = subprocess.run([THRESHER, "run", str(spec), "--no-progress"], capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr
    manifest = json.loads((tmp_path / "out" / "manifest.json").read_text())
    assert [(s["path"], s["sha256"]) for s in manifest["shards"]] == [(s["path"], s["sha256"]) for s in reference["shards"]]
    assert sorted(places(tmp_path / "out")) == sorted(pq.read_table(corpus, columns=["id"]).column("id").to_pylist())
    assert not [d for d in work.iterdir() if d.name.startswith(".tmp-")] and not list(tmp_path.glob(".out.partial-*"))


def test_the_same_spec_in_a_fresh_work_directory_gives_byte_identical_shards(local_ray, tmp_path, monkeypatch):
    """Another embed batch size and another input partitioning (neither part of any cache key) split the work files
    differently; the shards do not move."""
    from thresher.pipeline import partitions

    corpus = write_corpus(tmp_path / "corpus", 400)
    for f in corpus.glob("*.parquet"):  # row groups of 50, so the partitioning can cut a file
        pq.write_table(pq.read_table(f), f, row_group_size=50)
    manifests = []
    for run_no, batch in enumerate((64, 150)):
        if run_no:
            monkeypatch.setattr(partitions, "PARTITION_ROWS", 100)
        spec = make_spec(corpus, tmp_path / f"out{run_no}", embedder={"batch_size": batch}, output={"shard_bytes": 60_000, "row_group_rows": 50}, selection={"budget": {"unit": "docs", "amount": 150}})
        manifests.append(run(spec, log=lambda m: None, progress=False))
    first, second = ([(s["path"], s["rows"], s["sha256"]) for s in m["shards"]] for m in manifests)
    assert len(first) >= 3 and first == second
    for (path, _, digest) in first:
        assert hashlib.sha256((tmp_path / "out1" / path).read_bytes()).hexdigest() == digest
    layouts = [sorted(pq.ParquetFile(f).metadata.num_rows for f in (tmp_path / f"out{i}.work").glob("embed-*/data/*.parquet")) for i in (0, 1)]
    assert layouts[0] != layouts[1]  # the upstream files really were split differently


def test_kill_9_of_the_jobs_process_group_leaves_nothing_of_ray(tmp_path):
    """As a shell's `kill -9 -PGID` (or a service's cancel gone wrong) does: the whole group at once, during embed.

Embed is the phase with the most Ray processes alive (the actor pool), and
the one long enough to be caught on any machine; select can finish between
two polls of the status file.

    A worker the raylet forks in that instant has no parent left to be found
    through; the reaper finds it by the files it holds in the job.s Ray session directory.
    """
    import psutil

    corpus = write_corpus(tmp_path / "corpus", 800)
    spec = _spec_file(tmp_path, corpus, tmp_path / "out")
    job = subprocess.Popen([THRESHER, "run", str(spec), "--no-progress"], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    _wait_for_phase(tmp_path / "out.work", "embed", job)
    os.killpg(job.pid, signal.SIGKILL)
    job.wait()

    def left() -> list[str]:
        found = []
        for p in psutil.process_iter(["cmdline"]):
            with contextlib.suppress(OSError, psutil.Error):
                if os.getsid(p.pid) == job.pid and p.status() != psutil.STATUS_ZOMBIE:
                    found.append(" ".join(p.info["cmdline"] or [])[:100])
        return found

    deadline = time.time() + 20
    while left() and time.time() < deadline:
        time.sleep(0.5)
    assert not left(), left()
