"""The reaper kills what a SIGKILLed driver started, however it is parented by then (no Ray needed to show it)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time

import psutil

# A driver that starts its reaper and a long-lived "gcs" holding a file in its session directory, then a "raylet" that forks an "agent" and exits at once (as the raylet,
# which fate-shares with the driver, leaves the agents it forked): the agent is nobody's descendant when the
# driver dies, but it holds a log file in the driver's session directory, as every Ray process does.
DRIVER = textwrap.dedent(
    """
    import os, subprocess, sys, time
    from thresher.pipeline import reaper
    reaper.watch()
    logs = os.path.join(sys.argv[1], f"session_2026-12-03_17-00-00_000001_{os.getpid()}", "logs")
    os.makedirs(logs)
    gcs = subprocess.Popen(["sh", "-c", f"exec 3>>{logs}/gcs.out; exec sleep 300"])
    time.sleep(1.5)  # the reaper has looked at the gcs and its files
    raylet = subprocess.Popen(["sh", "-c", f"exec 3>>{logs}/agent.out; exec sleep 300 &\\necho $!"],
                              stdout=subprocess.PIPE, text=True)
    print(raylet.stdout.readline().strip(), flush=True)
    raylet.wait()
    time.sleep(300)
    """
)


def _gone(p: psutil.Process, within: float) -> bool:
    deadline = time.time() + within
    while time.time() < deadline:
        if not p.is_running() or p.status() == psutil.STATUS_ZOMBIE:
            return True
        time.sleep(0.2)
    return False


def test_an_orphan_holding_the_jobs_session_files_dies_with_the_driver_and_nothing_else_does(tmp_path):
    other = tmp_path / "session_2026-12-03_17-00-00_000001_1" / "logs"  # another driver's session
    other.mkdir(parents=True)
    bystander = psutil.Process(subprocess.Popen(["sh", "-c", f"exec 3>>{other}/w.out; exec sleep 300"]).pid)
    driver = subprocess.Popen([sys.executable, "-c", DRIVER, str(tmp_path)], stdout=subprocess.PIPE, text=True)
    agent = psutil.Process(int(driver.stdout.readline()))
    try:
        assert agent.ppid() != driver.pid and agent.pid not in [c.pid for c in psutil.Process(driver.pid).children(recursive=True)]
        os.kill(driver.pid, signal.SIGKILL)
        driver.wait()
        assert _gone(agent, within=20)
        assert bystander.is_running()  # holds files in another session only
    finally:
        for p in (agent, bystander):
            if p.is_running():
                p.kill()
