"""The local Ray a job starts dies with the job's driver, even when the driver is killed with SIGKILL.

Ray's head processes fate-share with the driver, but the agents the raylet
spawns (DashboardAgent, RuntimeEnvAgent) and idle workers can outlive it.
`watch()` starts this module as a small process in its own session (so a
kill of the driver's process group spares it): while the driver lives it
notes the driver's descendants every half second; once the driver is gone it
terminates those still alive (the same pid *and* start time, so a reused pid
is never touched), then kills what is left a few seconds later. A worker
forked after the last look whose parent died in the same kill is found by
the driver's session or process group instead (when the driver leads one).
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


def _group(leader: int, since: float, me: int) -> dict[int, float]:
    """Ray's processes started since `since` in the session or process group `leader` leads.

    Only Ray's (its command line names ray): a group also holds what the shell
    started beside the driver, such as the `tee` of `thresher run ... | tee`.
    """
    found = {}
    for p in psutil.process_iter(["create_time", "cmdline"]):
        try:
            ray_process = any("ray" in part for part in p.info["cmdline"] or ())
            if p.pid != me and ray_process and leader in (os.getsid(p.pid), os.getpgid(p.pid)) and p.info["create_time"] >= since:
                found[p.pid] = p.info["create_time"]
        except (OSError, psutil.Error):
            continue
    return found


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
    sid, pgid, since = os.getsid(driver_pid), os.getpgid(driver_pid), driver.create_time()
    while driver.is_running() and driver.status() != psutil.STATUS_ZOMBIE:
        seen.update(_descendants(driver, me))
        time.sleep(POLL_S)
    left = _alive(seen)
    for p in left:  # their own children too: a worker forked after the last look
        try:
            seen.update({c.pid: c.create_time() for c in p.children(recursive=True)})
        except psutil.Error:
            pass
    # A worker forked after the last look whose parent died with the driver is nobody's child any more, but it
    # is still in the driver's session or process group, when the driver leads one (a service's driver leads
    # its session; a shell gives a command its own process group).
    if driver_pid in (sid, pgid):
        seen.update(_group(driver_pid, since, me))
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
