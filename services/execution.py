"""Where jobs run: a driver process per job, started, watched and stopped by the scheduler.

`LocalDrivers` starts `python -m thresher.services.driver JOB_DIR` as a
subprocess in its own session (the embedded default: each driver starts the
job's local Ray, which dies with it). The driver's outcome is the
result.json it writes; a driver is identified by pid *and* start time, so a
restarted service finds the drivers that outlived it and never mistakes a
reused pid for one.

`RayJobDrivers` submits the same driver as a Ray Job to a cluster.

`Scheduler` is one thread: each tick it first holds the store's `scheduler`
lease (so of several services sharing a store, one schedules and the others
only serve the API, and a second `thresher serve` on the same data
directory by mistake never runs a job twice), then settles running jobs (a result ->
its terminal state; a driver gone without one -> requeued to resume from
its checkpoints while attempts remain, else failed with the reason), keeps
each running job's current phase, does its other `duties` (firing due
schedules), and starts queued jobs oldest first up to
`max_concurrent_jobs`. Every state change goes through the store's checked
transitions, so a job cancelled while it was being started is stopped, not run.
"""

from __future__ import annotations

import json
import logging
import os
import signal
import socket
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Callable
from pathlib import Path

import psutil

from .driver import ON_CLUSTER
from .states import JobState
from .store import IllegalTransition, JobRecord, JobStore

log = logging.getLogger("thresher.service")
RETRY_S = 5.0
STOP_GRACE_S = 30.0  # an ended job's processes (driver, local Ray) are killed if still running this long after
LEASE = "scheduler"


def job_dir(data_dir: Path, job_id: str) -> Path:
    return data_dir / "jobs" / job_id


def read_json(path: Path) -> dict | None:
    try:
        return json.loads(path.read_text())
    except (FileNotFoundError, json.JSONDecodeError):
        return None


def driver_env(config_path: str | None, roots: list[Path] | None) -> dict[str, str]:
    """What a driver is told besides its job directory: the service's config file, and the allowed roots as the
    service resolved them (a Ray Job's driver starts elsewhere, with another working directory and environment)."""
    env = {"THRESHER_CONFIG": config_path} if config_path else {}
    return env | ({"THRESHER_ALLOWED_ROOTS": json.dumps([str(r) for r in roots])} if roots else {})


class LocalDrivers:
    """Driver subprocesses on this machine."""

    def __init__(self, config_path: str | None = None, command: list[str] | None = None, roots: list[Path] | None = None):
        self.config_path, self.roots = config_path, roots
        self.command = command or [sys.executable, "-m", "thresher.services.driver"]  # + JOB_DIR
        self._children: dict[int, subprocess.Popen] = {}  # reaped on poll, so no zombies

    def start(self, job: JobRecord, directory: Path) -> str:
        env = {**os.environ, **driver_env(self.config_path, self.roots)}
        with open(directory / "driver.log", "ab") as out:
            p = subprocess.Popen(
                [*self.command, str(directory)],
                stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT, start_new_session=True, env=env,
            )
        self._children[p.pid] = p
        return f"pid:{p.pid}:{psutil.Process(p.pid).create_time():.3f}"

    def _process(self, driver: str | None) -> psutil.Process | None:
        if not driver or not driver.startswith("pid:"):
            return None
        _, pid, started = driver.split(":")
        child = self._children.get(int(pid))
        if child is not None and child.poll() is not None:
            self._children.pop(int(pid))
            return None
        try:
            p = psutil.Process(int(pid))
            return p if abs(p.create_time() - float(started)) < 0.01 and p.status() != psutil.STATUS_ZOMBIE else None
        except psutil.Error:
            return None

    def alive(self, driver: str | None) -> bool:
        """The driver, or any process of its session (the local Ray it started), is still running."""
        return self._process(driver) is not None or bool(self._session(driver))

    def _session(self, driver: str | None) -> list[psutil.Process]:
        """Live processes of the driver's session started after it (so a reused session id is never mistaken for it)."""
        if not driver or not driver.startswith("pid:"):
            return []
        _, pid, started = driver.split(":")
        found = []
        for p in psutil.process_iter(["create_time", "status"]):
            try:
                if os.getsid(p.pid) == int(pid) and p.info["create_time"] >= float(started) - 0.01 and p.info["status"] != psutil.STATUS_ZOMBIE:
                    found.append(p)
            except (OSError, psutil.Error):
                continue
        return found

    def kill(self, driver: str | None) -> None:
        """SIGKILL to every process of the driver's session: what a stop left running past its grace period."""
        for p in ([self._process(driver)] if self._process(driver) else []) + self._session(driver):
            try:
                p.kill()
            except psutil.Error:
                pass

    def logs(self, driver: str | None) -> str | None:
        return None  # a local driver's output is in JOB_DIR/driver.log and WORK/job.log

    def ready(self) -> bool:
        """On the embedded default every driver starts its own local Ray: ready when Ray can be loaded here."""
        import importlib.util

        return importlib.util.find_spec("ray") is not None

    def stop(self, driver: str | None) -> None:
        """SIGTERM to the driver's process group: the job stops at the next task boundary, nothing half-published."""
        p = self._process(driver)
        if p is not None:
            try:
                os.killpg(p.pid, signal.SIGTERM)
            except ProcessLookupError:
                pass


