"""The local Ray a job starts dies with the job's driver, even when the driver is killed with SIGKILL.

Ray's head processes fate-share with the driver, but the agents the raylet
spawns (DashboardAgent, RuntimeEnvAgent) and idle workers can outlive it.
`watch()`, called before `ray.init`, starts this module as a small process in
its own session (so a kill of the driver's process group spares it). While the
driver lives it notes the driver's descendants every half second, and learns
the job's Ray session directory from the files they hold open (Ray names it
`session_<time>_<driver pid>`). Once the driver is gone it terminates every
process still alive that it noted (same pid *and* start time, so a reused pid
is never touched) or that holds a file in that session directory, then kills
what is left a few seconds later.

The session directory finds what no snapshot can: an agent forked between two
looks whose raylet died with the driver is nobody's child any more, and its
environment and command line are rewritten by its process title; every Ray
process, agents included, keeps its log files there open.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
import time
from pathlib import Path

import psutil

POLL_S = 0.5
GRACE_S = 3.0
SWEEPS = 3  # a process forked while the others were terminated is caught by the next sweep


def watch() -> subprocess.Popen:
    """Start the reaper for this process (the driver); call it before `ray.init`, so it sees Ray start."""
    return subprocess.Popen(
        [sys.executable, "-m", "thresher.pipeline.reaper", str(os.getpid())],
        start_new_session=True,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )


def session_dirs(processes: list[psutil.Process], driver_pid: int) -> set[Path]:
    """The Ray session directories (`.../session_<time>_<driver_pid>`) these processes hold files in."""
    name = re.compile(rf"session_.+_{driver_pid}")
    found = set()
    for p in processes:
        try:
            files = p.open_files()
        except psutil.Error:
            continue
        for f in files:
            path = Path(f.path)
            found.update(d for d in path.parents if name.fullmatch(d.name))
    return found


def holding(dirs: set[Path], me: int) -> dict[int, float]:
    """Every process (but `me`) with a file open under one of `dirs`."""
    found = {}
    for p in psutil.process_iter():
        try:
            if p.pid != me and any(d in Path(f.path).parents for f in p.open_files() for d in dirs):
                found[p.pid] = p.create_time()
        except psutil.Error:
            continue
    return found


def _family(driver: psutil.Process, me: int) -> dict[int, float]:
    found = {}
    for p in driver.children(recursive=True):
        try:
            if p.pid != me:
                found[p.pid] = p.create_time()
        except psutil.Error:  # exited while we looked
            continue
    return found


def _alive(pids: dict[int, float]) -> list[psutil.Process]:
    out = []
    for pid, created in pids.items():
        try:
            p = psutil.Process(pid)
            if p.create_time() == created and p.status() != psutil.STATUS_ZOMBIE:
                out.append(p)
        except psutil.Error:
            continue
    return out


def main(driver_pid: int) -> None:
    me = os.getpid()
    seen: dict[int, float] = {}
    sessions: set[Path] = set()
    try:
        driver = psutil.Process(driver_pid)
        while driver.is_running() and driver.status() != psutil.STATUS_ZOMBIE:  # is_running compares start times too
            family = _family(driver, me)
            seen.update(family)
            if not sessions:
                sessions = session_dirs(_alive(family), driver_pid)
            time.sleep(POLL_S)
    except psutil.Error:
        pass  # the driver is gone
    for _ in range(SWEEPS):
        left = _alive({**seen, **holding(sessions, me)})
        if not left:
            return
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
