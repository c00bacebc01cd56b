"""The terminal side of `thresher run`: one line per phase with rows, rate and ETA.

It draws from the run events alone (what a service sees too). While a job
runs, the runner sends file descriptors 1 and 2 to WORK/job.log, so Ray's own
output lands there; this console writes to a copy of the terminal taken
before that.
"""

from __future__ import annotations

import os

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TaskID, TextColumn, TimeElapsedColumn, TimeRemainingColumn


class JobConsole:
    def __init__(self, live: bool = True):
        self.terminal = os.fdopen(os.dup(2), "w", buffering=1)
        self.console = Console(file=self.terminal, highlight=False)
        self.live = live and self.console.is_terminal
        self.progress = Progress(
            TextColumn("[bold]{task.fields[phase]:<9}"),
            BarColumn(),
            MofNCompleteColumn(),
            TextColumn("{task.fields[rate]}"),
            TimeElapsedColumn(),
            TimeRemainingColumn(),
            console=self.console,
            disable=not self.live,
        )
        self.tasks: dict[str, TaskID] = {}
        self.rows: dict[str, int] = {}

    def __enter__(self) -> "JobConsole":
        self.progress.start()
        return self

    def __exit__(self, *exc) -> None:
        self.progress.stop()
        self.terminal.flush()

    def on_event(self, e: dict) -> None:
        kind, phase = e["event"], e.get("phase")
        if kind == "phase_start":
            self.tasks[phase] = self.progress.add_task(phase, total=None, phase=phase, rate="")
        elif kind == "progress" and phase in self.tasks:
            self.rows[phase] = e["rows_done"]
            rate = f"{e['rate']:,.0f} rows/s" if e.get("rate") else ""
            self.progress.update(self.tasks[phase], completed=e["rows_done"], total=e["rows_total"], rate=rate)
        elif kind == "phase_end":
            rows = e.get("rows")
            done = f"{rows:,} rows in {e['seconds']:.1f}s ({rows / max(e['seconds'], 1e-9):,.0f} rows/s)" if rows else f"done in {e['seconds']:.1f}s"
            if phase in self.tasks:
                n = rows or self.rows.get(phase) or 1
                self.progress.update(self.tasks[phase], completed=n, total=n, rate="done")
            if not self.live:
                self.console.print(f"[{phase}] {done}", markup=False)
        elif kind == "phase_reused":
            self.console.print(f"[{phase}] reused ({phase}-{e['key']})", markup=False)
        elif kind == "warning":
            self.console.print(f"warning: {e['message']}", style="yellow", markup=False)

    def print(self, line: str) -> None:
        self.console.print(line, markup=False)
