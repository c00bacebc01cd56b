"""`thresher submit / status / cancel / logs / schedules`: the service's API over httpx.

URL and token from flags or THRESHER_URL / THRESHER_TOKEN. Errors are one
line: the service's `detail`, or why it could not be reached.
"""

from __future__ import annotations

import json
import os
import sys
import time
from pathlib import Path

import httpx
import yaml

from thresher.pipeline.errors import InputError, JobError

from .states import JobState



class Client:
    def __init__(self, url: str | None = None, token: str | None = None, timeout: float = 30.0):
        self.url = (url or os.environ.get("THRESHER_URL") or "http://127.0.0.1:8000").rstrip("/")
        token = token or os.environ.get("THRESHER_TOKEN")
        if not token:
            raise InputError("no token: pass --token or set THRESHER_TOKEN (thresher serve prints one on first start)")
        self.http = httpx.Client(base_url=self.url, headers={"Authorization": f"Bearer {token}"}, timeout=timeout)

    def _call(self, method: str, path: str, **kw) -> httpx.Response:
        try:
            r = self.http.request(method, path, **kw)
        except httpx.HTTPError as e:
            raise JobError(f"cannot reach the service at {self.url}: {e}") from None
        if r.status_code >= 400:
            try:
                detail = r.json().get("detail", r.text)
            except ValueError:
                detail = r.text
            raise JobError(f"{r.status_code}: {detail}")
        return r

    def submit(self, spec_path: str, idempotency_key: str | None = None) -> dict:
        spec = _spec_file(spec_path)
        headers = {"Idempotency-Key": idempotency_key} if idempotency_key else {}
        return self._call("POST", "/v1/jobs", json=spec, headers=headers).json()

    def job(self, job_id: str) -> dict:
        return self._call("GET", f"/v1/jobs/{job_id}").json()

    def jobs(self, state: str | None = None) -> list[dict]:
        return self._call("GET", "/v1/jobs", params={"state": state} if state else {}).json()["jobs"]

    def cancel(self, job_id: str) -> dict:
        return self._call("POST", f"/v1/jobs/{job_id}/cancel").json()

    def schedules(self) -> list[dict]:
        return self._call("GET", "/v1/schedules").json()["schedules"]

    def add_schedule(self, name: str, cron: str, timezone: str, spec_path: str, catch_up: str, paused: bool) -> dict:
        body = {"name": name, "cron": cron, "timezone": timezone, "spec": _spec_file(spec_path), "catch_up": catch_up, "paused": paused}
        return self._call("POST", "/v1/schedules", json=body).json()

    def pause_schedule(self, name: str, paused: bool) -> dict:
        return self._call("PATCH", f"/v1/schedules/{name}", json={"paused": paused}).json()

    def delete_schedule(self, name: str) -> None:
        self._call("DELETE", f"/v1/schedules/{name}")

    def wait(self, job_id: str, poll_s: float = 1.0) -> dict:
        while True:
            job = self.job(job_id)
            if JobState(job["state"]).is_terminal:
                return job
            time.sleep(poll_s)

    def logs(self, job_id: str, follow: bool, out=sys.stdout) -> None:
        if not follow:
            out.write(self._call("GET", f"/v1/jobs/{job_id}/logs").text)
            return
        try:
            with self.http.stream("GET", f"/v1/jobs/{job_id}/logs", params={"follow": True}, timeout=None) as r:
                if r.status_code >= 400:
                    r.read()
                    raise JobError(f"{r.status_code}: {r.json().get('detail', r.text)}")
                for chunk in r.iter_text():
                    out.write(chunk)
                    out.flush()
        except httpx.HTTPError as e:
            raise JobError(f"cannot reach the service at {self.url}: {e}") from None


def _spec_file(path: str) -> dict:
    try:
        return yaml.safe_load(Path(path).read_text())
    except FileNotFoundError:
        raise InputError(f"spec file not found: {path}") from None


def schedule_line(s: dict) -> str:
    """One schedule as one terminal line: name, cron and zone, next run (or paused), last job and what its last firing did."""
    nxt = "paused" if s["paused"] else f"next {s['next_runs'][0] if s['next_runs'] else '-'}"
    last = f"  last job {s['last_job_id']}" if s.get("last_job_id") else ""
    note = f"  ({s['last_note']})" if s.get("last_note") else ""
    return f"{s['name']}  {s['cron']} {s['timezone']}  {nxt}{last}{note}"


def line(job: dict) -> str:
    """One job as one terminal line: id, state, phase and its progress."""
    p = job.get("progress", {})
    phase = p.get("phase")
    done = p.get("phases", {}).get(phase, {}) if phase else {}
    rows = f" {done.get('rows_done', 0):,}/{done.get('rows_total') or '?'} rows" if phase else ""
    err = f"  {job['error']}" if job.get("error") and job["state"] != JobState.SUCCEEDED else ""
    return f"{job['id']}  {job['state']:<9}  {phase or '-'}{rows}{err}"


def dumps(obj: dict) -> str:
    return json.dumps(obj, indent=2)
