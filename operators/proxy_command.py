"""A proxy evaluator that is someone else's program: train whatever you like, print a loss.

Teams with their own proxy (a real tokenizer and model, a cluster job, a
held-out benchmark) plug it in as a command configured by the operator
(`proxy_commands` in thresher's settings), never by a job spec. Each call
writes the candidate selection and the validation texts to a private
temporary directory and runs

    ARGV... SELECTION.parquet VALIDATION.parquet

with no shell: SELECTION has columns text and sel_copies (the copies a run
gives each text, possibly fractional), VALIDATION has text. The command
prints the loss (lower = better) as the last line of stdout and exits 0;
anything else is a `ProxyCommandError` naming the command, its exit status
and the last line of its stderr.
"""

from __future__ import annotations

import math
import subprocess
import tempfile
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq


class ProxyCommandError(RuntimeError):
    """The configured proxy command failed, timed out or printed no number."""


class CommandProxy:
    name = "command"

    def __init__(self, label: str, argv: Sequence[str], timeout_s: float = 600.0):
        if not argv:
            raise ValueError(f"proxy command {label!r} has an empty argv")
        self.label, self.argv, self.timeout_s = label, list(argv), float(timeout_s)

    def loss(self, train_texts: Sequence[str], valid_texts: Sequence[str], train_weights: np.ndarray | None = None) -> float:
        weights = np.ones(len(train_texts)) if train_weights is None else np.asarray(train_weights, np.float64)
        if len(train_texts) == 0 or weights.shape != (len(train_texts),):
            raise ValueError(f"proxy command {self.label!r}: needs training texts and one weight per text")
        with tempfile.TemporaryDirectory(prefix="thresher-proxy-") as tmp:
            selection, validation = Path(tmp) / "selection.parquet", Path(tmp) / "validation.parquet"
            pq.write_table(pa.table({"text": pa.array(list(train_texts), pa.string()), "sel_copies": weights}), selection)
            pq.write_table(pa.table({"text": pa.array(list(valid_texts), pa.string())}), validation)
            try:
                done = subprocess.run([*self.argv, str(selection), str(validation)], capture_output=True, text=True, timeout=self.timeout_s, cwd=tmp)
            except FileNotFoundError:
                raise ProxyCommandError(f"proxy command {self.label!r}: {self.argv[0]} not found") from None
            except subprocess.TimeoutExpired:
                raise ProxyCommandError(f"proxy command {self.label!r} ran past {self.timeout_s:g}s (proxy_timeout_s)") from None
        if done.returncode != 0:
            last = (done.stderr.strip().splitlines() or ["(no stderr)"])[-1]
            raise ProxyCommandError(f"proxy command {self.label!r} exited {done.returncode}: {last}")
        lines = done.stdout.strip().splitlines()
        try:
            value = float(lines[-1])
        except (IndexError, ValueError):
            raise ProxyCommandError(f"proxy command {self.label!r} printed no number on its last line (got {lines[-1][:80] if lines else 'nothing'!r})") from None
        if not math.isfinite(value):
            raise ProxyCommandError(f"proxy command {self.label!r} printed {value}, not a finite loss")
        return value

    def per_doc_loss(self, train_texts: Sequence[str], valid_texts: Sequence[str], train_weights: np.ndarray | None = None) -> np.ndarray:
        raise ProxyCommandError(f"proxy command {self.label!r} gives one loss per selection, not per document (iterative kMQ needs a built-in proxy)")