class RayJobDrivers:
    """Drivers as Ray Jobs on a cluster (Ray's Job Submission API at the dashboard address).

    The first attempt's submission id is the job id, so submitting again
    (a service that died between submitting and recording) is refused by Ray
    and the job runs at most once; a resumed attempt n is `ID-n`. Status,
    stop and logs go through the same API. JOB_DIR (spec, result) must be on
    a filesystem the cluster's head node sees, as the job's output is.
    """

    def __init__(self, address: str, config_path: str | None = None, roots: list[Path] | None = None):
        from ray.job_submission import JobSubmissionClient

        self.client = JobSubmissionClient(address)
        self.config_path, self.roots = config_path, roots

    def start(self, job: JobRecord, directory: Path) -> str:
        submission = job.id if job.attempt == 0 else f"{job.id}-{job.attempt + 1}"
        env = {ON_CLUSTER: "1", **driver_env(self.config_path, self.roots)}
        try:
            self.client.submit_job(
                entrypoint=f"{sys.executable} -m thresher.services.driver {directory}",
                submission_id=submission,
                runtime_env={"env_vars": env},
            )
        except RuntimeError as e:
            if "already exists" not in str(e):
                raise
        return f"ray:{submission}"

    def _submission(self, driver: str | None) -> str | None:
        return driver[4:] if driver and driver.startswith("ray:") else None

    def alive(self, driver: str | None) -> bool:
        from ray.job_submission import JobStatus

        sid = self._submission(driver)
        return sid is not None and self.client.get_job_status(sid) in (JobStatus.PENDING, JobStatus.RUNNING)

    def stop(self, driver: str | None) -> None:
        """Ray sends the entrypoint SIGTERM (SIGKILL after its grace period): the driver stops as on a local cancel."""
        sid = self._submission(driver)
        if sid is not None:
            self.client.stop_job(sid)

    def kill(self, driver: str | None) -> None:
        """Ray kills a stopped job's entrypoint after its own grace period."""

    def logs(self, driver: str | None) -> str | None:
        sid = self._submission(driver)
        return self.client.get_job_logs(sid) if sid else None

    def ready(self) -> bool:
        try:
            self.client.list_jobs()
        except Exception:
            return False
        return True


