"""Schedules on real uvicorn servers over loopback sharing one SQLite store, with a clock the test moves
(tests/serve_clocked.py) and a stand-in driver, so minutes pass in a second and what is tested is the firing."""

from __future__ import annotations

import re
import sys
import time
from datetime import UTC, datetime
from pathlib import Path

import pytest

from ..serve_process import ServeProcess
from .test_service import ADMIN_TOKEN, READ_TOKEN, spec

# A driver that holds while ROOT/hold exists (ROOT/data/jobs/ID is its job directory), then reports success (as the real driver does, in result.json).
DRIVER = """
import json, pathlib, sys, time
d = pathlib.Path(sys.argv[-1])
while (d.parents[2] / "hold").exists():
    time.sleep(0.05)
tmp = d / "result.json.tmp"
tmp.write_text(json.dumps({"state": "succeeded", "error": None, "unix": time.time()}))
tmp.replace(d / "result.json")
"""
T0 = datetime(2026, 12, 3, 10, 0, 30, tzinfo=UTC).timestamp()
CLOCKED = Path(__file__).parents[1] / "serve_clocked.py"


def at(minute: int, second: int = 5) -> float:
    return datetime(2026, 12, 3, 10, 0, tzinfo=UTC).timestamp() + 60 * minute + second


def iso(minute: int) -> str:
    return datetime.fromtimestamp(at(minute, 0), UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


class Rig:
    def __init__(self, root: Path):
        self.root, self.clock = root, root / "clock"
        (root / "driver.py").write_text(DRIVER)
        (root / "corpus").write_bytes(b"")  # named by the template; the stand-in driver never reads it
        self.set(T0)

    def set(self, t: float) -> None:
        tmp = self.clock.with_suffix(".tmp")
        tmp.write_text(repr(t))
        tmp.replace(self.clock)

    def server(self) -> ServeProcess:
        launcher = [sys.executable, str(CLOCKED), "--clock-file", str(self.clock), "--driver-script", str(self.root / "driver.py")]
        return ServeProcess(self.root, {ADMIN_TOKEN: "admin", READ_TOKEN: "read"}, launcher=launcher).start()


def jobs_by_key(s: ServeProcess) -> dict[str, list[str]]:
    """Every job in the store, by the idempotency key its firing gave it."""
    found: dict[str, list[str]] = {}
    for j in s.http.get("/v1/jobs", params={"limit": 500}).json()["jobs"]:
        found.setdefault(j["idempotency_key"], []).append(j["id"])
    return found


def until(check, timeout: float = 30.0):
    deadline = time.time() + timeout
    while time.time() < deadline:
        if value := check():
            return value
        time.sleep(0.1)
    raise AssertionError("never happened")


def schedule(s: ServeProcess, name: str) -> dict:
    r = s.http.get(f"/v1/schedules/{name}")
    assert r.status_code == 200, r.text
    return r.json()


def fired(s: ServeProcess, name: str, minute: int) -> dict:
    """Wait until the schedule has acted on the fire time at `minute`, whatever it did."""
    return until(lambda: (v := schedule(s, name))["last_fire"] == iso(minute) and v)


def keys(schedule_id: str, minutes) -> set[str]:
    return {f"schedule:{schedule_id}:{iso(m)}" for m in minutes}


@pytest.fixture
def rig(tmp_path):
    r = Rig(tmp_path)
    yield r
    (tmp_path / "hold").unlink(missing_ok=True)


def test_a_per_minute_schedule_fires_once_a_minute_across_restarts_and_two_services(rig):
    a, b = rig.server(), rig.server()  # one data directory, one store: one of them holds the lease
    try:
        body = {"name": "every-minute", "cron": "* * * * *", "spec": spec(rig.root, "out", rig.root / "corpus")}
        made = a.http.post("/v1/schedules", json=body)
        assert made.status_code == 201, made.text
        sid = made.json()["id"]
        assert made.json()["next_runs"] == [iso(1), iso(2), iso(3)]
        for minute in range(1, 7):
            rig.set(at(minute))
            if minute == 3:  # the service holding the lease stops; the other takes over
                a.stop()
            if minute == 4:
                a = rig.server()  # and comes back
            if minute == 5:
                b.stop()
            live = b if minute == 3 else a
            assert fired(live, "every-minute", minute)["last_note"].startswith("submitted job")
            until(lambda: all(live.job(j)["state"] == "succeeded" for ids in jobs_by_key(live).values() for j in ids))
        rig.set(at(6, 50))  # ticks in the rest of the minute fire nothing more
        time.sleep(1.5)
        found = jobs_by_key(a)
        assert set(found) == keys(sid, range(1, 7)) and all(len(ids) == 1 for ids in found.values()), found
        view = schedule(a, "every-minute")
        assert view["runs"] == 6 and view["next_runs"][0] == iso(7)
    finally:
        for s in (a, b):
            if s.proc.poll() is None:
                s.stop()


def test_missed_firings_pause_and_a_firing_while_the_last_job_runs(rig):
    s = rig.server()
    try:
        template = spec(rig.root, "out", rig.root / "corpus")
        latest = s.http.post("/v1/schedules", json={"name": "latest", "cron": "* * * * *", "spec": template}).json()
        skip = s.http.post("/v1/schedules", json={"name": "skip", "cron": "*/5 * * * *", "spec": template, "catch_up": "skip"}).json()
        rig.set(at(1))
        fired(s, "latest", 1)
        s.stop()

        # Down from 10:01 to 10:11:30: `latest` catches up once, for 10:11; `skip` drops 10:05 and 10:10 (90 s late).
        rig.set(at(11, 30))
        s = rig.server()
        v = fired(s, "latest", 11)
        assert v["last_note"].startswith(f"missed {iso(2)}..{iso(11)} while no service ran; submitted job"), v
        v = fired(s, "skip", 10)
        assert v["last_job_id"] is None and "skipped (catch_up: skip)" in v["last_note"] and v["next_runs"][0] == iso(15), v
        assert set(jobs_by_key(s)) == keys(latest["id"], [1, 11])
        s.wait(schedule(s, "latest")["last_job_id"])

        # Paused, nothing fires and there is no next run; resumed, it waits for the next fire time after now.
        paused = s.http.patch("/v1/schedules/latest", json={"paused": True}).json()
        assert paused["paused"] and paused["next_runs"] == []
        rig.set(at(13))
        time.sleep(1.5)
        assert set(jobs_by_key(s)) == keys(latest["id"], [1, 11]) | keys(skip["id"], [])
        resumed = s.http.patch("/v1/schedules/latest", json={"paused": False}).json()
        assert not resumed["paused"] and resumed["next_runs"][0] == iso(14)

        # A firing while the previous job still runs is skipped, and said so; the next one after it ends submits.
        (rig.root / "hold").touch()
        rig.set(at(14))
        running = fired(s, "latest", 14)["last_job_id"]
        s.wait(running, until=lambda j: j["state"] == "running", timeout=30)
        rig.set(at(15))
        v = fired(s, "latest", 15)
        assert v["last_note"] == f"skipped {iso(15)}: job {running} is still running" and v["last_job_id"] == running
        assert "submitted job" in fired(s, "skip", 15)["last_note"]  # the other schedule's own job is not in the way
        (rig.root / "hold").unlink()
        s.wait(running)
        rig.set(at(16))
        assert fired(s, "latest", 16)["last_note"].startswith("submitted job")
        assert set(jobs_by_key(s)) == keys(latest["id"], [1, 11, 14, 16]) | keys(skip["id"], [15])
        listed = {x["name"]: x for x in s.http.get("/v1/schedules").json()["schedules"]}
        assert listed["latest"]["runs"] == 4 and listed["skip"]["runs"] == 1
        assert s.http.delete("/v1/schedules/skip").status_code == 204 and s.http.get("/v1/schedules/skip").status_code == 404
    finally:
        s.stop()


def test_the_status_page_lists_the_schedules_with_their_next_run(rig):
    from .helpers import chromium
    from .test_status_page import render

    browser = chromium()
    if browser is None:
        pytest.skip("chromium not installed (apt-get install chromium)")
    s = rig.server()
    try:
        template = spec(rig.root, "out", rig.root / "corpus")
        s.http.post("/v1/schedules", json={"name": "nightly", "cron": "0 2 * * *", "timezone": "Europe/Berlin", "spec": template})
        s.http.post("/v1/schedules", json={"name": "held", "cron": "* * * * *", "spec": template, "paused": True})
        dom = render(browser, f"{s.url}/#token={READ_TOKEN}", rig.root, "schedules")
        nightly = re.search(r'<tr class="schedule" data-schedule="nightly">(.*?)</tr>', dom, re.S)
        local = datetime.fromtimestamp(datetime(2026, 12, 4, 1, 0, tzinfo=UTC).timestamp()).strftime("%Y-%m-%d %H:%M:%S")  # 02:00 in Berlin
        assert nightly and "0 2 * * * (Europe/Berlin)" in nightly.group(1) and local in nightly.group(1), dom[-3000:]
        held = re.search(r'<tr class="schedule" data-schedule="held">(.*?)</tr>', dom, re.S)
        assert held and 'class="badge paused">paused<' in held.group(1)
    finally:
        s.stop()
