"""The selection service against a real uvicorn server on loopback, a real SQLite file and real driver processes."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import httpx
import psutil
import pyarrow.parquet as pq
import pytest

from .. import postgres
from ..serve_process import ServeProcess
from .helpers import places, write_corpus

READ_TOKEN = "read-only-dashboard-token"
ADMIN_TOKEN = "admin-token-from-the-config"


def Server(root: Path) -> ServeProcess:
    return ServeProcess(root, {ADMIN_TOKEN: "admin", READ_TOKEN: "read"})


def spec(root: Path, name: str, corpus: Path, **selection) -> dict:
    return {
        "input": {"paths": [str(corpus)], "id_column": "id"},
        "output": {"path": str(root / name)},
        "embedder": {"model": "static"},
        "clustering": {"n_clusters": 3},
        "selection": {"strategy": "uniform", "budget": {"unit": "docs", "amount": 100}, **selection},
        "ray": {"num_cpus": 2, "object_store_mb": 512},
    }


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    root = tmp_path_factory.mktemp("service")
    write_corpus(root / "corpus", 300)
    s = Server(root).start()
    yield s
    s.stop()
    s.reap()


def test_a_job_goes_from_submit_to_succeeded_with_its_output_served(server):
    root = server.root
    r = server.http.post("/v1/jobs", json=spec(root, "out-a", root / "corpus"))
    assert r.status_code == 202 and r.headers["location"] == f"/v1/jobs/{r.json()['id']}" and r.json()["state"] == "queued"
    job = server.wait(r.json()["id"])
    assert job["state"] == "succeeded", job
    assert job["attempt"] == 1 and job["progress"]["phases"]["embed"]["state"] == "done" and job["progress"]["phases"]["embed"]["rows"] == 300
    assert job["published"] == str(root / "out-a")  # where the manifest and report are served from
    out = root / "out-a"
    assert sorted(places(out)) == sorted(pq.read_table(root / "corpus").column("id").to_pylist())  # every input row in one place
    served = server.http.get(f"/v1/jobs/{job['id']}/manifest")
    assert served.status_code == 200 and served.json() == json.loads((out / "manifest.json").read_text())
    assert job["counts"] == served.json()["counts"] and any((out / "data").glob("*.parquet"))
    report = server.http.get(f"/v1/jobs/{job['id']}/report")
    assert report.status_code == 200 and report.headers["content-type"].startswith("text/html") and "thresher selection" in report.text
    logs = server.http.get(f"/v1/jobs/{job['id']}/logs", params={"tail": 5})
    assert logs.status_code == 200 and "[write]" in logs.text
    listed = server.http.get("/v1/jobs", params={"state": "succeeded"}).json()
    assert job["id"] in [j["id"] for j in listed["jobs"]]
    assert 'thresher_jobs{state="succeeded"}' in httpx.get(f"{server.url}/metrics").text


def test_bad_requests_get_the_right_status_and_a_reason(server):
    body = spec(server.root, "out-b", server.root / "corpus")
    assert httpx.post(f"{server.url}/v1/jobs", json=body).status_code == 401
    assert httpx.get(f"{server.url}/v1/jobs", headers={"Authorization": "Bearer wrong"}).status_code == 401
    read = {"Authorization": f"Bearer {READ_TOKEN}"}
    assert httpx.get(f"{server.url}/v1/jobs", headers=read).status_code == 200
    assert httpx.post(f"{server.url}/v1/jobs", json=body, headers=read).status_code == 403  # read-only token
    outside = server.http.post("/v1/jobs", json={**body, "output": {"path": "/tmp/elsewhere"}})
    assert outside.status_code == 403 and "output.path" in outside.json()["detail"]
    bad = server.http.post("/v1/jobs", json={**body, "selection": {"strategy": "uniform", "budget": {"amount": -1}}})
    assert bad.status_code == 422 and "selection.budget.amount" in bad.json()["detail"]
    assert server.http.get("/v1/jobs/no-such-job").status_code == 404
    assert server.http.post("/v1/jobs/no-such-job/cancel").status_code == 404
    assert httpx.get(f"{server.url}/healthz").status_code == 200  # no token needed


def test_a_retried_submission_with_the_same_key_returns_the_first_job(server):
    body = spec(server.root, "out-c", server.root / "corpus")
    first = server.http.post("/v1/jobs", json=body, headers={"Idempotency-Key": "nightly-2026-12-02"})
    again = server.http.post("/v1/jobs", json=body, headers={"Idempotency-Key": "nightly-2026-12-02"})
    assert first.status_code == 202 and again.status_code == 200 and again.json()["id"] == first.json()["id"]
    assert server.wait(first.json()["id"])["state"] == "succeeded"


def test_cancel_during_embed_publishes_nothing_and_stops_the_ray_work(server):
    root = server.root
    write_corpus(root / "big", 4000, seed=3)
    r = server.http.post("/v1/jobs", json={**spec(root, "out-d", root / "big"), "embedder": {"model": "minilm", "batch_size": 16}})
    job = server.wait(r.json()["id"], until=lambda j: j["progress"]["phase"] == "embed" and j["progress"]["phases"]["embed"].get("rows_done", 0) > 0)
    driver = int(job["driver"].split(":")[1])
    niceness = {psutil.Process(pid).nice() for pid in _session(driver)}  # the driver and its local Ray, below the API's priority
    if Path("/proc/self/autogroup").exists():  # the session's scheduling group too, which is what counts with autogroup on
        assert Path(f"/proc/{driver}/autogroup").read_text().split()[-1] == "10"
    assert min(niceness) >= os.nice(0) + 10, niceness  # (Ray lowers some of its own processes further, to 19)
    assert server.http.post(f"/v1/jobs/{job['id']}/cancel").status_code == 202
    done = server.wait(job["id"])
    assert done["state"] == "cancelled" and not (root / "out-d").exists() and not list(root.glob(".out-d.partial-*"))
    assert not _session(driver), "the job is cancelled while processes of its driver's session (its local Ray) still run"
    assert server.http.post(f"/v1/jobs/{job['id']}/cancel").status_code == 409  # nothing leaves a terminal state


def _session(sid: int) -> list[int]:
    """Live processes in the driver's session (the driver and the local Ray it started)."""
    found = []
    for p in psutil.process_iter():
        try:
            if os.getsid(p.pid) == sid and p.status() != psutil.STATUS_ZOMBIE:
                found.append(p.pid)
        except (ProcessLookupError, PermissionError, psutil.Error):
            pass
    return found


