"""/v1/jobs: submit, list, look at, cancel; a job's manifest, report and logs."""

from __future__ import annotations

import asyncio
from typing import Any

from fastapi import APIRouter, Body, Depends, Header, Query, Request, Response
from fastapi.responses import FileResponse, JSONResponse, PlainTextResponse, StreamingResponse

from ..auth import admin, reader
from ..jobs import ERROR_RESPONSES, JobService
from ..states import NAMES, JobState

router = APIRouter(prefix="/v1/jobs", tags=["jobs"], responses=ERROR_RESPONSES)


async def service(request: Request) -> JobService:
    return request.app.state.jobs


# The body is read as a mapping and parsed by the pipeline's own `parse_spec` (its errors name the field as the CLI's do);
# the document still describes it as the JobSpec it must be (its schema is added to the components in app.py).
_SPEC_BODY = {"requestBody": {"content": {"application/json": {"schema": {"$ref": "#/components/schemas/JobSpec"}}}}}


@router.post("", status_code=202, dependencies=[Depends(admin)], summary="Submit a job spec; it runs when a slot is free", openapi_extra=_SPEC_BODY)
def submit(
    response: Response,
    spec: dict[str, Any] = Body(..., description="A job spec, as `thresher run` takes (see the README's spec reference)."),
    idempotency_key: str | None = Header(None, description="A retried submission with the same key returns the first job."),
    jobs: JobService = Depends(service),
) -> dict:
    job, created = jobs.submit(spec, idempotency_key)
    response.headers["Location"] = f"/v1/jobs/{job.id}"
    if not created:
        response.status_code = 200
    return {"id": job.id, "state": job.state, "created": created}


# The polled reads are `async`: a few-millisecond indexed read of the store (SQLite in WAL mode never blocks
# a reader) costs less on the event loop than the threadpool hop and the GIL hand-offs between 40 threads
# (bench/RESULTS.md). Routes that write or touch processes stay in the threadpool.
@router.get("", dependencies=[Depends(reader)], summary="Jobs, newest first")
async def list_jobs(
    state: str | None = Query(None, description=f"One of {', '.join(NAMES)}."),
    limit: int = Query(50, ge=1, le=500),
    cursor: str | None = Query(None, description="next_cursor of the previous page."),
    jobs: JobService = Depends(service),
) -> dict:
    if state is not None and state not in NAMES:
        return JSONResponse({"detail": f"state: unknown {state!r} (known: {', '.join(NAMES)})"}, status_code=422)
    page, nxt = jobs.list(state, limit, cursor)
    return {"jobs": [jobs.view(j) for j in page], "next_cursor": nxt}


@router.get("/{job_id}", dependencies=[Depends(reader)], summary="A job: state, current phase, per-phase progress, counts, error")
async def get_job(job_id: str, jobs: JobService = Depends(service)) -> dict:
    return jobs.view(jobs.get(job_id))


@router.post("/{job_id}/cancel", status_code=202, dependencies=[Depends(admin)], summary="Stop a job; its partial output is never published")
def cancel(job_id: str, jobs: JobService = Depends(service)) -> dict:
    return jobs.view(jobs.cancel(job_id))


@router.get("/{job_id}/manifest", dependencies=[Depends(reader)], summary="The published manifest.json")
def manifest(job_id: str, jobs: JobService = Depends(service)) -> FileResponse:
    return FileResponse(jobs.output_file(job_id, "manifest.json"), media_type="application/json", headers={"X-Content-Type-Options": "nosniff"})


@router.get("/{job_id}/report", dependencies=[Depends(reader)], summary="The published report.html")
def report(job_id: str, jobs: JobService = Depends(service)) -> FileResponse:
    return FileResponse(jobs.output_file(job_id, "report.html"), media_type="text/html", headers=REPORT_HEADERS)


# The report is self-contained (inline CSS and SVG, no script, nothing fetched): a policy that allows nothing else.
REPORT_HEADERS = {
    "X-Content-Type-Options": "nosniff",
    "Content-Security-Policy": "default-src 'none'; style-src 'unsafe-inline'; img-src data:; frame-ancestors 'none'; base-uri 'none'; form-action 'none'; sandbox",
    "Referrer-Policy": "no-referrer",
}


@router.get("/{job_id}/logs", dependencies=[Depends(reader)], summary="The job's log: the last lines, or followed until the job ends")
async def logs(job_id: str, tail: int = Query(200, ge=1, le=100_000), follow: bool = False, jobs: JobService = Depends(service)):
    jobs.get(job_id)  # 404 for an unknown job
    if not follow:
        return PlainTextResponse("".join(line + "\n" for line in jobs.log_text(job_id).splitlines()[-tail:]))
    return StreamingResponse(_follow(jobs, job_id, tail), media_type="text/plain")


async def _follow(jobs: JobService, job_id: str, tail: int):
    """The last `tail` lines, then what is added, until the job is in a terminal state and its log is drained."""
    sent = None
    while True:
        ended = JobState(jobs.get(job_id).state).is_terminal
        text = await asyncio.to_thread(jobs.log_text, job_id)
        if sent is None or not text.startswith(sent):  # first look, or the driver's log gave way to the pipeline's
            yield "".join(line + "\n" for line in text.splitlines()[-tail:])
        else:
            yield text[len(sent):]
        sent = text
        if ended:
            return
        await asyncio.sleep(0.5)
