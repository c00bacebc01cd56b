"""The scheduler on a real SQLite store with real driver processes: a stand-in driver script (sleep, then
write result.json, as the real driver does) so the scheduling itself is what is tested, in seconds."""

from __future__ import annotations

import sys
import time
from pathlib import Path

import pytest

from thresher.services.execution import LocalDrivers, Scheduler, job_dir
from thresher.services.store import JobStore

DRIVER = """
import json, pathlib, subprocess, sys, time
d = pathlib.Path(sys.argv[-1])
(d / "started").open("a").write("x")
if (d / "linger").exists():  # a process of the job's session that outlives the driver, as a local Ray's may
    subprocess.Popen(["sleep", (d / "linger").read_text()])
time.sleep(float((d / "seconds").read_text()))
tmp = d / "result.json.tmp"
tmp.write_text(json.dumps({"state": "succeeded", "error": None, "unix": time.time()}))
tmp.replace(d / "result.json")
"""


@pytest.fixture
def store(tmp_path: Path):
    s = JobStore.sqlite(tmp_path / "jobs.db")
    yield s
    s.close()


def scheduler(store: JobStore, tmp_path: Path) -> Scheduler:
    drivers = LocalDrivers(command=[sys.executable, "-c", DRIVER])
    return Scheduler(store, drivers, tmp_path, max_concurrent=1, max_attempts=2, poll_s=0.05)


def submit(store: JobStore, tmp_path: Path, seconds: float) -> str:
    job, _ = store.submit({"n": seconds}, str(tmp_path / "out"), str(tmp_path / "work"))
    d = job_dir(tmp_path, job.id)
    d.mkdir(parents=True)
    (d / "seconds").write_text(str(seconds))
    return job.id


def until(check, timeout: float = 30.0):
    deadline = time.time() + timeout
    while time.time() < deadline:
        if value := check():
            return value
        time.sleep(0.05)
    raise AssertionError("never happened")


def test_of_two_schedulers_on_one_store_only_the_lease_holder_starts_jobs(store, tmp_path):
    a, b = scheduler(store, tmp_path), scheduler(store, tmp_path)
    ids = [submit(store, tmp_path, 0.3) for _ in range(3)]
    for _ in range(200):  # both tick, interleaved, until every job has run
        a.tick()
        b.tick()
        if all(store.get(i).state == "succeeded" for i in ids):
            break
        time.sleep(0.02)
    assert [store.get(i).state for i in ids] == ["succeeded"] * 3
    assert a.leader == b.leader == a.me != b.me
    for i in ids:  # each started once, by one driver
        assert store.get(i).attempt == 1 and (job_dir(tmp_path, i) / "started").read_text() == "x"


def test_a_stopped_holder_hands_over_and_the_next_settles_its_running_job(store, tmp_path):
    a, b = scheduler(store, tmp_path), scheduler(store, tmp_path)
    job_id = submit(store, tmp_path, 1.0)
    a.tick()
    assert store.get(job_id).state == "running"
    b.tick()
    assert b.leader == a.me
    a.shutdown()  # gives the lease up; its driver keeps running
    b.tick()
    assert b.leader == b.me
    until(lambda: b.tick() or store.get(job_id).state == "succeeded")
    assert store.get(job_id).attempt == 1  # not restarted: the driver outlived its scheduler


def test_a_cancel_through_a_service_that_does_not_schedule_stops_the_job(store, tmp_path):
    a, b = scheduler(store, tmp_path), scheduler(store, tmp_path)
    job_id = submit(store, tmp_path, 60.0)
    a.tick()
    b.tick()
    driver = store.get(job_id).driver
    assert a.drivers.alive(driver)
    b.cancel(store.get(job_id))  # b only leaves the request; a, holding the lease, stops the driver
    assert store.get(job_id).state == "running" and a.drivers.alive(driver)
    until(lambda: a.tick() or store.get(job_id).state == "cancelled", timeout=15)
    assert not a.drivers.alive(driver)
    assert "cancelled" in store.get(job_id).error


def test_a_job_frees_its_slot_only_when_every_process_it_started_is_gone(store, tmp_path):
    a = scheduler(store, tmp_path)
    a.stop_grace_s = 2.0
    first, second = submit(store, tmp_path, 0.2), submit(store, tmp_path, 0.2)
    (job_dir(tmp_path, first) / "linger").write_text("60")
    a.tick()
    driver = store.get(first).driver
    until(lambda: (job_dir(tmp_path, first) / "result.json").exists() and not a.drivers._process(driver))
    a.tick()
    lingering = a.drivers._session(driver)
    assert [p.name() for p in lingering] == ["sleep"]  # the driver is gone, its child is not
    assert store.get(first).state == "running" and store.get(second).state == "queued"  # so the slot stays taken
    until(lambda: a.tick() or store.get(first).state == "succeeded", timeout=15)  # killed after the grace period
    assert not any(p.is_running() and p.status() != "zombie" for p in lingering)
    until(lambda: a.tick() or store.get(second).state != "queued")
