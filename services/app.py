"""The FastAPI application: settings -> job store, scheduler, routers (FastAPI's "bigger applications" layout).

`create_app(settings)` builds everything from the settings; `thresher serve`
runs it under uvicorn. The API process only reads and writes the job store
and starts, watches and stops driver processes: no job code runs in it.
"""

from __future__ import annotations

import gc
import logging
import time
from collections.abc import Callable
from contextlib import asynccontextmanager

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse

from .config import ServiceSettings
from .execution import LocalDrivers, RayJobDrivers, Scheduler
from .jobs import JobService, Refused
from .limits import BodyLimit
from .metrics import Metrics
from .routers import health, jobs, pages, schedules
from .schedules import Schedules
from .store import JobStore

log = logging.getLogger("thresher.service")


def open_store(settings: ServiceSettings) -> JobStore:
    settings.data_dir.mkdir(parents=True, exist_ok=True)
    return JobStore(settings.database_url) if settings.database_url else JobStore.sqlite(settings.data_dir / "jobs.db")


def first_token(settings: ServiceSettings, store: JobStore) -> str | None:
    """Store the configured tokens (hashed); with none anywhere, create one admin token and return it to print once."""
    for token, kind in settings.tokens.items():
        if store.check_token(token) is None:
            store.add_token("config", kind, token)
    if store.has_tokens():
        return None
    token = store.add_token("first-start", "admin")
    path = settings.data_dir / "admin-token"
    path.write_text(token + "\n")
    path.chmod(0o600)
    return token


def _with_spec_schema(app: FastAPI) -> dict:
    """The OpenAPI document, with the job spec's schema (and the models it uses) among the components."""
    from fastapi.openapi.utils import get_openapi

    from thresher.pipeline.spec import JobSpec

    doc = get_openapi(title=app.title, version=app.version, summary=app.summary, routes=app.routes)
    schema = JobSpec.model_json_schema(ref_template="#/components/schemas/{model}")
    components = doc.setdefault("components", {}).setdefault("schemas", {})
    components.update(schema.pop("$defs", {}))
    components["JobSpec"] = schema
    app.openapi_schema = doc
    return doc


def create_app(settings: ServiceSettings, config_path: str | None = None, clock: Callable[[], float] = time.time, driver_command: list[str] | None = None) -> FastAPI:
    """`clock` is what schedules fire by and `driver_command` what a local job runs (tests give a clock they move and a stand-in driver)."""
    store = open_store(settings)
    roots = settings.roots()
    drivers = RayJobDrivers(settings.ray_address, config_path, roots) if settings.ray_address else LocalDrivers(config_path, driver_command, roots)
    scheduler = Scheduler(store, drivers, settings.data_dir, settings.max_concurrent_jobs, settings.max_attempts, settings.poll_s)

    @asynccontextmanager
    async def lifespan(app: FastAPI):
        scheduler.start()
        # Everything loaded so far (FastAPI, pydantic, SQLAlchemy: ~90k objects) lives as long as the process:
        # frozen, a full collection skips it (74 ms -> under 1 ms on the 2-core dev VM), which was the polls' worst tail.
        gc.freeze()
        yield
        scheduler.shutdown()
        store.close()

    app = FastAPI(title="thresher", version="1", summary="Selection jobs for LLM pretraining corpora", lifespan=lifespan)
    app.state.settings, app.state.store, app.state.scheduler = settings, store, scheduler
    app.state.jobs = JobService(settings, store, scheduler)
    app.state.schedules = Schedules(store, app.state.jobs, clock)
    scheduler.duties.append(app.state.schedules.fire_due)
    app.state.metrics = Metrics(store)
    app.state.ray_ready = drivers.ready
    app.state.new_token = first_token(settings, store)
    app.state.known_tokens = {}  # auth's cache of valid tokens' kinds

    @app.exception_handler(Refused)
    async def refused(request: Request, e: Refused) -> JSONResponse:
        return JSONResponse({"detail": e.detail}, status_code=e.status)

    @app.exception_handler(RequestValidationError)
    async def invalid(request: Request, e: RequestValidationError) -> JSONResponse:
        first = e.errors()[0]
        return JSONResponse({"detail": f"{'.'.join(str(p) for p in first['loc'])}: {first['msg']}"}, status_code=422)

    app.add_middleware(BodyLimit, max_bytes=settings.max_body_bytes)
    app.openapi = lambda: app.openapi_schema or _with_spec_schema(app)
    app.include_router(jobs.router)
    app.include_router(schedules.router)
    app.include_router(health.router)
    app.include_router(pages.router)
    return app

