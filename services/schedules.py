"""Schedules: a job spec fired on a cron expression in a time zone (nightly reselection).

Only the scheduler-lease holder fires (`Schedules.fire_due`, called on each
of its ticks). A firing submits through `JobService.submit` with the
idempotency key `schedule:<schedule id>:<fire time, UTC>`, and then moves
the schedule's `next_fire` with a compare-and-set; a service that dies
between the two, or two services that both fire, submit the same key and
get the same job. So each fire time makes at most one job, across restarts
and replicas.

Policies, stated:
- **Missed firings** (the service was down over one or more fire times):
  `catch_up: latest` (the default) submits one job, for the latest missed
  time, as soon as a service runs; `catch_up: skip` drops a firing noticed
  more than `MISFIRE_GRACE_S` after its time. Either way the schedule then
  waits for the next time after now: missed nights never pile up.
- **Overlap**: a firing while the schedule's previous job is still queued or
  running is skipped (and said so in `last_note`); the next firing tries again.
- **Pause / resume**: a paused schedule has no next time; resuming waits for
  the next fire time after the resume (a paused night is not caught up).
- **Refit** (`refit`, optional; the template must publish versions and leave
  `fit` to the schedule): a firing freezes the fitted states of the output's
  latest version (`fit.from_run`), so old documents keep their scores, and
  fits anew instead for the first version, every `every_runs` jobs, or when
  the latest version's drift (`drift.far_share` in its manifest: the share of
  documents farther from their centroid than 95% of the fitting sample was)
  is over `drift_above`. The note of each firing says which and why.

Times are computed by cronsim (5-field cron, DST-aware in the schedule's zone).
"""

from __future__ import annotations

import json
import re
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Literal
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from cronsim import CronSim, CronSimError
from pydantic import BaseModel, ConfigDict, Field, field_validator

from thresher.pipeline import versions
from thresher.pipeline.confine import Roots
from thresher.pipeline.errors import InputError

from .jobs import JobService, Refused
from .states import JobState
from .store import JobStore, ScheduleRecord, StoreError

MISFIRE_GRACE_S = 60.0  # catch_up: skip drops a firing noticed later than this after its time
NEXT_RUNS = 3  # fire times the API and the status page show ahead
NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,63}")


class _Timing(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True)

    @field_validator("cron", check_fields=False)
    @classmethod
    def _cron(cls, v: str | None) -> str | None:
        if v is not None:
            fire_times(v, "UTC", time.time())
        return v

    @field_validator("timezone", check_fields=False)
    @classmethod
    def _zone(cls, v: str | None) -> str | None:
        if v is not None:
            zone(v)
        return v


class RefitPolicy(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True)

    every_runs: int | None = Field(None, ge=1, description="Fit anew every this many jobs (1 = always); none = only on drift.")
    drift_above: float | None = Field(None, gt=0, le=1, description="Fit anew when the latest version's drift.far_share is over this (0.05 when nothing drifted).")


class ScheduleBody(_Timing):
    """What `POST /v1/schedules` takes."""

    name: str = Field(pattern=NAME.pattern, description="Unique; names the schedule in the URL and on the command line.")
    cron: str = Field(description="Five-field cron expression (minute hour day-of-month month day-of-week), e.g. `0 2 * * *`.")
    timezone: str = Field("UTC", description="IANA zone the cron expression is read in, e.g. `Europe/Berlin` (DST handled).")
    spec: dict[str, Any] = Field(description="The job spec each firing submits, checked as a submitted one is.")
    paused: bool = False
    catch_up: Literal["latest", "skip"] = Field("latest", description="Firings missed while no service ran: one job for the latest (latest), or none (skip).")
    refit: RefitPolicy | None = Field(None, description="Freeze the latest version's fitted states and fit anew only by this policy; none = every job as the template says.")


class SchedulePatch(_Timing):
    """What `PATCH /v1/schedules/{name}` takes: any of the fields to change."""

    cron: str | None = None
    timezone: str | None = None
    spec: dict[str, Any] | None = None
    paused: bool | None = None
    catch_up: Literal["latest", "skip"] | None = None
    refit: RefitPolicy | None = None


def zone(name: str) -> ZoneInfo:
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError):
        raise ValueError(f"unknown time zone {name!r} (an IANA name such as UTC or Europe/Berlin)") from None


def fire_times(cron: str, tz: str, after: float, reverse: bool = False) -> CronSim:
    """Fire times strictly after (or with `reverse`, strictly before) unix time `after`, as aware datetimes."""
    if len(cron.split()) != 5:
        raise ValueError(f"cron {cron!r}: five fields (minute hour day-of-month month day-of-week)")
    try:
        return CronSim(cron, datetime.fromtimestamp(after, zone(tz)), reverse=reverse)
    except CronSimError as e:
        raise ValueError(f"cron {cron!r}: {e}") from None


def next_fire(cron: str, tz: str, after: float) -> float:
    return next(fire_times(cron, tz, after)).timestamp()


def latest_due(cron: str, tz: str, now: float) -> float:
    """The last fire time at or before `now`."""
    return next(fire_times(cron, tz, int(now) + 1, reverse=True)).timestamp()


