"""/healthz (the process answers), /readyz (the job store and Ray answer), /metrics (Prometheus)."""

from __future__ import annotations

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse, Response

router = APIRouter(tags=["health"])


@router.get("/healthz", summary="The service process is up (no auth)")
def healthz() -> dict:
    return {"ok": True}


@router.get("/readyz", summary="The job store and Ray are reachable (no auth)")
def readyz(request: Request) -> JSONResponse:
    checks = {"store": request.app.state.store.ping(), "ray": request.app.state.ray_ready()}
    scheduler = request.app.state.scheduler
    body = {"ready": all(checks.values()), "checks": checks, "scheduling": scheduler.leader == scheduler.me, "scheduler": scheduler.leader}
    return JSONResponse(body, status_code=200 if all(checks.values()) else 503)


@router.get("/metrics", summary="Prometheus metrics: jobs by state, phase durations, documents processed (no auth)")
def metrics(request: Request) -> Response:
    from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

    request.app.state.metrics.refresh()
    return Response(generate_latest(request.app.state.metrics.registry), media_type=CONTENT_TYPE_LATEST)
