"""Fire-time arithmetic (hand-computed, across DST) and the firing's exactly-once bookkeeping on a real SQLite store."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import pytest
from pydantic import ValidationError

from thresher.services.config import ServiceSettings
from thresher.services.execution import LocalDrivers, Scheduler
from thresher.services.jobs import JobService
from thresher.services.schedules import ScheduleBody, Schedules, latest_due, next_fire, utc
from thresher.services.store import JobStore


def t(*args: int) -> float:
    return datetime(*args, tzinfo=UTC).timestamp()


def test_fire_times_follow_the_zone_across_daylight_saving():
    # Berlin is UTC+1 in winter, UTC+2 from 2026-03-29 02:00 local (clocks jump to 03:00).
    assert next_fire("0 2 * * *", "Europe/Berlin", t(2026, 12, 3, 12)) == t(2026, 12, 4, 1)
    assert next_fire("30 3 * * *", "Europe/Berlin", t(2026, 3, 28, 12)) == t(2026, 3, 29, 1, 30)  # 03:30 CEST
    assert next_fire("30 3 * * *", "Europe/Berlin", t(2026, 3, 27, 12)) == t(2026, 3, 28, 2, 30)  # 03:30 CET
    assert next_fire("*/15 * * * *", "UTC", t(2026, 12, 3, 10, 15)) == t(2026, 12, 3, 10, 30)  # strictly after
    assert latest_due("*/15 * * * *", "UTC", t(2026, 12, 3, 10, 15)) == t(2026, 12, 3, 10, 15)  # at or before
    assert latest_due("*/15 * * * *", "UTC", t(2026, 12, 3, 10, 29, 59)) == t(2026, 12, 3, 10, 15)


@pytest.mark.parametrize(("cron", "zone", "says"), [
    ("0 2 * *", "UTC", "five fields"), ("0 0 30 2 *", "UTC", "Bad day-of-month"), ("*/0 * * * *", "UTC", "Bad minute"),
    ("0 2 * * * *", "UTC", "five fields"), ("0 2 * * *", "Mars/Olympus", "unknown time zone"),
])
def test_a_bad_cron_or_zone_is_refused_naming_it(cron, zone, says):
    with pytest.raises(ValidationError, match=says):
        ScheduleBody(name="n", cron=cron, timezone=zone, spec={})


class Clock:
    def __init__(self, now: float):
        self.now = now

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def schedules(tmp_path: Path):
    store = JobStore.sqlite(tmp_path / "jobs.db")
    settings = ServiceSettings(data_dir=tmp_path / "data", allowed_roots=[tmp_path])
    scheduler = Scheduler(store, LocalDrivers(), settings.data_dir, 1, 1, 1.0)  # never started: nothing runs
    (tmp_path / "corpus.parquet").write_bytes(b"")
    yield Schedules(store, JobService(settings, store, scheduler), Clock(t(2026, 12, 3, 10, 0, 30)))
    store.close()


def template(root: Path) -> dict:
    return {"input": {"paths": [str(root / "corpus.parquet")]}, "output": {"path": str(root / "out")}, "selection": {"budget": {"amount": 10}}}


def test_a_firing_repeated_after_a_crash_before_it_was_recorded_gives_the_same_job(schedules, tmp_path):
    s = schedules.create(ScheduleBody(name="n", cron="* * * * *", spec=template(tmp_path)))
    assert s.next_fire == t(2026, 12, 3, 10, 1)
    # A service submitted the 10:01 firing and died before recording it: the job is in the store, the schedule unmoved.
    crashed, _ = schedules.jobs.submit(s.body["spec"], idempotency_key=f"schedule:{s.id}:2026-12-03T10:01:00Z")
    schedules.clock.now = t(2026, 12, 3, 10, 1, 2)
    schedules.fire_due()
    again = schedules.get("n")
    assert again.last_job_id == crashed.id and again.last_note == f"had already submitted job {crashed.id} for {utc(t(2026, 12, 3, 10, 1))}"
    assert again.runs == 1 and again.next_fire == t(2026, 12, 3, 10, 2)
    jobs, _ = schedules.store.list()
    assert [j.id for j in jobs] == [crashed.id]


def test_a_recorded_firing_is_not_recorded_twice(schedules, tmp_path):
    """The compare-and-set on next_fire: a second service that read the same due schedule changes nothing."""
    s = schedules.create(ScheduleBody(name="n", cron="* * * * *", spec=template(tmp_path)))
    assert schedules.store.schedule_fired(s.id, s.next_fire, s.next_fire, s.next_fire + 60, "a" * 32, "first")
    assert not schedules.store.schedule_fired(s.id, s.next_fire, s.next_fire, s.next_fire + 60, "b" * 32, "second")
    assert schedules.get("n").last_note == "first" and schedules.get("n").runs == 1


def test_a_template_is_checked_as_a_submitted_spec(schedules, tmp_path):
    from thresher.services.jobs import Refused

    with pytest.raises(Refused) as outside:
        schedules.create(ScheduleBody(name="n", cron="0 2 * * *", spec={**template(tmp_path), "output": {"path": "/etc/thresher-out"}}))
    assert outside.value.status == 403 and "output.path" in outside.value.detail
    with pytest.raises(Refused) as bad:
        schedules.create(ScheduleBody(name="n", cron="0 2 * * *", spec={**template(tmp_path), "selection": {"budget": {"amount": "10"}}}))
    assert bad.value.status == 422 and "selection.budget.amount" in bad.value.detail
    assert schedules.store.schedules() == []


def _versioned(out: Path, far_share: float | None) -> None:
    """A versioned output whose latest version's manifest has this drift (what the pipeline publishes)."""
    import json
    import os

    v = out / "versions" / f"20261203T0{len(list((out / 'versions').glob('*'))) if (out / 'versions').exists() else 0}0000Z-abc123"
    v.mkdir(parents=True)
    (v / "manifest.json").write_text(json.dumps({"drift": {"far_share": far_share}} if far_share is not None else {}))
    tmp = out / ".latest-tmp"
    os.symlink(f"versions/{v.name}", tmp)
    os.replace(tmp, out / "latest")


