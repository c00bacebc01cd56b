"""/v1/schedules: make, list, look at, change (pause / resume), delete the schedules that submit jobs."""

from __future__ import annotations

from fastapi import APIRouter, Depends, Request, Response

from ..auth import admin, reader
from ..jobs import ERROR_RESPONSES
from ..schedules import ScheduleBody, SchedulePatch, Schedules

router = APIRouter(prefix="/v1/schedules", tags=["schedules"], responses=ERROR_RESPONSES)


async def service(request: Request) -> Schedules:
    return request.app.state.schedules


@router.post("", status_code=201, dependencies=[Depends(admin)], summary="Make a schedule: a job spec submitted at each cron fire time")
def create(body: ScheduleBody, response: Response, schedules: Schedules = Depends(service)) -> dict:
    s = schedules.create(body)
    response.headers["Location"] = f"/v1/schedules/{s.name}"
    return schedules.view(s)


@router.get("", dependencies=[Depends(reader)], summary="Every schedule, by name, with its next fire times")
def list_schedules(schedules: Schedules = Depends(service)) -> dict:
    return {"schedules": [schedules.view(s) for s in schedules.store.schedules()]}


@router.get("/{name}", dependencies=[Depends(reader)], summary="A schedule: its next fire times and what its last firing did")
def get_schedule(name: str, schedules: Schedules = Depends(service)) -> dict:
    return schedules.view(schedules.get(name))


@router.patch("/{name}", dependencies=[Depends(admin)], summary="Change a schedule; `paused: true` pauses it, `paused: false` resumes it")
def change(name: str, patch: SchedulePatch, schedules: Schedules = Depends(service)) -> dict:
    return schedules.view(schedules.change(name, patch))


@router.delete("/{name}", status_code=204, dependencies=[Depends(admin)], summary="Delete a schedule; the jobs it submitted stay")
def delete(name: str, schedules: Schedules = Depends(service)) -> Response:
    schedules.delete(name)
    return Response(status_code=204)
