"""Allowed roots: every local path a job opens lies under one of them, checked where it is opened.

The service confines its jobs to `allowed_roots`; the command line, with no
roots set, is not confined. A check on the spec's strings at submit time is
not enough: a glob or a directory can hold a symlink to a file elsewhere,
and a directory named by the spec can become a symlink after the check. So:

- a path is checked on its real path (`os.path.realpath`: every symlink
  followed) when the driver starts, input files after glob and directory
  expansion;
- a file is read through a descriptor whose target is checked after it is
  opened (`open_fd`: /proc/self/fd), so a swap between the check and the
  open reads nothing outside;
- a directory the job writes into is created one component at a time under
  an already-checked parent, never following a symlink it did not check
  (`makedirs`: `O_NOFOLLOW` with `dir_fd`), then checked again; the output
  is checked once more just before it is published.
"""

from __future__ import annotations

import errno
import os
from dataclasses import dataclass
from pathlib import Path

from .errors import InputError


@dataclass(frozen=True)
class Roots:
    """Resolved allowed roots; empty = not confined (every check passes)."""

    paths: tuple[str, ...] = ()

    @classmethod
    def of(cls, paths) -> "Roots":
        return cls(tuple(os.path.realpath(p) for p in paths))

    def __bool__(self) -> bool:
        return bool(self.paths)

    def contains(self, real: str) -> bool:
        return any(real == r or real.startswith(r.rstrip("/") + "/") for r in self.paths)

    def describe(self) -> str:
        return ", ".join(self.paths)

    def check(self, field: str, path: str | Path) -> str:
        """The real path of `path`, or InputError naming the field when it lies outside every root."""
        real = os.path.realpath(path)
        if self and not self.contains(real):
            shown = str(path) if real == os.path.abspath(path) else f"{path} (resolves to {real})"
            raise InputError(f"{field}: {shown} is outside the allowed roots ({self.describe()})")
        return real

    def check_tree(self, field: str, path: str | Path) -> str:
        """`check` for a path and, when it is a directory, everything under it (a link inside that points out is refused)."""
        real = self.check(field, path)
        if self and os.path.isdir(real):
            for p in Path(real).rglob("*"):  # links are checked, not descended into
                self.check(field, p)
        return real

    def check_output(self, out: str | Path, work: str | Path, work_field: str) -> None:
        """The output, the staging directory beside it and the work directory must all lie under a root."""
        if not self:
            return
        self.check("output.path", out)
        parent = os.path.dirname(os.path.abspath(out))
        if not self.contains(os.path.realpath(parent)):
            raise InputError(f"output.path: {out} must lie inside an allowed root, not be one: the job stages its output beside it, in {parent}")
        self.check(work_field, work)

    def open_fd(self, field: str, path: str) -> int:
        """A read-only descriptor of `path` whose opened file (not just its name) is checked against the roots."""
        fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
        if not self:
            return fd
        try:
            real = os.readlink(f"/proc/self/fd/{fd}")
        except OSError:  # no /proc (not Linux): the name is checked instead
            real = os.path.realpath(path)
        if not self.contains(real):
            os.close(fd)
            raise InputError(f"{field}: {path} (opened as {real}) is outside the allowed roots ({self.describe()})")
        return fd

    def makedirs(self, field: str, path: str | Path) -> None:
        """Create `path` and its missing parents; with roots, never through a symlink made after the check."""
        if not self:
            try:
                Path(path).mkdir(parents=True, exist_ok=True)
            except (NotADirectoryError, FileExistsError):
                raise InputError(f"{field}: cannot create {path}: a component of it is a file, not a directory") from None
            return
        path = os.path.abspath(path)
        existing, missing = path, []
        while not os.path.lexists(existing):
            existing, name = os.path.split(existing)
            missing.insert(0, name)
        real = self.check(field, existing)
        try:
            fd = os.open(real, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
        except NotADirectoryError:
            raise InputError(f"{field}: cannot create {path}: {existing} is a file, not a directory") from None
        try:
            for name in missing:
                try:
                    os.mkdir(name, 0o777, dir_fd=fd)
                except FileExistsError:
                    pass
                try:
                    child = os.open(name, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC, dir_fd=fd)
                except OSError as e:
                    if e.errno in (errno.ELOOP, errno.ENOTDIR):
                        raise InputError(f"{field}: {path}: {name} became a symlink or a file while the job created it") from None
                    raise
                os.close(fd)
                fd = child
        finally:
            os.close(fd)
        self.check(field, path)