def _finish(schedules: Schedules, job_id: str) -> None:
    from thresher.services.states import JobState

    schedules.store.transition(job_id, JobState.RUNNING)
    schedules.store.transition(job_id, JobState.SUCCEEDED)


def test_the_refit_policy_freezes_the_latest_version_and_fits_anew_on_drift_or_every_n_runs(schedules, tmp_path):
    from thresher.services.schedules import RefitPolicy

    spec = {**template(tmp_path), "output": {"path": str(tmp_path / "out"), "versions": {"keep": 3}}}
    schedules.create(ScheduleBody(name="n", cron="* * * * *", spec=spec, refit=RefitPolicy(every_runs=3, drift_above=0.2)))
    fired = []

    def fire(minute: int) -> tuple[dict, str]:
        schedules.clock.now = t(2026, 12, 3, 10, minute, 1)
        schedules.fire_due()
        s = schedules.get("n")
        job = schedules.store.get(s.last_job_id)
        _finish(schedules, job.id)
        fired.append(job.id)
        return job.spec, s.last_note

    first, note = fire(1)
    assert first.get("fit") is None and note.endswith("fitting anew: no version yet")
    _versioned(tmp_path / "out", 0.04)
    second, note = fire(2)
    assert second["fit"] == {"from_run": str(tmp_path / "out")} and "states frozen from" in note and "drift 0.040" in note
    _versioned(tmp_path / "out", 0.31)
    third, note = fire(3)
    assert third.get("fit") is None and note.endswith("fitting anew: drift 0.310 > 0.2")
    _versioned(tmp_path / "out", 0.05)
    assert fire(4)[0]["fit"] is not None and fire(5)[0]["fit"] is not None  # two frozen runs after the refit ...
    sixth, note = fire(6)
    assert sixth.get("fit") is None and note.endswith("fitting anew: every 3 runs")  # ... and the third fits anew
    assert len(set(fired)) == 6


def test_a_refit_policy_needs_a_versioned_template_without_fit(schedules, tmp_path):
    from thresher.services.jobs import Refused
    from thresher.services.schedules import RefitPolicy

    with pytest.raises(Refused, match="must have output.versions and no fit") as plain:
        schedules.create(ScheduleBody(name="n", cron="0 2 * * *", spec=template(tmp_path), refit=RefitPolicy(every_runs=7)))
    assert plain.value.status == 422
