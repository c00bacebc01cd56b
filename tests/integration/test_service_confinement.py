"""The service confines what a job opens, not only what its spec says, and refuses bad specs at the door.

A real `thresher serve` on loopback with `allowed_roots` = ROOT, real files and
symlinks; OUTSIDE is a directory beside ROOT that no job may read or write.
"""

from __future__ import annotations

import json
import os
import shutil

import httpx
import pyarrow.parquet as pq
import pytest

from ..serve_process import ServeProcess
from .helpers import places, write_corpus
from .test_service import ADMIN_TOKEN, READ_TOKEN, spec


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    root = tmp_path_factory.mktemp("root")
    outside = tmp_path_factory.mktemp("outside")
    write_corpus(root / "corpus", 120)
    write_corpus(outside / "secret", 90, seed=7)
    s = ServeProcess(root, {ADMIN_TOKEN: "admin", READ_TOKEN: "read"}, env={"THRESHER_MAX_BODY_BYTES": str(64 * 1024)}).start()
    s.outside = outside
    yield s
    s.stop()
    s.reap()


def _untouched(outside) -> list[str]:
    """Everything under OUTSIDE: only what the fixture wrote there."""
    return sorted(str(p.relative_to(outside)) for p in outside.rglob("*"))


OUTSIDE_FILES = ["secret", "secret/part-0.parquet", "secret/part-1.parquet", "secret/part-2.parquet"]


def _fails_naming(server, body: dict, field: str, path: str) -> dict:
    r = server.http.post("/v1/jobs", json=body)
    assert r.status_code == 202, r.text  # the strings are inside the roots: only the files say otherwise
    job = server.wait(r.json()["id"])
    assert job["state"] == "failed" and field in job["error"] and path in job["error"] and "outside the allowed roots" in job["error"], job
    assert job["counts"] is None  # nothing was read
    return job


def test_a_glob_member_that_links_outside_fails_the_job_and_reads_nothing(server):
    root, outside = server.root, server.outside
    (root / "globdir").mkdir()
    shutil.copy(root / "corpus" / "part-0.parquet", root / "globdir" / "b.parquet")
    (root / "globdir" / "a.parquet").symlink_to(outside / "secret" / "part-0.parquet")
    body = spec(root, "out-glob", root / "globdir")
    body["input"]["paths"] = [str(root / "globdir" / "*.parquet")]
    _fails_naming(server, body, "input.paths", str(root / "globdir" / "a.parquet"))
    assert not (root / "out-glob").exists() and _untouched(outside) == OUTSIDE_FILES


def test_a_directory_input_holding_a_link_outside_fails_the_job(server):
    root, outside = server.root, server.outside
    (root / "dirinput").mkdir()
    shutil.copy(root / "corpus" / "part-1.parquet", root / "dirinput" / "b.parquet")
    (root / "dirinput" / "a.parquet").symlink_to(outside / "secret" / "part-1.parquet")
    _fails_naming(server, spec(root, "out-dir", root / "dirinput"), "input.paths", str(root / "dirinput" / "a.parquet"))
    assert not (root / "out-dir").exists() and _untouched(outside) == OUTSIDE_FILES


def test_a_model_directory_reaching_outside_is_refused(server):
    root, outside = server.root, server.outside
    at_door = server.http.post("/v1/jobs", json={**spec(root, "out-model", root / "corpus"), "embedder": {"model": str(outside)}})
    assert at_door.status_code == 403 and "embedder.model" in at_door.json()["detail"]
    linked = root / "model-link"
    linked.mkdir()
    (linked / "config.json").write_text("{}")
    (linked / "model.safetensors").symlink_to(outside / "secret" / "part-0.parquet")
    _fails_naming(server, {**spec(root, "out-model", root / "corpus"), "embedder": {"model": str(linked)}}, "embedder.model", str(linked / "model.safetensors"))
    walked = root / "model-walk"
    walked.mkdir()
    (walked / "modules.json").write_text(json.dumps([{"idx": 0, "name": "0", "path": "../../" + outside.name, "type": "sentence_transformers.models.Transformer"}]))
    _fails_naming(server, {**spec(root, "out-model", root / "corpus"), "embedder": {"model": str(walked)}}, "embedder.model", str(walked))
    assert not (root / "out-model").exists() and _untouched(outside) == OUTSIDE_FILES


def test_an_output_parent_swapped_for_a_link_after_submit_is_never_written(server):
    root, outside = server.root, server.outside
    target = outside / "swapped"
    target.mkdir()
    r = server.http.post("/v1/jobs", json=spec(root, "later/out", root / "corpus"))
    assert r.status_code == 202, r.text  # ROOT/later does not exist yet: the path is inside the root
    (root / "later").symlink_to(target)  # ... and now it leads outside, before the driver gets to it
    job = server.wait(r.json()["id"])
    assert job["state"] == "failed" and "output" in job["error"] and "outside the allowed roots" in job["error"], job
    assert list(target.iterdir()) == []  # neither out/ nor out.work/ nor a staging directory
    (root / "later").unlink()
    target.rmdir()


