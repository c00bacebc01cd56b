"""Allowed roots on real files and symlinks: checks on the real path, reads by checked descriptor, creation without following links."""

from __future__ import annotations

import os

import pyarrow as pa
import pyarrow.fs as pafs
import pyarrow.parquet as pq
import pytest

from thresher.pipeline import io
from thresher.pipeline.confine import Roots
from thresher.pipeline.errors import InputError
from thresher.operators.validate import ValidateConfig


@pytest.fixture
def dirs(tmp_path):
    root, outside = tmp_path / "root", tmp_path / "outside"
    root.mkdir()
    outside.mkdir()
    return Roots.of([root]), root, outside


def test_a_path_is_checked_on_where_it_leads(dirs):
    roots, root, outside = dirs
    (root / "link").symlink_to(outside)
    assert roots.check("f", root / "new" / "file") == str(root / "new" / "file")
    with pytest.raises(InputError, match=r"f: .*link/x \(resolves to .*outside/x\) is outside the allowed roots"):
        roots.check("f", root / "link" / "x")
    with pytest.raises(InputError, match="outside the allowed roots"):
        roots.check("f", root / ".." / "outside")
    assert not Roots() and Roots().check("f", "/anywhere") == "/anywhere"  # no roots: not confined


def test_a_file_swapped_for_a_link_after_the_check_is_not_opened(dirs):
    roots, root, outside = dirs
    pq.write_table(pa.table({"text": ["inside"]}), root / "a.parquet")
    pq.write_table(pa.table({"text": ["secret"]}), outside / "a.parquet")
    found = io.locate([str(root / "a.parquet")], "auto", ValidateConfig(), roots)  # checked here
    (root / "a.parquet").unlink()
    (root / "a.parquet").symlink_to(outside / "a.parquet")  # ... and swapped before the read task opens it
    with pytest.raises(InputError, match="opened as .*outside/a.parquet"):
        list(io.read_parquet_row_groups(pa.table({"path": [found.files[0]], "row_group": [0], "offset": [0]}), pafs.LocalFileSystem(), found.schema, roots))
    with pytest.raises(InputError, match="input.paths: .*a.parquet .*is outside"):
        io.locate([str(root / "*.parquet")], "auto", ValidateConfig(), roots)
    assert io.read_texts([str(outside / "a.parquet")], "auto", "text", 10) == ["secret"]  # unconfined, the same read works


def test_directories_are_created_inside_and_never_through_a_link(dirs):
    roots, root, outside = dirs
    roots.makedirs("output.work_dir", root / "a" / "b" / "c")
    assert (root / "a" / "b" / "c").is_dir()
    (root / "a" / "link").symlink_to(outside)
    with pytest.raises(InputError, match="output.work_dir: .*outside the allowed roots"):
        roots.makedirs("output.work_dir", root / "a" / "link" / "new")
    assert list(outside.iterdir()) == []
    (root / "file").write_text("x")
    with pytest.raises(InputError, match="is a file, not a directory"):
        roots.makedirs("output.work_dir", root / "file" / "sub")
    with pytest.raises(InputError, match="is a file, not a directory"):
        Roots().makedirs("output.work_dir", root / "file" / "sub")


def test_a_component_made_a_link_while_creating_is_refused(dirs, monkeypatch):
    roots, root, outside = dirs
    real_mkdir = os.mkdir

    def racing_mkdir(name, mode=0o777, *, dir_fd=None):  # another process wins the race for "b" with a symlink
        if name == "b":
            os.symlink(outside, name, dir_fd=dir_fd)
            raise FileExistsError(name)
        return real_mkdir(name, mode, dir_fd=dir_fd)

    monkeypatch.setattr(os, "mkdir", racing_mkdir)
    with pytest.raises(InputError, match="became a symlink"):
        roots.makedirs("output.path", root / "a" / "b" / "c")
    assert list(outside.iterdir()) == []


def test_the_output_must_lie_inside_a_root_with_its_work_directory(dirs):
    roots, root, outside = dirs
    roots.check_output(root / "out", root / "out.work", "output.work_dir")
    with pytest.raises(InputError, match="output.path: .* not be one"):
        roots.check_output(root, root / "w", "output.work_dir")
    with pytest.raises(InputError, match=r"output.work_dir \(default: OUTPUT.work\)"):
        roots.check_output(root / "x", outside / "x.work", "output.work_dir (default: OUTPUT.work)")
