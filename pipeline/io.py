"""Finding input files and reading them as a Ray Dataset of raw rows."""

from __future__ import annotations

import fnmatch
import json
import os
import posixpath
from dataclasses import dataclass

import pyarrow as pa
import pyarrow.fs as pafs
import ray.data

from thresher.operators import schema as S
from thresher.operators.validate import ValidateConfig, parse_jsonl

from .confine import Roots
from .errors import InputError

PARQUET_EXT = (".parquet", ".pq")
COMPRESSED_EXT = (".gz", ".zst")  # read as streams (pyarrow detects the codec by extension)
JSONL_EXT = tuple(e + c for e in (".jsonl", ".json", ".ndjson") for c in ("", *COMPRESSED_EXT))
JSONL_RANGE_BYTES = 32 * 2**20  # an uncompressed JSONL file is read in byte ranges of this size
READ_BATCH_BYTES = 32 * 2**20  # a Parquet read yields blocks of about this many uncompressed bytes (at most 65,536 rows)
RESERVED = (S.DOC_ID, S.TEXT, S.N_TOKENS, S.INVALID_REASON, S.INPUT_FILE, S.INPUT_OFFSET, S.EMB)  # input columns that would be overwritten
PARQUET_READ_BLOCKS = 4096  # at most this many read blocks; a block reads one or more row groups
BOM = b"\xef\xbb\xbf"


def filesystem_for(uri: str) -> tuple[pafs.FileSystem, str]:
    """A pyarrow filesystem and the path inside it, for a local path or any URI pyarrow knows."""
    if "://" not in uri:
        return pafs.LocalFileSystem(), posixpath.abspath(uri)
    try:
        return pafs.FileSystem.from_uri(uri)
    except Exception as e:  # pyarrow raises several types for unknown schemes or bad credentials
        raise InputError(f"cannot open {uri}: {e}") from None


def expand(paths: list[str]) -> tuple[pafs.FileSystem, list[str]]:
    """Files, directories (recursed) and globs (in the last path component) to a sorted file list."""
    files: list[str] = []
    fs0 = None
    for uri in paths:
        fs, path = filesystem_for(uri)
        if fs0 is not None and fs.type_name != fs0.type_name:
            raise InputError("all input paths must be on one filesystem")
        fs0 = fs
        parent, leaf = posixpath.split(path)
        if any(c in leaf for c in "*?["):
            infos = fs.get_file_info(pafs.FileSelector(parent, allow_not_found=True))
            matched = [i.path for i in infos if i.is_file and fnmatch.fnmatch(posixpath.basename(i.path), leaf)]
            if not matched:
                raise InputError(f"{uri}: no file matches")
            files += matched
            continue
        info = fs.get_file_info(path)
        if info.type == pafs.FileType.NotFound:
            raise InputError(f"{uri}: no such file or directory")
        if info.type == pafs.FileType.Directory:
            infos = fs.get_file_info(pafs.FileSelector(path, recursive=True))
            found = [i.path for i in infos if i.is_file and i.path.endswith(PARQUET_EXT + JSONL_EXT)]
            if not found:
                raise InputError(f"{uri}: directory holds no .parquet or .jsonl files")
            files += found
        else:
            files.append(path)
    return fs0, sorted(dict.fromkeys(files))


def detect_format(files: list[str], declared: str) -> str:
    if declared != "auto":
        return declared
    kinds = {"parquet" if f.endswith(PARQUET_EXT) else "jsonl" if f.endswith(JSONL_EXT) else None for f in files}
    if None in kinds:
        bad = next(f for f in files if not f.endswith(PARQUET_EXT + JSONL_EXT))
        raise InputError(f"{bad}: unknown extension; set input.format to parquet or jsonl")
    if len(kinds) > 1:
        raise InputError("input mixes Parquet and JSONL files; give one format per job")
    return kinds.pop()