def test_a_restart_keeps_the_queued_job_and_resumes_the_one_whose_driver_died(tmp_path):
    write_corpus(tmp_path / "corpus", 300)
    s = Server(tmp_path).start()
    try:
        running = s.http.post("/v1/jobs", json=spec(tmp_path, "out-r", tmp_path / "corpus")).json()["id"]
        queued = s.http.post("/v1/jobs", json={**spec(tmp_path, "out-q", tmp_path / "corpus"), "seed": 1}).json()["id"]
        job = s.wait(running, until=lambda j: j["progress"]["phase"] in ("embed", "clusters", "fit", "score"))
        assert s.job(queued)["state"] == "queued"  # one job at a time
        s.stop()
        os.killpg(int(job["driver"].split(":")[1]), signal.SIGKILL)  # the driver dies while the service is down
        s.start()
        resumed, later = s.wait(running), s.wait(queued)
        assert resumed["state"] == "succeeded" and resumed["attempt"] == 2, resumed
        assert later["state"] == "succeeded" and later["attempt"] == 1
        assert sorted(places(tmp_path / "out-r")) == sorted(pq.read_table(tmp_path / "corpus").column("id").to_pylist())
    finally:
        s.stop()
        s.reap()


def test_the_command_line_client_submits_waits_and_reads_logs(server):
    import yaml

    env = {**os.environ, "THRESHER_URL": server.url, "THRESHER_TOKEN": ADMIN_TOKEN}
    path = server.root / "job-cli.yaml"
    path.write_text(yaml.safe_dump(spec(server.root, "out-cli", server.root / "corpus")))

    def cli(*args: str) -> subprocess.CompletedProcess:
        return subprocess.run([sys.executable, "-m", "thresher.cli", *args], env=env, capture_output=True, text=True, timeout=600)

    submitted = cli("submit", str(path), "--wait")
    assert submitted.returncode == 0, submitted.stderr
    job_id = submitted.stdout.split()[0]
    assert "succeeded" in submitted.stdout.splitlines()[-1] and (server.root / "out-cli" / "manifest.json").exists()
    assert cli("status", job_id).stdout.startswith(f"{job_id}  succeeded")
    assert "[write]" in cli("logs", job_id).stdout and "[write]" in cli("logs", job_id, "--follow").stdout  # follow ends with the job
    late = cli("cancel", job_id)
    assert late.returncode == 1 and late.stderr.strip() == f"thresher: job: 409: job {job_id} is already succeeded"
    no_token = subprocess.run([sys.executable, "-m", "thresher.cli", "status"], env={**env, "THRESHER_TOKEN": ""}, capture_output=True, text=True)
    assert no_token.returncode == 1 and "no token" in no_token.stderr


