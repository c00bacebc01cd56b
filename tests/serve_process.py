"""`thresher serve` as a subprocess on a free loopback port: what the service tests and bench/bench_service.py run against.

Restartable on the same data directory. `stop()` leaves running drivers
alone (a restarted service must find them, as in production); `reap()`
kills what is left of every job's driver session, so a failed test never
leaves a job burning the machine's cores.
"""

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
import psutil

TERMINAL = ("succeeded", "failed", "cancelled")


class ServeProcess:
    def __init__(self, root: Path, tokens: dict[str, str], env: dict[str, str] | None = None, admin_token: str | None = None, data: Path | None = None,
                 launcher: list[str] | None = None):
        """`launcher`: what to run instead of `thresher serve` (taking the same --port and --data-dir), e.g. serve_clocked.py."""
        self.root, self.data = root, data or root / "data"
        self.launcher = launcher or [sys.executable, "-m", "thresher.cli", "serve"]
        self.tokens, self.extra_env = tokens, env or {}
        self.admin_token = admin_token or next(t for t, kind in tokens.items() if kind == "admin")
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            self.port = s.getsockname()[1]
        self.url = f"http://127.0.0.1:{self.port}"
        self.log_path = root / f"serve-{self.port}.log"
        self.proc: subprocess.Popen | None = None
        self._drivers: set[str] = set()  # "pid:PID:START" of the jobs seen running

    def start(self, timeout: float = 120) -> "ServeProcess":
        env = {
            **os.environ,
            "THRESHER_ALLOWED_ROOTS": json.dumps([str(self.root)]),
            "THRESHER_TOKENS": json.dumps(self.tokens),
            "THRESHER_POLL_S": "0.2",
            **self.extra_env,
        }
        self.log = open(self.log_path, "ab")
        self.proc = subprocess.Popen(
            [*self.launcher, "--port", str(self.port), "--data-dir", str(self.data)],
            cwd=self.root, env=env, stdout=self.log, stderr=subprocess.STDOUT,
        )
        deadline = time.time() + timeout
        while time.time() < deadline and self.proc.poll() is None:
            try:
                if httpx.get(f"{self.url}/healthz", timeout=1).status_code == 200:
                    break
            except httpx.HTTPError:
                time.sleep(0.2)
        else:
            self.proc.kill()  # never leave a half-started server behind
            self.proc.wait()
            self.log.close()
            raise RuntimeError(f"the service did not start: {self.log_path.read_text()[-2000:]}")
        self.http = httpx.Client(base_url=self.url, headers={"Authorization": f"Bearer {self.admin_token}"}, timeout=60)
        return self

    def stop(self) -> None:
        """SIGTERM to the server (SIGKILL after 30 s); drivers keep running."""
        self._remember_drivers()
        self.http.close()
        self.proc.send_signal(signal.SIGTERM)
        try:
            self.proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        self.log.close()

    def reap(self) -> None:
        """SIGKILL to the session of every local driver seen running that is still alive (each driver leads its own session)."""
        for driver in self._drivers:
            _, pid, started = driver.split(":")
            try:
                if abs(psutil.Process(int(pid)).create_time() - float(started)) < 0.01:  # not a reused pid
                    os.killpg(int(pid), signal.SIGKILL)
            except (psutil.Error, ProcessLookupError, PermissionError):
                pass

    def _remember_drivers(self) -> None:
        try:
            jobs = self.http.get("/v1/jobs", params={"state": "running", "limit": 500}).json()["jobs"]
        except (httpx.HTTPError, KeyError, ValueError):
            return
        self._drivers |= {j["driver"] for j in jobs if (j.get("driver") or "").startswith("pid:")}

    def job(self, job_id: str) -> dict:
        r = self.http.get(f"/v1/jobs/{job_id}")
        assert r.status_code == 200, r.text
        return r.json()

    def wait(self, job_id: str, until=lambda j: j["state"] in TERMINAL, timeout: float = 300) -> dict:
        """Poll the job until `until(job)`; a job that ends first (when waiting for something else) is an error at once."""
        deadline = time.time() + timeout
        job = self.job(job_id)
        while time.time() < deadline:
            job = self.job(job_id)
            if until(job):
                self._remember_drivers()
                return job
            if job["state"] in TERMINAL:
                raise AssertionError(f"job {job_id} ended before it got there: {json.dumps(job)[:1500]}")
            time.sleep(0.2)
        raise AssertionError(f"job {job_id} never got there in {timeout:.0f} s: {json.dumps(job)[:1500]}")
