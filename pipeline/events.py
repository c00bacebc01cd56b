"""Run events: what a job reports while it runs, for the CLI, the log file and a service.

A job emits plain dicts (`{"event": "phase_end", "phase": "embed", ...}`) to
an `on_event` callback; `RunStatus` folds them into `WORK/status.json` (the
job's current state, rewritten atomically on every event) and appends them to
`WORK/events.jsonl`, so a service can show a job's progress without talking
to its driver.
"""

from __future__ import annotations

import json
import os
import threading
import time
from pathlib import Path
from typing import Callable

Event = dict
OnEvent = Callable[[Event], None]


class RunStatus:
    """Folds a job's events into status.json and an append-only events.jsonl."""

    def __init__(self, work: Path):
        self.status_path = work / "status.json"
        self.events_path = work / "events.jsonl"
        self.state: dict = {"state": "running", "phase": None, "phases": {}, "started_unix": round(time.time(), 3), "pid": os.getpid()}
        self._lock = threading.Lock()  # progress events come from a polling thread

    def __call__(self, event: Event) -> None:
        with self._lock:
            self._fold({"unix": round(time.time(), 3), **event})

    def _fold(self, event: Event) -> None:
        kind, phase = event["event"], event.get("phase")
        if kind != "progress":  # the log keeps decisions; status.json keeps the latest count
            with open(self.events_path, "a") as fh:
                fh.write(json.dumps(event, default=str) + "\n")
        if kind == "progress":
            self.state["phases"].setdefault(phase, {}).update({k: event[k] for k in ("rows_done", "rows_total", "elapsed", "rate")})
        elif kind == "phase_start":
            self.state["phase"] = phase
            self.state["phases"][phase] = {"state": "running", "key": event.get("key"), "reused": False}
        elif kind == "phase_end":
            self.state["phases"][phase] = {"state": "done", **{k: v for k, v in event.items() if k not in ("event", "phase", "unix")}}
        elif kind == "phase_reused":
            self.state["phases"][phase] = {"state": "done", "reused": True, "key": event.get("key")}
        elif kind == "warning":
            self.state.setdefault("warnings", []).append(event["message"])
        elif kind in ("job_end", "job_failed"):
            self.state["state"] = "succeeded" if kind == "job_end" else "failed"
            self.state["phase"] = None
            if kind == "job_failed":
                self.state["error"] = event.get("error")
        self.state["updated_unix"] = event["unix"]
        tmp = self.status_path.with_suffix(".json.tmp")
        tmp.write_text(json.dumps(self.state, indent=1, default=str))
        tmp.replace(self.status_path)