def test_an_output_that_is_a_root_is_refused_at_the_door(server):
    root = server.root
    body = spec(root, "x", root / "corpus")
    body["output"] = {"path": str(root)}  # its work directory (ROOT.work) and staging directory lie beside the root
    r = server.http.post("/v1/jobs", json=body)
    assert r.status_code == 403 and "output" in r.json()["detail"], r.text
    body["output"] = {"path": str(root), "work_dir": str(root / "w")}
    r = server.http.post("/v1/jobs", json=body)
    assert r.status_code == 403 and "output.path" in r.json()["detail"] and "not be one" in r.json()["detail"], r.text


def test_file_uris_inside_a_root_run(server):
    root = server.root
    body = spec(root, "out-uri", root / "corpus")
    body["input"]["paths"] = [f"file://{root / 'corpus'}"]
    r = server.http.post("/v1/jobs", json=body)
    assert r.status_code == 202, r.text
    job = server.wait(r.json()["id"])
    assert job["state"] == "succeeded", job
    assert sorted(places(root / "out-uri")) == sorted(pq.read_table(root / "corpus").column("id").to_pylist())
    report = server.http.get(f"/v1/jobs/{job['id']}/report")
    assert report.headers["x-content-type-options"] == "nosniff" and "default-src 'none'" in report.headers["content-security-policy"]
    outside = server.http.post("/v1/jobs", json={**body, "input": {"paths": [f"file://{server.outside / 'secret'}"], "id_column": "id"}})
    assert outside.status_code == 403 and "input.paths" in outside.json()["detail"]


@pytest.mark.parametrize(
    "change, field",
    [
        (lambda b: b["input"].update(paths=["/tmp/a\x00b"]), "input.paths.0"),
        (lambda b: b["selection"]["budget"].update(amount="100"), "selection.budget.amount"),
        (lambda b: b["selection"].update(filters=[{"column": "sig_words", "min": 1, "max": 1e999}]), "selection.filters.0.max"),
        (lambda b: b.update(selection={"budget": {"amount": 10}, "search": {"validation": {"paths": ["/x"]}, "proxy": "command:notconfigured"}}), "selection.search.proxy"),
        (lambda b: b.update(ray={"num_cpus": 1}), "ray.num_cpus"),
    ],
)
def test_specs_that_can_only_fail_are_refused_with_422_naming_the_field(server, change, field):
    body = spec(server.root, "out-bad", server.root / "corpus")
    change(body)
    r = server.http.post("/v1/jobs", content=json.dumps(body, allow_nan=True), headers={"Content-Type": "application/json"})
    assert r.status_code == 422 and field in r.json()["detail"], r.text


def test_lone_surrogates_and_non_finite_literals_are_422_not_500(server):
    body = json.dumps(spec(server.root, "out-bad", server.root / "corpus"))
    for bad in (body.replace('"id"', '"\\udc80"', 1), body.replace('"amount": 100', '"amount": Infinity'), body.replace('"amount": 100', '"amount": NaN')):
        r = server.http.post("/v1/jobs", content=bad, headers={"Content-Type": "application/json"})
        assert r.status_code == 422, (bad[:200], r.status_code, r.text)
    assert server.http.get("/healthz").status_code == 200  # the connection and the server survived


def test_an_idempotency_key_reused_with_another_body_is_422(server):
    body = spec(server.root, "out-idem", server.root / "corpus")
    key = {"Idempotency-Key": "nightly-idem"}
    first = server.http.post("/v1/jobs", json=body, headers=key)
    assert first.status_code == 202
    assert server.http.post("/v1/jobs", json=body, headers=key).json()["id"] == first.json()["id"]  # the same body: the same job
    other = server.http.post("/v1/jobs", json={**body, "seed": 1}, headers=key)
    assert other.status_code == 422 and first.json()["id"] in other.json()["detail"] and "different spec" in other.json()["detail"]
    server.http.post(f"/v1/jobs/{first.json()['id']}/cancel")
    server.wait(first.json()["id"])


def test_a_body_over_the_limit_is_413_before_it_is_read_token_or_not(server):
    big = b'{"input": {"paths": ["' + b"x" * (100 * 1024) + b'"]}}'
    for headers in ({}, {"Authorization": f"Bearer {ADMIN_TOKEN}"}):
        r = httpx.post(f"{server.url}/v1/jobs", content=big, headers={"Content-Type": "application/json", **headers})
        assert r.status_code == 413 and "max_body_bytes" in r.json()["detail"]

    def chunks():  # no Content-Length: counted as it arrives
        for _ in range(100):
            yield b"x" * 1024

    r = httpx.post(f"{server.url}/v1/jobs", content=chunks(), headers={"Content-Type": "application/json", "Authorization": f"Bearer {ADMIN_TOKEN}"})
    assert r.status_code == 413
    assert server.http.get("/healthz").status_code == 200


def test_serve_takes_config_after_the_subcommand(tmp_path):
    import subprocess
    import sys

    config = tmp_path / "thresher.yaml"
    config.write_text("port: notaport\n")
    p = subprocess.run([sys.executable, "-m", "thresher.cli", "serve", "--config", str(config)], capture_output=True, text=True, timeout=60, env={**os.environ})
    assert p.returncode == 2 and "port" in p.stderr and "unrecognized" not in p.stderr, p.stderr