@dataclass(frozen=True)
class InputFiles:
    fs: pafs.FileSystem
    files: list[str]
    format: str
    directories: tuple[str, ...] = ()  # input paths that were directories (listed recursively)
    schema: pa.Schema | None = None  # Parquet: unified over every file's footer
    rows: int | None = None  # Parquet: rows in all files (footers); JSONL: unknown until read
    row_groups: tuple[tuple[int, ...], ...] = ()  # Parquet: rows of each row group, per file
    roots: Roots = Roots()  # where the files must lie (checked again at every open); empty = anywhere
    empty: tuple[str, ...] = ()  # files with no rows (an empty upstream shard): skipped, and said so, never refused

    def fingerprint(self) -> list[dict]:
        """Every input file with its size and modification time: what a cache of this input depends on.

        Object stores report the last-modified time pyarrow exposes; a rewritten
        object changes it even when its size does not.
        """
        infos = self.fs.get_file_info(self.files)
        return [{"path": i.path, "size": i.size, "mtime_ns": i.mtime_ns} for i in infos]



def locate(paths: list[str], fmt: str, cfg: ValidateConfig, roots: Roots = Roots(), field: str = "input.paths") -> InputFiles:
    """Find and check the input before any work starts: files exist (inside the roots), one format, columns present."""
    fs, files = expand(paths)
    if roots:
        if fs.type_name != "local":
            raise InputError(f"{field}: {paths[0]}: only local paths can be confined to the allowed roots")
        for f in files:
            roots.check(field, f)
    fmt = detect_format(files, fmt)
    schema, row_groups = check_parquet(fs, files, cfg, roots) if fmt == "parquet" else (None, ())
    empty = tuple(f for f, info in zip(files, fs.get_file_info(files)) if info.size == 0) if fmt == "jsonl" else tuple(f for f, g in zip(files, row_groups) if not sum(g))
    if len(empty) == len(files):
        raise InputError(f"{field}: every input file is empty ({len(files)} files, no rows)")
    if fmt == "parquet":
        row_groups = tuple(g for g in row_groups if sum(g))
    files = [f for f in files if f not in empty]
    rows = sum(map(sum, row_groups)) if fmt == "parquet" else None
    dirs = tuple(p for _, p in map(filesystem_for, paths) if fs.get_file_info(p).type == pafs.FileType.Directory)
    return InputFiles(fs, files, fmt, dirs, schema, rows, row_groups, roots, empty)


def open_input(fs: pafs.FileSystem, path: str, roots: Roots, stream: bool = False):
    """An input file, opened for random access (or as a stream, decompressed by its extension).

    With roots, the file is opened by descriptor and the opened file checked
    (`Roots.open_fd`), so a symlink swapped in after the driver's check is not read.
    """
    if not roots:
        return fs.open_input_stream(path) if stream else fs.open_input_file(path)
    f = pa.PythonFile(os.fdopen(roots.open_fd("input file", path), "rb"), mode="r")
    codec = pa.Codec.detect(path) if stream and path.endswith(COMPRESSED_EXT) else None
    return pa.CompressedInputStream(f, codec) if codec is not None else f


def input_columns(found: InputFiles, sample_lines: int = 1000) -> tuple[set[str], str]:
    """The columns (Parquet) or JSON keys (JSONL, from the first lines of each file) the input offers,
    and where they were read from, for checking a spec before any work."""
    if found.format == "parquet":
        return set(found.schema.names), f"the input's Parquet files ({found.files[0]}{' and more' if len(found.files) > 1 else ''})"
    keys: set[str] = set()
    for path in found.files[:8]:
        with open_input(found.fs, path, found.roots, stream=True) as fh:
            head = fh.read(8 * 2**20).removeprefix(BOM).split(b"\n")[:sample_lines]
        for line in head:
            try:
                obj = json.loads(line)
            except ValueError:
                continue
            if isinstance(obj, dict):
                keys.update(obj)
    where = f"the first {sample_lines} lines of {found.files[0]}" + (f" and {min(len(found.files), 8) - 1} more files" if len(found.files) > 1 else "")
    return keys, where


