"""A job's driver: `python -m thresher.services.driver JOB_DIR` runs one job and leaves its outcome in JOB_DIR/result.json.

The service never runs a job in its own process: a crash, a leak or a
blocking call in a job cannot take the API down. The driver reads
JOB_DIR/spec.json, runs the pipeline (which checkpoints every phase into
its work directory, so a second driver for the same job resumes), and
writes result.json atomically: state (succeeded, failed, cancelled), a
readable error, the manifest's counts. SIGTERM (a cancel) stops the job
between phases' tasks with nothing half-published; exit codes are the
CLI's (0, 1, 2, 130, 143). The same module is the entrypoint of a Ray Job
on a cluster, where JOB_DIR must be on a filesystem the head sees.
"""

from __future__ import annotations

import json
import os
import sys
import time
from pathlib import Path


ON_CLUSTER = "THRESHER_DRIVER_ON_CLUSTER"  # set by the service in a Ray Job's runtime env


def write_result(job_dir: Path, result: dict) -> None:
    tmp = job_dir / "result.json.tmp"
    tmp.write_text(json.dumps({**result, "unix": round(time.time(), 3)}))
    tmp.replace(job_dir / "result.json")


def lower_priority(nice: int) -> None:
    """Nice this process (the local Ray it starts inherits it) and, with Linux's autogroup scheduling on, its session's group.

    The driver leads its own session, and with autogroup the kernel first
    shares the CPU equally between sessions, whatever a process's nice
    value: only the group's niceness (/proc/self/autogroup) lets the API
    process win the cores back from a job.
    """
    os.nice(nice)
    try:
        Path("/proc/self/autogroup").write_text(str(nice))
    except OSError:  # not Linux, or autogroup off: the process niceness is what counts there
        pass


def main(argv: list[str] | None = None) -> int:
    from thresher.pipeline.errors import Interrupted, ThresherError
    from thresher.pipeline.runner import run
    from thresher.pipeline.spec import parse_spec

    from .config import load_service_settings

    job_dir = Path((argv or sys.argv[1:])[0])
    try:
        spec = parse_spec(json.loads((job_dir / "spec.json").read_text()), source="job spec")
        ray_job = os.environ.get(ON_CLUSTER) == "1"  # a Ray Job's entrypoint: the cluster it runs on, its logs through Ray
        settings = load_service_settings()
        settings = settings.model_copy(update={"allowed_roots": settings.roots()})  # the job confines what it opens to them
        if not ray_job and settings.job_nice:
            lower_priority(settings.job_nice)
        if ray_job and spec.ray.address is None:
            spec = spec.model_copy(update={"ray": spec.ray.model_copy(update={"address": "auto"})})
        manifest = run(spec, log=lambda m: print(m, flush=True), progress=False, capture_output=not ray_job, handle_signals=True, settings=settings)
    except Interrupted as e:
        write_result(job_dir, {"state": "cancelled", "error": str(e)})
        return e.exit_code
    except ThresherError as e:
        write_result(job_dir, {"state": "failed", "error": f"{e.label}: {e}"})
        return e.exit_code
    except BaseException as e:  # a bug: the traceback goes to the driver's log, one line to the job
        write_result(job_dir, {"state": "failed", "error": f"internal error: {type(e).__name__}: {e}"})
        raise
    write_result(job_dir, {"state": "succeeded", "error": None, "counts": manifest["counts"], "output": manifest.get("published", spec.output.path)})
    return 0


if __name__ == "__main__":
    sys.exit(main())
