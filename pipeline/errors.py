"""One error hierarchy: what a user can fix, as one readable line and an exit code.

`ThresherError` and its subclasses are the only exceptions the CLI prints as a
single line; anything else is a bug and keeps its traceback.
"""

from __future__ import annotations


class ThresherError(Exception):
    """A job that cannot run or go on; the message is meant for the user."""

    exit_code = 1
    label = "error"


class SpecError(ThresherError, ValueError):
    """An invalid spec; the message names the offending field."""

    exit_code = 2
    label = "invalid spec"


class InputError(ThresherError, ValueError):
    """Unreadable or unusable input: the message names the path and why."""

    label = "input"


class JobError(ThresherError, RuntimeError):
    """A job that cannot go on (a locked work directory, a budget that cannot be met, ...)."""

    label = "job"


class Interrupted(ThresherError):
    """The job was stopped by a signal (Ctrl-C, SIGTERM); completed phases are kept for a rerun."""

    label = "interrupted"

    def __init__(self, phase: str, signum: int):
        super().__init__(f"in phase {phase}; rerun the same command to resume")
        self.phase = phase
        self.exit_code = 128 + signum