def test_the_service_keeps_its_jobs_in_postgres_when_given_a_url(tmp_path):
    write_corpus(tmp_path / "corpus", 300)
    with postgres.server() as admin_url:
        url = postgres.fresh_database(admin_url)
        s = ServeProcess(tmp_path, {ADMIN_TOKEN: "admin"}, env={"THRESHER_DATABASE_URL": url})
        s.start()
        try:
            assert httpx.get(f"{s.url}/readyz").json()["checks"]["store"] is True
            job_id = s.http.post("/v1/jobs", json=spec(tmp_path, "out-pg", tmp_path / "corpus")).json()["id"]
            assert s.wait(job_id)["state"] == "succeeded"
            s.stop()
            s.start()  # a restarted service finds the job in Postgres, and nothing went to a SQLite file
            assert s.job(job_id)["state"] == "succeeded" and not (tmp_path / "data" / "jobs.db").exists()
            assert sorted(places(tmp_path / "out-pg")) == sorted(pq.read_table(tmp_path / "corpus").column("id").to_pylist())
        finally:
            s.stop()
            s.reap()


def test_two_services_on_one_store_run_each_job_once_and_either_can_cancel(tmp_path):
    write_corpus(tmp_path / "corpus", 300)
    write_corpus(tmp_path / "big", 4000, seed=3)
    first = Server(tmp_path).start()
    second = ServeProcess(tmp_path, {ADMIN_TOKEN: "admin", READ_TOKEN: "read"}, data=first.data).start()
    try:
        job_id = second.http.post("/v1/jobs", json=spec(tmp_path, "out-1", tmp_path / "corpus")).json()["id"]
        done = first.wait(job_id)
        assert done["state"] == "succeeded" and done["attempt"] == 1, done  # started once, by one scheduler
        assert "schedules the jobs of this store" in second.log_path.read_text()  # the second only serves the API
        assert httpx.get(f"{first.url}/readyz").json()["scheduling"] and not httpx.get(f"{second.url}/readyz").json()["scheduling"]
        body = {**spec(tmp_path, "out-big", tmp_path / "big"), "embedder": {"model": "minilm", "batch_size": 16}}
        job_id = second.http.post("/v1/jobs", json=body).json()["id"]
        second.wait(job_id, until=lambda j: j["progress"]["phase"] == "embed")
        assert second.http.post(f"/v1/jobs/{job_id}/cancel").status_code == 202  # through the one not scheduling
        assert first.wait(job_id, timeout=60)["state"] == "cancelled" and not (tmp_path / "out-big").exists()
    finally:
        for s in (second, first):
            s.stop()
            s.reap()


def test_each_job_of_a_versioned_output_serves_its_own_version(server):
    root = server.root
    body = spec(root, "out-versioned", root / "corpus")
    body["output"]["versions"] = {"keep": 5}
    ids = []
    for _ in range(2):
        job = server.wait(server.http.post("/v1/jobs", json=body).json()["id"])
        assert job["state"] == "succeeded", job
        ids.append(job["id"])
    served = [server.http.get(f"/v1/jobs/{i}/manifest").json() for i in ids]
    assert [m["version"]["id"] for m in served] == [p.name for p in sorted((root / "out-versioned" / "versions").iterdir())]
    assert served[1]["version"]["previous"] == served[0]["version"]["id"] and served[1]["changes"]["added"] == served[1]["changes"]["dropped"] == 0
    assert server.job(ids[0])["published"] == str(root / "out-versioned" / "versions" / served[0]["version"]["id"])
