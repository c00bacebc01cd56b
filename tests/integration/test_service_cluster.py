"""The cluster path: a Ray head on loopback (`ray start --head`, with the dashboard), jobs through Ray's Job Submission API."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pyarrow.parquet as pq
import pytest

from .helpers import places, write_corpus
from .test_service import Server, spec


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture
def ray_head(tmp_path, monkeypatch):
    monkeypatch.setenv("RAY_AUTH_MODE", "token")  # Ray's token auth (the token in ~/.ray/auth_token), for the head and its clients
    port, dashboard, agent = _free_port(), _free_port(), _free_port()
    ray = Path(sys.executable).with_name("ray")
    head = subprocess.Popen(
        [str(ray), "start", "--head", "--block", "--node-ip-address=127.0.0.1", f"--port={port}", "--include-dashboard=true",
         "--dashboard-host=127.0.0.1", f"--dashboard-port={dashboard}",
         f"--dashboard-agent-listen-port={agent}", "--num-cpus=2", "--disable-usage-stats"],  # its own agent port: other Rays here hold the default
        stdout=open(tmp_path / "ray-head.log", "wb"), stderr=subprocess.STDOUT, start_new_session=True,
    )
    url = f"http://127.0.0.1:{dashboard}"
    deadline = time.time() + 120
    while time.time() < deadline:
        try:
            if httpx.get(f"{url}/api/version", timeout=2).status_code in (200, 401):  # 401: up, with Ray's token auth on
                break
        except httpx.HTTPError:
            pass
        time.sleep(1)
    else:
        head.terminate()
        raise RuntimeError(f"the Ray head did not come up: {(tmp_path / 'ray-head.log').read_text()[-2000:]}")
    yield url
    os.killpg(head.pid, signal.SIGTERM)  # --block: the head stops every process it started
    head.wait(timeout=60)


RAY_JOB = """
import json, sys
from ray.job_submission import JobSubmissionClient
client = JobSubmissionClient(sys.argv[1])
print(json.dumps({"status": str(client.get_job_status(sys.argv[2]).value), "logs": client.get_job_logs(sys.argv[2])}))
"""


def _ray_job(url: str, job_id: str) -> dict:
    """A Ray Job's status and logs, asked from a fresh process: Ray reads RAY_AUTH_MODE once per process, so a
    client in this one would keep whatever an earlier test's Ray left (the test must not depend on test order)."""
    env = {**os.environ, "RAY_AUTH_MODE": "token"}
    out = subprocess.run([sys.executable, "-c", RAY_JOB, url, job_id], env=env, capture_output=True, text=True, timeout=120, check=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


def test_a_job_runs_as_a_ray_job_on_the_configured_cluster(ray_head, tmp_path, monkeypatch):
    write_corpus(tmp_path / "corpus", 300)
    monkeypatch.setenv("THRESHER_RAY_ADDRESS", ray_head)
    s = Server(tmp_path).start()
    try:
        assert httpx.get(f"{s.url}/readyz").json()["checks"]["ray"] is True
        job_id = s.http.post("/v1/jobs", json=spec(tmp_path, "out", tmp_path / "corpus")).json()["id"]
        job = s.wait(job_id)
        assert job["state"] == "succeeded" and job["driver"] == f"ray:{job_id}", job
        deadline = time.time() + 60  # the driver writes its result, then exits
        while (ray_job := _ray_job(ray_head, job_id))["status"] == "RUNNING" and time.time() < deadline:
            time.sleep(0.5)
        assert ray_job["status"] == "SUCCEEDED"  # submission id = job id: at most once
        assert sorted(places(tmp_path / "out")) == sorted(pq.read_table(tmp_path / "corpus").column("id").to_pylist())
        logs = s.http.get(f"/v1/jobs/{job_id}/logs").text
        assert "[write]" in logs and logs.strip().splitlines()[-1] in ray_job["logs"]  # logs come from Ray's Job API
    finally:
        s.stop()