class Scheduler:
    def __init__(self, store: JobStore, drivers: LocalDrivers | RayJobDrivers, data_dir: Path, max_concurrent: int, max_attempts: int, poll_s: float):
        self.store, self.drivers, self.data_dir = store, drivers, data_dir
        self.max_concurrent, self.max_attempts, self.poll_s = max_concurrent, max_attempts, poll_s
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._lock = threading.Lock()  # one tick at a time (the thread, or a cancel settling a queued job)
        self._retry_at: dict[str, float] = {}  # job id -> when a failed driver start may be tried again
        self._stopped: set[str] = set()  # running jobs this scheduler has sent a stop
        self.stop_grace_s = STOP_GRACE_S
        self._ending: dict[str, float] = {}  # job id -> when it was first seen ending (result written or cancel asked)
        self.me = f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"
        self.lease_s = max(10.0, 10 * poll_s)  # a crashed holder's lease lapses after this long
        self.leader: str | None = None  # who held the lease at the last tick
        self.duties: list[Callable[[], None]] = []  # what else only the lease holder does each tick (fire due schedules)

    def start(self) -> None:
        self._thread = threading.Thread(target=self._loop, name="thresher-scheduler", daemon=True)
        self._thread.start()

    def shutdown(self) -> None:
        """Stop scheduling and give up the lease; running drivers keep running and a restarted service picks them up."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=10)
        if self.leader == self.me:
            self.store.release_lease(LEASE, self.me)

    def _loop(self) -> None:
        while not self._stop.is_set():
            try:
                self.tick()
            except Exception:  # the scheduler must outlive one bad tick; the next one retries
                log.exception("scheduler tick failed")
            self._stop.wait(self.poll_s)

    def tick(self) -> None:
        with self._lock:
            holder = self.store.hold_lease(LEASE, self.me, self.lease_s)
            if holder != self.me:
                if holder != self.leader:
                    log.warning("another service (%s) schedules the jobs of this store; this one serves the API only", holder)
                self.leader = holder
                return
            if self.leader != self.me:
                log.info("scheduling the jobs of this store (%s)", self.me)
            self.leader = self.me
            running = self.store.running()
            for job in running:
                self._settle(job)
            for duty in self.duties:
                duty()
            free = self.max_concurrent - len(self.store.running())
            for job in self.store.queued()[: max(free, 0)]:
                self._launch(job)

    def _settle(self, job: JobRecord) -> None:
        """A running job ends (and frees its slot) only once its driver and every process it started are gone."""
        d = job_dir(self.data_dir, job.id)
        result = read_json(d / "result.json")
        finished = result is not None and result.get("unix", 0) >= (job.started_at or 0)
        if self.drivers.alive(job.driver):
            cancelled = (d / "cancel").exists()
            if cancelled and job.id not in self._stopped:  # cancelled through another service
                self._stopped.add(job.id)
                self.drivers.stop(job.driver)
            if finished or cancelled:  # ending: its processes get STOP_GRACE_S to go, then are killed
                ending = self._ending.setdefault(job.id, time.monotonic())
                if time.monotonic() - ending > self.stop_grace_s:
                    log.warning("job %s: processes still running %gs after it ended; killing them", job.id, self.stop_grace_s)
                    self.drivers.kill(job.driver)
            status = read_json(Path(job.work_dir) / "status.json")
            phase = status.get("phase") if status and status.get("pid") and not finished else None
            if phase and phase != job.phase:
                self.store.update(job.id, phase=phase)
            return
        self._ending.pop(job.id, None)
        if finished:
            self.store.transition(job.id, result["state"], error=result.get("error"), counts=result.get("counts"), published=result.get("output"), phase=None)
            return
        if (d / "cancel").exists():
            self.store.transition(job.id, JobState.CANCELLED, error="cancelled; the driver stopped before reporting")
        elif job.attempt < self.max_attempts:
            self.store.transition(job.id, JobState.QUEUED, error=f"driver died during attempt {job.attempt}; resuming from its checkpoints")
        else:
            self.store.transition(job.id, JobState.FAILED, error=f"driver died during attempt {job.attempt} of {self.max_attempts}; see the job's logs")

    def _launch(self, job: JobRecord) -> None:
        if time.time() < self._retry_at.get(job.id, 0.0):
            return
        d = job_dir(self.data_dir, job.id)
        (d / "result.json").unlink(missing_ok=True)  # a result is only ever the current attempt's
        try:
            driver = self.drivers.start(job, d)
        except Exception as e:  # e.g. the cluster not up yet: the job stays queued, says why, and is retried
            self._retry_at[job.id] = time.time() + RETRY_S
            message = f"could not start its driver (retrying every {RETRY_S:g}s): {type(e).__name__}: {str(e).splitlines()[0][:300] if str(e) else ''}"
            if job.error != message:
                log.warning("job %s: %s", job.id, message)
                self.store.update(job.id, error=message)
            return
        self._retry_at.pop(job.id, None)
        try:
            self.store.transition(job.id, JobState.RUNNING, driver=driver, error=None)
        except IllegalTransition:  # cancelled between listing and starting, or started by a service that held the lease just before
            now = self.store.get(job.id)
            if now is None or now.state != JobState.RUNNING or now.driver != driver:  # (a Ray submission id is the same driver: keep it)
                self.drivers.stop(driver)

    def cancel(self, job: JobRecord) -> JobRecord:
        """A queued job is cancelled now; a running one is asked to stop and settles when its driver exits."""
        with self._lock:
            job = self.store.get(job.id)
            if job.state == JobState.QUEUED:
                return self.store.transition(job.id, JobState.CANCELLED, error="cancelled before it started")
            if job.state == JobState.RUNNING:
                (job_dir(self.data_dir, job.id) / "cancel").touch()  # the lease holder stops it, if that is not this service
                if self.leader == self.me:
                    self._stopped.add(job.id)
                    self.drivers.stop(job.driver)
            return job
