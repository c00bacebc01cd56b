"""The console script, as a user runs it: exit codes and one readable line on errors."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import yaml

from .helpers import write_corpus

THRESHER = str(Path(sys.executable).parent / "thresher")  # the console script of this environment


def _run(*args: str, cwd: Path | None = None) -> subprocess.CompletedProcess:
    return subprocess.run([THRESHER, *args], capture_output=True, text=True, cwd=cwd, timeout=600)


def test_invalid_spec_is_refused_naming_the_field(tmp_path):
    spec = tmp_path / "bad.yaml"
    spec.write_text(yaml.safe_dump({"input": {"paths": ["x"]}, "output": {"path": "o"}, "clustering": {"n_clusters": -3}}))
    p = _run("run", str(spec))
    assert p.returncode == 2
    lines = p.stderr.strip().splitlines()
    assert len(lines) == 1 and "clustering.n_clusters" in lines[0]


def test_missing_input_is_one_readable_line(tmp_path):
    spec = tmp_path / "spec.yaml"
    spec.write_text(yaml.safe_dump({"input": {"paths": [str(tmp_path / "nope.parquet")]}, "output": {"path": str(tmp_path / "o")}}))
    p = _run("run", str(spec))
    assert p.returncode == 1
    lines = p.stderr.strip().splitlines()
    assert len(lines) == 1 and "no such file" in lines[0]
    assert not (tmp_path / "o").exists()


def test_missing_text_column_is_refused(tmp_path):
    corpus = write_corpus(tmp_path / "corpus", 50)
    spec = tmp_path / "spec.yaml"
    spec.write_text(yaml.safe_dump({"input": {"paths": [str(corpus)], "text_column": "body"}, "output": {"path": str(tmp_path / "o")}}))
    p = _run("run", str(spec))
    assert p.returncode == 1 and "no column 'body'" in p.stderr


def test_jsonl_job_from_the_command_line(tmp_path):
    corpus = tmp_path / "corpus.jsonl"
    assert _run("demo-corpus", str(corpus), "--docs", "400").returncode == 0
    with corpus.open("a") as f:
        f.write("this line is not json\n")
        f.write(json.dumps({"id": "num", "text": 12345}) + "\n")
    spec = tmp_path / "spec.yaml"
    spec.write_text(
        yaml.safe_dump(
            {
                "input": {"paths": [str(tmp_path / "*.jsonl")], "id_column": "id"},
                "output": {"path": str(tmp_path / "out")},
                "clustering": {"n_clusters": 4},
                "selection": {"strategy": "uniform", "budget": {"unit": "docs", "amount": 100}},
                "ray": {"num_cpus": 2, "object_store_mb": 512},
            }
        )
    )
    p = _run("run", str(spec), "--no-progress")
    assert p.returncode == 0, p.stderr[-2000:]
    assert "selection written to" in p.stdout
    assert f"report: {(tmp_path / 'out' / 'report.html').resolve()}" in p.stdout and (tmp_path / "out" / "report.html").is_file()
    m = json.loads((tmp_path / "out" / "manifest.json").read_text())
    assert m["counts"]["input"] == 402 and m["counts"]["invalid"] == 2
    assert m["counts"]["invalid_by_reason"] == {"malformed JSON line": 1, "text is not a string (int)": 1}
    # the terminal gets one line per phase; Ray's own output goes to the work directory's log
    work = tmp_path / "out.work"
    lines = p.stderr.strip().splitlines()
    assert [ln.split("]")[0] + "]" for ln in lines] == ["[embed]", "[clusters]", "[fit]", "[score]", "[select]"], p.stderr
    assert "rows in" in lines[0] and "rows/s" in lines[0]
    log = (work / "job.log").read_text()
    assert "[embed] running" in log and "streaming_executor" in log and "streaming_executor" not in p.stderr
    status = json.loads((work / "status.json").read_text())
    assert status["state"] == "succeeded" and status["phases"]["embed"]["rows"] == 402
    events = [json.loads(line)["event"] for line in (work / "events.jsonl").read_text().splitlines()]
    assert events[0] == "phase_start" and events[-1] == "job_end" and events.count("phase_end") == 5


def test_version():
    p = _run("--version")
    assert p.returncode == 0 and p.stdout.startswith("thresher ")


def test_unknown_filter_column_is_refused_before_work(tmp_path):
    corpus = write_corpus(tmp_path / "corpus", 50)
    spec = tmp_path / "spec.yaml"
    spec.write_text(
        yaml.safe_dump(
            {
                "input": {"paths": [str(corpus)]},
                "output": {"path": str(tmp_path / "o")},
                "selection": {"filters": [{"column": "sig_nonsense", "min": 1}]},
            }
        )
    )
    p = _run("run", str(spec))
    assert p.returncode == 2 and "selection.filters.0.column: no input column 'sig_nonsense'" in p.stderr
    assert not (tmp_path / "o.work").exists()


def test_an_output_under_a_file_is_one_readable_line(tmp_path):
    corpus = write_corpus(tmp_path / "corpus", 50)
    (tmp_path / "afile").write_text("not a directory")
    spec = tmp_path / "spec.yaml"
    spec.write_text(yaml.safe_dump({"input": {"paths": [str(corpus)]}, "output": {"path": str(tmp_path / "afile" / "out")}}))
    p = _run("run", str(spec))
    lines = p.stderr.strip().splitlines()
    assert p.returncode == 1 and len(lines) == 1 and "afile is a file, not a directory" in lines[0], p.stderr


def test_a_full_disk_inside_a_ray_task_is_recognised(local_ray):
    """Ray Data wraps a worker's OSError in a UserCodeException that does not chain it: the text still says ENOSPC."""
    import ray.data

    from thresher.pipeline.runner import _disk_full

    def write_to_a_full_disk(batch):
        with open("/dev/full", "wb") as fh:  # every write to /dev/full fails with ENOSPC
            fh.write(b"x" * 4096)
            fh.flush()
        return batch

    try:
        ray.data.range(4).map_batches(write_to_a_full_disk).materialize()
    except Exception as e:
        assert _disk_full(e), repr(e)
        assert not _disk_full(RuntimeError("UDF failed to process a data block"))
    else:
        raise AssertionError("writing to /dev/full did not fail")
