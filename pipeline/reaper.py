"""The local Ray a job starts dies with the job's driver, even when the driver is killed with SIGKILL.

Ray's head processes fate-share with the driver, but the agents the raylet
spawns (DashboardAgent, RuntimeEnvAgent) and idle workers can outlive it.
`watch()` starts this module as a small process in its own session (so a
kill of the driver's process group spares it): while the driver lives it
notes the driver's descendants every half second; once the driver is gone it
terminates those still alive (the same pid *and* start time, so a reused pid
is never touched), then kills what is left a few seconds later.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time

import psutil

POLL_S = 0.5
GRACE_S = 3.0


def watch() -> subprocess.Popen:
    """Start the reaper for this process (the driver)."""
    return subprocess.Popen(
        [sys.executable, "-m", "thresher.pipeline.reaper", str(os.getpid())],
        start_new_session=True,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )


def _descendants(driver: psutil.Process, me: int) -> dict[int, float]:
    try:
        return {p.pid: p.create_time() for p in driver.children(recursive=True) if p.pid != me}
    except psutil.Error:
        return {}


def _alive(pids: dict[int, float]) -> list[psutil.Process]:
    out = []
    for pid, created in pids.items():
        try:
            p = psutil.Process(pid)
            if p.create_time() == created:
                out.append(p)
        except psutil.Error:
            continue
    return out


def main(driver_pid: int) -> None:
    me = os.getpid()
    try:
        driver = psutil.Process(driver_pid)
    except psutil.Error:
        return
    seen: dict[int, float] = {}
    while driver.is_running() and driver.status() != psutil.STATUS_ZOMBIE:
        seen.update(_descendants(driver, me))
        time.sleep(POLL_S)
    left = _alive(seen)
    for p in left:  # their own children too: a worker forked after the last look
        try:
            seen.update({c.pid: c.create_time() for c in p.children(recursive=True)})
        except psutil.Error:
            pass
    left = _alive(seen)
    for p in left:
        try:
            p.terminate()
        except psutil.Error:
            pass
    _, still = psutil.wait_procs(left, timeout=GRACE_S)
    for p in still:
        try:
            p.kill()
        except psutil.Error:
            pass


if __name__ == "__main__":
    main(int(sys.argv[1]))
