"""Prometheus metrics, read from the job store and the jobs' status files when scraped (nothing to keep in sync)."""

from __future__ import annotations

from pathlib import Path

from prometheus_client import CollectorRegistry, Gauge

from .execution import read_json
from .store import JobStore


class Metrics:
    def __init__(self, store: JobStore):
        self.store = store
        self.registry = CollectorRegistry()
        self.jobs = Gauge("thresher_jobs", "Jobs in the store by state", ["state"], registry=self.registry)
        self.phase_seconds = Gauge("thresher_phase_seconds", "Seconds each phase of the latest job took (reused phases 0)", ["phase"], registry=self.registry)
        self.docs = Gauge("thresher_documents_processed", "Input documents of the succeeded jobs in the store", registry=self.registry)

    def refresh(self) -> None:
        for state, n in self.store.counts_by_state().items():
            self.jobs.labels(state=state).set(n)
        total, cursor = 0, None
        while True:
            page, cursor = self.store.list(state="succeeded", limit=500, cursor=cursor)
            total += sum((j.counts or {}).get("input", 0) for j in page)
            if cursor is None:
                break
        self.docs.set(total)
        latest, _ = self.store.list(limit=1)
        status = read_json(Path(latest[0].work_dir) / "status.json") if latest else None
        for phase, facts in (status or {}).get("phases", {}).items():
            self.phase_seconds.labels(phase=phase).set(0.0 if facts.get("reused") else float(facts.get("seconds") or facts.get("elapsed") or 0.0))
