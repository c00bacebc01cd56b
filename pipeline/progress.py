"""Rows done in the running phase: counted where the rows are, reported as run events.

Ray workers add to a tiny counter actor (fire-and-forget calls, no CPU
reserved); driver-side loops add directly. A thread on the driver turns the
count into `progress` events about twice a second, so the CLI can draw a
progress line and a service can show rows, rate and ETA for every phase.
"""

from __future__ import annotations

import threading
import time

import ray

from .events import OnEvent


@ray.remote(num_cpus=0)
class RowCounter:
    def __init__(self) -> None:
        self.rows = 0

    def add(self, n: int) -> None:
        self.rows += n

    def get(self) -> int:
        return self.rows


def count_rows(counter, n: int) -> None:
    """Called on a worker with the handle from `PhaseProgress.counter`; never blocks."""
    if counter is not None:
        counter.add.remote(int(n))


class PhaseProgress:
    """A phase's row count, polled into `progress` events while the phase runs."""

    def __init__(self, emit: OnEvent, phase: str, total: int | None, interval: float = 0.5):
        self.emit, self.phase, self.total, self.interval = emit, phase, total, interval
        self._local = 0
        self._actor = None
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._poll, daemon=True)
        self._started = time.perf_counter()

    @property
    def counter(self):
        """The actor handle Ray tasks count into (created on first use)."""
        if self._actor is None:
            self._actor = RowCounter.remote()
        return self._actor

    def add(self, n: int) -> None:
        self._local += int(n)

    def rows(self) -> int:
        remote = ray.get(self._actor.get.remote()) if self._actor is not None else 0
        return self._local + remote

    def __enter__(self) -> "PhaseProgress":
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join()
        if self._actor is not None:
            ray.kill(self._actor)

    def _poll(self) -> None:
        last = -1
        while not self._stop.wait(self.interval):
            try:
                done = self.rows()
            except Exception:  # Ray shutting down under us: the phase is ending anyway
                return
            if done != last:
                elapsed = time.perf_counter() - self._started
                self.emit({"event": "progress", "phase": self.phase, "rows_done": done, "rows_total": self.total, "elapsed": round(elapsed, 2), "rate": round(done / max(elapsed, 1e-9), 1)})
                last = done
