"""The service layer: what a route may do with jobs, independent of HTTP.

Routes stay thin: they parse, call one of these, and map `Refused`'s status
to a response. Everything a job's page shows (state, current phase,
per-phase rows, rate and reuse, counts, the error) is assembled here from
the store and the job's WORK/status.json, which the pipeline rewrites on
every event.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

from pydantic import BaseModel

from thresher.pipeline.confine import Roots
from thresher.pipeline.errors import InputError, SpecError
from thresher.pipeline.spec import JobSpec, parse_spec

from .config import ServiceSettings
from .execution import Scheduler, job_dir, read_json
from .states import JobState
from .store import JobRecord, JobStore, StoreError


class Error(BaseModel):
    """Every error the API answers: one readable line, naming the field or path at fault."""

    detail: str


# The error bodies the /v1 routes answer with, for the OpenAPI document (FastAPI's default 422 schema is a list).
ERROR_RESPONSES = {status: {"model": Error, "description": what} for status, what in (
    (400, "A bad cursor."), (401, "No token, or an unknown one."), (403, "A read-only token, or a path outside the allowed roots."),
    (404, "No such job, or nothing published yet."), (409, "Not in a state that allows it."),
    (413, "The request body is over max_body_bytes."), (422, "A spec or parameter that cannot be used, naming the field."),
)}


class Refused(Exception):
    """A request the service turns down, with the HTTP status that says why."""

    def __init__(self, status: int, detail: str):
        super().__init__(detail)
        self.status, self.detail = status, detail


@dataclass
class JobService:
    settings: ServiceSettings
    store: JobStore
    scheduler: Scheduler

    def check(self, raw: object) -> JobSpec:
        """The spec, or `Refused`: 422 naming the field that cannot be used, 403 for a path outside the allowed roots."""
        try:
            spec = parse_spec(raw, source="job spec")
            search = getattr(spec.selection, "search", None)
            if search is not None and search.proxy.startswith("command:"):
                self.settings.proxy_command(search.proxy)
        except SpecError as e:
            raise Refused(422, str(e)) from None
        self._check_paths(spec)
        return spec

    def submit(self, raw: object, idempotency_key: str | None = None) -> tuple[JobRecord, bool]:
        spec = self.check(raw)
        dumped = spec.model_dump(mode="json")
        job, created = self.store.submit(dumped, spec.output.path, spec.output.work_path(), idempotency_key)
        if not created and job.spec != dumped:
            raise Refused(422, f"Idempotency-Key {idempotency_key!r} was used for job {job.id} with a different spec; use a new key for a new job")
        if created:
            d = job_dir(self.settings.data_dir, job.id)
            d.mkdir(parents=True, exist_ok=True)
            (d / "spec.json").write_text(json.dumps(job.spec, indent=1))
        return job, created

    def _check_paths(self, spec: JobSpec) -> None:
        """Every path a job names must lie under an allowed root (local paths or file:// URIs, symlinks followed).

        This refuses what is wrong at the door; the driver checks again on the
        files it opens (pipeline/confine.py), which is what confines a job.
        """
        named = [("input.paths", p) for p in spec.input.paths]
        named += [(f"{field}.paths", p) for field, ref in spec.side_corpora().items() for p in ref.paths]
        from_search = getattr(spec.selection, "from_search", None)
        named += [("selection.from_search", from_search)] if from_search else []
        named += [("fit.from_run", spec.fit.from_run)] if spec.fit else []
        named += [("embedder.model", spec.embedder.local_model())] if spec.embedder.local_model() else []
        roots = Roots.of(self.settings.roots())
        out, work = spec.output.path, spec.output.work_path()
        for field, path in [*named, ("output.path", out), ("output.work_dir", work)]:
            plain = path.removeprefix("file://") if path.startswith("file:///") and not field.startswith("output.") else path
            if "://" in plain or not Path(plain).is_absolute():
                what = "an absolute local path" if field.startswith("output.") else "an absolute local path or file:// URI"
                raise Refused(403, f"{field}: {path!r} must be {what} under the allowed roots ({roots.describe()})")
        try:
            for field, path in named:
                roots.check(field, path.removeprefix("file://"))
            roots.check_output(out, work, "output.work_dir" if spec.output.work_dir else "output.work_dir (default: OUTPUT.work)")
        except InputError as e:
            raise Refused(403, str(e)) from None

    def get(self, job_id: str) -> JobRecord:
        job = self.store.get(job_id)
        if job is None:
            raise Refused(404, f"no job {job_id}")
        return job

    def view(self, job: JobRecord) -> dict:
        """The job as the API shows it: the store's record plus live per-phase progress."""
        status = read_json(Path(job.work_dir) / "status.json") or {}
        out = job.to_dict(spec=False)
        out["progress"] = {"phase": status.get("phase") if job.state == JobState.RUNNING else None, "phases": status.get("phases", {}), "warnings": status.get("warnings", [])}
        out["links"] = {k: f"/v1/jobs/{job.id}/{k}" for k in ("manifest", "report", "logs")}
        return out

    def list(self, state: str | None, limit: int, cursor: str | None) -> tuple[list[JobRecord], str | None]:
        try:
            return self.store.list(state=state, limit=limit, cursor=cursor)
        except StoreError as e:
            raise Refused(400, str(e)) from None

    def cancel(self, job_id: str) -> JobRecord:
        job = self.get(job_id)
        if JobState(job.state).is_terminal:
            raise Refused(409, f"job {job_id} is already {job.state}")
        return self.scheduler.cancel(job)

    def output_file(self, job_id: str, name: str) -> Path:
        job = self.get(job_id)
        path = Path(job.published or job.output_path) / name  # a versioned output: this job's version, whatever is latest now
        if job.state != JobState.SUCCEEDED or not path.is_file():
            raise Refused(404, f"job {job_id} has no {name} (state {job.state}; only a succeeded job publishes its output)")
        return path

    def log_text(self, job_id: str) -> str:
        """The job's log: from Ray's Job API for a cluster job, else the pipeline's WORK/job.log once there is one, before that the driver's own output."""
        job = self.get(job_id)
        remote = self.scheduler.drivers.logs(job.driver)
        if remote is not None:
            return remote
        for path in (Path(job.work_dir) / "job.log", job_dir(self.settings.data_dir, job.id) / "driver.log"):
            if path.exists():
                return path.read_text(errors="replace")
        return ""