def check_not_inside(found: InputFiles, *outputs: str) -> None:
    """Refuse an output or work directory that is an input, holds an input, or lies inside an input directory."""
    if found.fs.type_name != "local":
        return
    files = [os.path.realpath(f) for f in found.files]
    dirs = [os.path.realpath(d) for d in found.directories]
    for out in outputs:
        o = os.path.realpath(out)
        for f in files:
            if f == o or f.startswith(o.rstrip("/") + "/"):
                raise InputError(f"{out} holds the input file {f}; writing there would delete or read back the input")
        for d in dirs:
            if o == d or o.startswith(d.rstrip("/") + "/"):
                raise InputError(f"{out} lies inside the input directory {d}; a rerun would read its own output as input")


def read_items(found: InputFiles) -> list[dict]:
    """The units a read task takes, in input order: a Parquet row group ({path, row_group, offset: its first row})
    or a JSONL byte range ({path, start, end}; end -1 = the whole file, streamed)."""
    if found.format == "parquet":
        return [{"path": path, "row_group": i, "offset": sum(sizes[:i])} for path, sizes in zip(found.files, found.row_groups) for i in range(len(sizes))]
    return jsonl_ranges(found)


def read_raw(found: InputFiles, cfg: ValidateConfig, items: list[dict] | None = None) -> ray.data.Dataset:
    """The input (or only the `read_items` given) as a Dataset of raw rows, each with its `input_file` and `input_offset`.

    Parquet: the files' columns (unified schema); JSONL: the text, id and token
    fields, `metadata` and the parse reasons. The position gives every row a
    place in input order, so "the first of two rows with one id" is defined.
    """
    items = read_items(found) if items is None else items
    if found.format == "parquet":
        return ray.data.from_items(items, override_num_blocks=max(1, min(len(items), PARQUET_READ_BLOCKS))).map_batches(
            read_parquet_row_groups, fn_kwargs={"fs": found.fs, "schema": found.schema, "roots": found.roots}, batch_format="pyarrow", batch_size=1
        )
    ranges = items
    lines = ray.data.from_items(ranges, override_num_blocks=max(1, len(ranges))).map_batches(
        read_jsonl_ranges, fn_kwargs={"fs": found.fs, "roots": found.roots}, batch_format="pyarrow", batch_size=1
    )
    return lines.map_batches(parse_jsonl, fn_kwargs={"cfg": cfg, "line_column": "line"}, batch_format="pyarrow", batch_size=4096)


def read_parquet_row_groups(items: pa.Table, fs: pafs.FileSystem, schema: pa.Schema, roots: Roots = Roots()):
    """Ray task: row groups of Parquet files in the unified schema (a column a file lacks is null), with positions.

    Blocks are cut to about READ_BATCH_BYTES, so a row group of long documents
    does not become one huge block; the row group itself is decompressed
    whole, so input row groups must be of bounded size.
    """
    import pyarrow.parquet as pq

    for item in items.to_pylist():
        with open_input(fs, item["path"], roots) as fh:
            offset = item["offset"]
            pf = pq.ParquetFile(fh)
            meta = pf.metadata.row_group(item["row_group"])
            rows = max(1, min(65536, int(meta.num_rows * READ_BATCH_BYTES / max(meta.total_byte_size, 1))))
            for rb in pf.iter_batches(batch_size=rows, row_groups=[item["row_group"]]):
                t = pa.Table.from_batches([rb])
                t = pa.table({f.name: t.column(f.name) if f.name in t.column_names else pa.nulls(t.num_rows, f.type) for f in schema})
                yield _with_position(t, item["path"], offset)
                offset += t.num_rows


