"""The cluster path: a two-node Ray cluster on loopback (`ray start`, with the dashboard), jobs through Ray's Job Submission API."""

from __future__ import annotations

import time
from collections import Counter

import httpx
import pyarrow.parquet as pq

from .helpers import places, write_corpus
from .test_service import Server, spec

# A Ray Job's status and logs, asked from a fresh process: Ray reads RAY_AUTH_MODE once per process.
RAY_JOB = """
import json, sys
from ray.job_submission import JobSubmissionClient
client = JobSubmissionClient(sys.argv[1])
print(json.dumps({"status": str(client.get_job_status(sys.argv[2]).value), "logs": client.get_job_logs(sys.argv[2])}))
"""


def test_a_job_runs_as_a_ray_job_on_the_configured_cluster(ray_cluster, tmp_path, monkeypatch):
    write_corpus(tmp_path / "corpus", 300)
    monkeypatch.setenv("RAY_AUTH_MODE", "token")  # Ray's token auth (the token in ~/.ray/auth_token), for the service's Ray client
    monkeypatch.setenv("THRESHER_RAY_ADDRESS", ray_cluster.dashboard)
    before = Counter(ray_cluster.task_nodes())
    s = Server(tmp_path).start()
    try:
        assert httpx.get(f"{s.url}/readyz").json()["checks"]["ray"] is True
        job_id = s.http.post("/v1/jobs", json=spec(tmp_path, "out", tmp_path / "corpus")).json()["id"]
        job = s.wait(job_id)
        assert job["state"] == "succeeded" and job["driver"] == f"ray:{job_id}", job
        deadline = time.time() + 60  # the driver writes its result, then exits
        while (ray_job := ray_cluster.python(RAY_JOB, ray_cluster.dashboard, job_id))["status"] == "RUNNING" and time.time() < deadline:
            time.sleep(0.5)
        assert ray_job["status"] == "SUCCEEDED"  # submission id = job id: at most once
        ran = Counter(ray_cluster.task_nodes()) - before
        assert len(ran) == 2, ran  # the job's tasks ran on both nodes
        assert sorted(places(tmp_path / "out")) == sorted(pq.read_table(tmp_path / "corpus").column("id").to_pylist())
        logs = s.http.get(f"/v1/jobs/{job_id}/logs").text
        assert "[write]" in logs and logs.strip().splitlines()[-1] in ray_job["logs"]  # logs come from Ray's Job API
    finally:
        s.stop()
