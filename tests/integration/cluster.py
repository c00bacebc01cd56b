"""A real Ray cluster on loopback for the tests: `ray start --head` plus worker nodes (`ray start --address`), each
with its own temp directory and ports, Ray's token authentication on (as a `ray start` cluster has it)."""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

import httpx

RAY = str(Path(sys.executable).with_name("ray"))
ENV = {**os.environ, "RAY_AUTH_MODE": "token"}  # the token in ~/.ray/auth_token, for the nodes and every client


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@dataclass
class Cluster:
    gcs: str  # host:port, what `ray.address` and `ray start --address` take
    dashboard: str  # http://host:port, the Job Submission and state APIs
    processes: list[subprocess.Popen] = field(default_factory=list)
    temp_dirs: list[str] = field(default_factory=list)

    def stop(self) -> None:
        for p in reversed(self.processes):  # --block: each `ray start` stops what it started
            os.killpg(p.pid, signal.SIGTERM)
        for p in self.processes:
            p.wait(timeout=60)
        for d in self.temp_dirs:
            shutil.rmtree(d, ignore_errors=True)

    def python(self, code: str, *args: str) -> dict:
        """Run code in a fresh process (Ray reads RAY_AUTH_MODE once per process) and return the JSON of its last line."""
        out = subprocess.run([sys.executable, "-c", code, *args], env=ENV, capture_output=True, text=True, timeout=180, check=True)
        return json.loads(out.stdout.strip().splitlines()[-1])

    def task_nodes(self) -> dict[str, int]:
        """Node id -> data tasks run there (Ray Data's read and map tasks, thresher's among them, the embedding actors'
        calls, and thresher's plain tasks: the shuffles' rounds, the dedup signatures and the scoring)."""
        return self.python(TASK_NODES, self.dashboard)


TASK_NODES = """
import collections, json, sys
from ray.util.state import list_tasks
tasks = list_tasks(address=sys.argv[1], limit=10_000, raise_on_missing_output=False)
work = [t for t in tasks if t.node_id and t.name.startswith(("Map(", "MapBatches(", "MapWorker(", "Read", "_task", "_in_one_task", "signature_piece", "score_spans"))]
print(json.dumps(collections.Counter(t.node_id for t in work)))
"""

ALIVE = """
import json, sys, ray
ray.init(address=sys.argv[1], log_to_driver=False)
print(json.dumps({"alive": sum(1 for n in ray.nodes() if n["Alive"])}))
"""


def start(tmp: Path, workers: int = 1, cpus: int = 2) -> Cluster:
    """A head and `workers` worker nodes, `cpus` CPUs each; returns once every node is alive."""
    port, dashboard = free_port(), free_port()
    cluster = Cluster(f"127.0.0.1:{port}", f"http://127.0.0.1:{dashboard}")
    common = ["--block", "--node-ip-address=127.0.0.1", f"--num-cpus={cpus}", "--disable-usage-stats"]
    nodes = [["--head", f"--port={port}", "--include-dashboard=true", "--dashboard-host=127.0.0.1", f"--dashboard-port={dashboard}"]]
    nodes += [[f"--address={cluster.gcs}"] for _ in range(workers)]
    try:
        for i, args in enumerate(nodes):
            log = open(tmp / f"ray-node-{i}.log", "wb")
            # its own temp dir and agent port: nodes on one host (and any other Ray here) must not share them
            # (a short temp dir: Ray's socket paths under it must fit AF_UNIX's 107 bytes)
            temp = tempfile.mkdtemp(prefix=f"ray{i}-", dir="/tmp")
            cluster.temp_dirs.append(temp)
            cmd = [RAY, "start", *args, *common, f"--temp-dir={temp}", f"--dashboard-agent-listen-port={free_port()}"]
            cluster.processes.append(subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, start_new_session=True, env=ENV))
            if i == 0:
                _wait(lambda: httpx.get(f"{cluster.dashboard}/api/version", timeout=2).status_code in (200, 401), tmp)  # 401: up, token auth on
        _wait(lambda: cluster.python(ALIVE, cluster.gcs)["alive"] == len(nodes), tmp)
    except BaseException:
        cluster.stop()
        raise
    return cluster


def _wait(ready, tmp: Path, within: float = 120) -> None:
    deadline = time.time() + within
    while time.time() < deadline:
        try:
            if ready():
                return
        except (httpx.HTTPError, subprocess.SubprocessError, ValueError):
            pass
        time.sleep(1)
    logs = "".join(f.read_text(errors="replace")[-1500:] for f in sorted(tmp.glob("ray-node-*.log")))
    raise RuntimeError(f"the Ray cluster did not come up: {logs}")
