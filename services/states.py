"""A job's states and the moves between them, in one place.

The store checks every transition against `JobState.can_become`; the
scheduler, the routers and the command-line client name states only through
`JobState`. A `StrEnum`, so a state is stored, served and compared as its
plain name ("queued"). Ray Jobs has the same life cycle under other names
(`RAY_JOBS`): thresher's `cancelled` is Ray's `STOPPED`, and a running job
may go back to `queued`, which Ray's cannot: a driver that died is resumed
from its checkpoints.
"""

from __future__ import annotations

from enum import StrEnum


class JobState(StrEnum):
    QUEUED = "queued"
    RUNNING = "running"
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    CANCELLED = "cancelled"

    @property
    def is_terminal(self) -> bool:
        """Nothing leaves a terminal state."""
        return not _TRANSITIONS[self]

    def can_become(self, other: str) -> bool:
        return other in _TRANSITIONS[self]


_TRANSITIONS: dict[JobState, frozenset[JobState]] = {
    JobState.QUEUED: frozenset({JobState.RUNNING, JobState.CANCELLED}),
    # -> queued: a driver that died is requeued and resumes from its checkpoints.
    JobState.RUNNING: frozenset({JobState.SUCCEEDED, JobState.FAILED, JobState.CANCELLED, JobState.QUEUED}),
    JobState.SUCCEEDED: frozenset(),
    JobState.FAILED: frozenset(),
    JobState.CANCELLED: frozenset(),
}
NAMES = tuple(s.value for s in JobState)  # for membership tests on plain strings (Python 3.11's `in JobState` refuses them)
TERMINAL = frozenset(s for s in JobState if s.is_terminal)
RAY_JOBS = {JobState.QUEUED: "PENDING", JobState.RUNNING: "RUNNING", JobState.SUCCEEDED: "SUCCEEDED", JobState.FAILED: "FAILED", JobState.CANCELLED: "STOPPED"}