def utc(t: float | None) -> str | None:
    return None if t is None else datetime.fromtimestamp(t, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


@dataclass
class Schedules:
    store: JobStore
    jobs: JobService
    clock: Callable[[], float] = time.time

    def _check(self, body: dict[str, Any]) -> None:
        """The template is refused as a submitted spec would be (422 naming the field, 403 for a path outside the roots)."""
        spec = self.jobs.check(body["spec"])
        if body.get("refit") and (spec.output.versions is None or spec.fit is not None):
            raise Refused(422, "refit: the schedule sets fit.from_run itself; the template must have output.versions and no fit")

    def create(self, body: ScheduleBody) -> ScheduleRecord:
        stored = body.model_dump(mode="json", exclude={"name", "paused"})
        self._check(stored)
        nxt = None if body.paused else next_fire(body.cron, body.timezone, self.clock())
        try:
            return self.store.add_schedule(body.name, stored, body.paused, nxt)
        except StoreError as e:
            raise Refused(409, str(e)) from None

    def get(self, name: str) -> ScheduleRecord:
        s = self.store.schedule(name)
        if s is None:
            raise Refused(404, f"no schedule {name!r}")
        return s

    def change(self, name: str, patch: SchedulePatch) -> ScheduleRecord:
        s = self.get(name)
        given = patch.model_dump(mode="json", exclude_unset=True, exclude={"paused"})
        body = {**s.body, **{k: v for k, v in given.items() if v is not None or k == "refit"}}
        if "spec" in given or "refit" in given:
            self._check(body)
        paused = s.paused if patch.paused is None else patch.paused
        timing_changed = s.paused != paused or any(k in given for k in ("cron", "timezone"))
        nxt = None if paused else next_fire(body["cron"], body["timezone"], self.clock()) if timing_changed else s.next_fire
        try:
            return self.store.change_schedule(name, body, paused, nxt)
        except KeyError:
            raise Refused(404, f"no schedule {name!r}") from None

    def delete(self, name: str) -> None:
        """The schedule goes; the jobs it submitted stay."""
        if not self.store.delete_schedule(name):
            raise Refused(404, f"no schedule {name!r}")

    def view(self, s: ScheduleRecord) -> dict[str, Any]:
        body = s.body
        ahead = [] if s.paused or s.next_fire is None else [s.next_fire]
        if ahead:
            times = fire_times(body["cron"], body["timezone"], s.next_fire)
            ahead += [next(times).timestamp() for _ in range(NEXT_RUNS - 1)]
        return {
            "name": s.name, "id": s.id, "cron": body["cron"], "timezone": body["timezone"], "catch_up": body["catch_up"], "refit": body.get("refit"), "paused": s.paused,
            "next_runs": [utc(t) for t in ahead], "next_fire": s.next_fire,
            "last_fire": utc(s.last_fire), "last_job_id": s.last_job_id, "last_note": s.last_note, "runs": s.runs,
            "created_at": s.created_at, "spec": body["spec"],
        }

    def fire_due(self) -> None:
        """Act on every schedule whose time has come (the lease holder's tick)."""
        now = self.clock()
        for s in self.store.due_schedules(now):
            self._fire(s, now)

    def _fire(self, s: ScheduleRecord, now: float) -> None:
        body, due = s.body, s.next_fire
        assert due is not None
        latest = latest_due(body["cron"], body["timezone"], now)
        missed = f"missed {utc(due)}..{utc(latest)} while no service ran; " if latest > due else ""
        after = next_fire(body["cron"], body["timezone"], now)
        job_id = None
        if body["catch_up"] == "skip" and now - latest > MISFIRE_GRACE_S:
            note = f"{missed or f'missed {utc(latest)}; '}skipped (catch_up: skip)"
        elif (previous := s.last_job_id and self.store.get(s.last_job_id)) and not JobState(previous.state).is_terminal:
            note = f"skipped {utc(latest)}: job {previous.id} is still {previous.state}"
        else:
            spec, refit, why = self._fit(s)
            try:
                job, created = self.jobs.submit(spec, idempotency_key=f"schedule:{s.id}:{utc(latest)}")
                job_id, note = job.id, f"{missed}{'submitted' if created else 'had already submitted'} job {job.id} for {utc(latest)}{why}"
            except Refused as e:  # e.g. the roots changed since the schedule was made: said, and tried again next time
                note = f"{missed}firing at {utc(latest)} refused ({e.status}): {e.detail}"
        self.store.schedule_fired(s.id, due, latest, after, job_id, note, refit=job_id is not None and refit)

    def _fit(self, s: ScheduleRecord) -> tuple[dict[str, Any], bool, str]:
        """The spec this firing submits, whether it fits anew, and why (for the note), by the refit policy."""
        spec, policy = s.body["spec"], s.body.get("refit")
        if not policy:
            return spec, False, ""
        out = Path(spec["output"]["path"])
        if versions.current(out) is None:
            return spec, True, "; fitting anew: no version yet"
        if policy["every_runs"] and s.since_refit + 1 >= policy["every_runs"]:
            return spec, True, f"; fitting anew: every {policy['every_runs']} runs"
        drift = latest_drift(out, self.jobs.settings.roots())
        if policy["drift_above"] is not None and drift is not None and drift > policy["drift_above"]:
            return spec, True, f"; fitting anew: drift {drift:.3f} > {policy['drift_above']:g}"
        shown = "" if drift is None else f", drift {drift:.3f}"
        return {**spec, "fit": {"from_run": str(out)}}, False, f"; states frozen from {out / versions.LATEST}{shown}"


def latest_drift(out: Path, roots: list[Path]) -> float | None:
    """drift.far_share of the latest version's manifest (read only inside the allowed roots), or None."""
    try:
        manifest = Roots.of(roots).check("output.path", out / versions.VERSIONS / str(versions.current(out)) / "manifest.json")
        return json.loads(Path(manifest).read_text()).get("drift", {}).get("far_share")
    except (OSError, ValueError, InputError):
        return None