def _with_position(t: pa.Table, path: str, offsets) -> pa.Table:
    """t with input_file and input_offset (a start row for Parquet, each line's byte offset for JSONL)."""
    import numpy as np

    if isinstance(offsets, int):
        offsets = np.arange(offsets, offsets + t.num_rows, dtype=np.int64)
    return t.append_column(S.INPUT_FILE, pa.array([path] * t.num_rows, pa.string())).append_column(S.INPUT_OFFSET, pa.array(offsets, pa.int64()))


def jsonl_ranges(found: InputFiles) -> list[dict]:
    """Byte ranges to read in parallel: about JSONL_RANGE_BYTES each; a compressed file is one range."""
    ranges = []
    for info in found.fs.get_file_info(found.files):
        if info.path.endswith(COMPRESSED_EXT) or info.size <= JSONL_RANGE_BYTES:
            ranges.append({"path": info.path, "start": 0, "end": -1})
        else:
            ranges += [{"path": info.path, "start": a, "end": min(a + JSONL_RANGE_BYTES, info.size)} for a in range(0, info.size, JSONL_RANGE_BYTES)]
    return ranges


def read_jsonl_ranges(items: pa.Table, fs: pafs.FileSystem, roots: Roots = Roots()):
    """Ray task: the lines (raw bytes) of byte ranges, split on b'\\n' only.

    A range owns the lines that start inside it: it skips the partial line
    it starts in (unless it starts the file) and reads past its end to finish
    its last line. Bytes are never decoded here, so a bad byte becomes one
    quarantined row (`parse_jsonl`), not a failed task. Unicode line
    separators (U+2028, U+0085) inside JSON strings are not line breaks; a
    UTF-8 BOM at the start of a file and a trailing CR are dropped; blank
    lines are skipped.
    """
    for item in items.to_pylist():
        path, start, end = item["path"], item["start"], item["end"]
        if end < 0:  # a whole (possibly compressed) file, streamed
            with open_input(fs, path, roots, stream=True) as fh:
                yield from (_with_position(t.drop_columns(["offset"]), path, t.column("offset")) for t in _line_tables(_chunks(fh), strip_bom=True))
            continue
        with open_input(fs, path, roots) as fh:
            skip_partial = start > 0 and fh.read_at(1, start - 1) != b"\n"
            fh.seek(start)
            data = fh.read(end - start)
            while not data.endswith(b"\n"):
                more = fh.read(1 << 16)
                if not more:
                    break
                nl = more.find(b"\n")
                data += more if nl < 0 else more[: nl + 1]
                if nl >= 0:
                    break
        if skip_partial:
            nl = data.find(b"\n")
            start += len(data) if nl < 0 else nl + 1
            data = b"" if nl < 0 else data[nl + 1 :]
        for t in _line_tables([data], strip_bom=start == 0, base=start):
            yield _with_position(t.drop_columns(["offset"]), path, t.column("offset"))


def _chunks(fh, size: int = 8 * 2**20):
    while chunk := fh.read(size):
        yield chunk


def _line_tables(chunks, strip_bom: bool, rows: int = 65536, base: int = 0):
    """Split byte chunks into lines (a line may span chunks); yield tables of at most `rows` lines.

    Each line comes with `offset`, the byte offset of its start from `base`
    (the file's start, BOM included); blank lines are dropped.
    """
    pending, lines, offsets, first, pos = b"", [], [], True, base
    for chunk in chunks:
        if first and strip_bom and chunk.startswith(BOM):
            chunk = chunk[len(BOM) :]
            pos += len(BOM)
        first = False
        parts = (pending + chunk).split(b"\n")
        pending = parts.pop()
        for part in parts:
            lines.append(part)
            offsets.append(pos)
            pos += len(part) + 1
        if len(lines) >= rows:
            yield _lines_table(lines, offsets)
            lines, offsets = [], []
    if pending:
        lines.append(pending)
        offsets.append(pos)
    if lines:
        yield _lines_table(lines, offsets)


def _lines_table(lines: list[bytes], offsets: list[int]) -> pa.Table:
    keep = [i for i, ln in enumerate(lines) if ln.strip()]
    return pa.table({"line": pa.array([lines[i].removesuffix(b"\r") for i in keep], pa.binary()), "offset": pa.array([offsets[i] for i in keep], pa.int64())})


def check_parquet(fs: pafs.FileSystem, files: list[str], cfg: ValidateConfig, roots: Roots = Roots()) -> tuple[pa.Schema, tuple[tuple[int, ...], ...]]:
    """Open every file's footer before any work; returns the unified schema and each file's row-group sizes.

    Refused, in one line naming the file: unreadable (corrupt, truncated, not
    Parquet), a missing text / id / token column, a text column that
    is not a string, and a column whose type differs between two files (both
    named). Columns present in some files only are fine: the others read them
    as null. Footers are read by a thread pool (I/O bound, also on object stores).
    """
    import pyarrow.parquet as pq
    from concurrent.futures import ThreadPoolExecutor

    def footer(path: str):
        try:
            with open_input(fs, path, roots) as fh:
                meta = pq.ParquetFile(fh).metadata
                return meta.schema.to_arrow_schema(), tuple(meta.row_group(i).num_rows for i in range(meta.num_row_groups))
        except InputError:
            raise
        except Exception as e:  # pyarrow raises ArrowInvalid, OSError, ... for a bad file
            raise InputError(f"{path}: not a readable Parquet file ({e})") from None

    with ThreadPoolExecutor(max_workers=16) as pool:
        footers = list(pool.map(footer, files))
    seen: dict[str, tuple[pa.DataType, str]] = {}
    for path, (schema, groups) in zip(files, footers):
        if sum(groups) == 0:  # an empty upstream shard: skipped by `locate` (and said), its schema not held against it
            continue
        for field in (cfg.text_column, cfg.id_column, cfg.token_column):
            if field and field not in schema.names:
                raise InputError(f"{path}: no column {field!r} (columns: {', '.join(schema.names)})")
        taken = [c for c in RESERVED if c in schema.names and c not in (cfg.text_column, cfg.id_column, cfg.token_column)]
        if taken:
            raise InputError(f"{path}: column {taken[0]!r} is a name thresher writes; rename it in the input (or name it as input.id_column / token_column)")
        text_type = schema.field(cfg.text_column).type
        if not (pa.types.is_string(text_type) or pa.types.is_large_string(text_type)):
            raise InputError(f"{path}: input.text_column {cfg.text_column!r} is {text_type}, not a string")
        for f in schema:
            if f.name in seen and not seen[f.name][0].equals(f.type):
                first_type, first_path = seen[f.name]
                raise InputError(f"column {f.name!r} is {first_type} in {first_path} but {f.type} in {path}; make the files agree")
            seen.setdefault(f.name, (f.type, path))
    used = [sch for sch, groups in footers if sum(groups)]
    return pa.unify_schemas(used) if used else footers[0][0], tuple(groups for _, groups in footers)


def read_texts(paths: list[str], fmt: str, text_column: str, max_docs: int, roots: Roots = Roots()) -> list[str]:
    """Up to max_docs valid texts of a side corpus (reference or target), read on the driver."""
    import pyarrow.parquet as pq

    cfg = ValidateConfig(text_column=text_column)
    found = locate(paths, fmt, cfg, roots)
    texts: list[str] = []
    for path in found.files:
        if found.format == "parquet":
            batches = (b.column(0) for b in pq.ParquetFile(open_input(found.fs, path, roots)).iter_batches(columns=[text_column], batch_size=8192))
        else:
            with open_input(found.fs, path, roots, stream=True) as fh:
                batches = (parse_jsonl(t, cfg, line_column="line").column(text_column) for t in _line_tables(_chunks(fh), strip_bom=True))
        for col in batches:
            texts += [t for t in col.to_pylist() if isinstance(t, str) and t.strip()]
            if len(texts) >= max_docs:
                return texts[:max_docs]
    if not texts:
        raise InputError(f"{', '.join(paths)}: no usable text in column {text_column!r}")
    return texts
