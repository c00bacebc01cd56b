"""Read-time validation: a stable `doc_id` and a reason for every unusable row.

Invalid rows are kept with `invalid_reason` set (null for valid rows); the
runner routes them to the quarantine, so every input row is accounted for.
"""

from __future__ import annotations

import base64
import hashlib
import json
from dataclasses import dataclass

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from . import schema as S

REASON_NULL = "null text"
REASON_EMPTY = "empty text"
REASON_NOT_TEXT = "text is not a string"
REASON_OVERSIZED = "text over max_bytes"
REASON_BAD_JSON = "malformed JSON line"
REASON_BAD_UTF8 = "invalid UTF-8"
REASON_SURROGATE = "lone surrogate in text or id (not encodable as UTF-8)"


@dataclass(frozen=True)
class ValidateConfig:
    text_column: str = "text"
    id_column: str | None = None
    token_column: str | None = None
    max_bytes: int = 1_000_000
    bytes_per_token: float = 4.0


def content_id(text: str) -> str:
    """128-bit BLAKE2b of the UTF-8 text: the same document gets the same id everywhere."""
    return hashlib.blake2b(text.encode("utf-8"), digest_size=16).hexdigest()


def validate(batch: pa.Table, cfg: ValidateConfig) -> pa.Table:
    """Add `doc_id`, `n_tokens`, `invalid_reason`; rename the text column to `text`."""
    n = batch.num_rows
    reasons = np.full(n, None, dtype=object)
    if S.INVALID_REASON in batch.column_names:  # set upstream by the JSONL parser
        reasons[:] = batch.column(S.INVALID_REASON).to_numpy(zero_copy_only=False)
        batch = batch.drop_columns([S.INVALID_REASON])

    raw = batch.column(cfg.text_column)
    if pa.types.is_string(raw.type) or pa.types.is_large_string(raw.type):
        text = raw.cast(pa.string())
    else:
        type_name = str(raw.type)
        text = pa.nulls(n, pa.string())
        bad = ~np.asarray(pc.is_null(raw).to_numpy(zero_copy_only=False))
        reasons[bad & _isnone(reasons)] = f"{REASON_NOT_TEXT} ({type_name})"
    nbytes = pc.binary_length(text).to_numpy(zero_copy_only=False)
    is_null = np.asarray(pc.is_null(text).to_numpy(zero_copy_only=False))
    stripped_len = pc.utf8_length(pc.utf8_trim_whitespace(text)).fill_null(0).to_numpy(zero_copy_only=False)
    free = _isnone(reasons)
    reasons[free & is_null] = REASON_NULL
    free = _isnone(reasons)
    reasons[free & ~is_null & (stripped_len == 0)] = REASON_EMPTY
    free = _isnone(reasons)
    over = ~is_null & (np.nan_to_num(nbytes.astype(float), nan=0) > cfg.max_bytes)
    reasons[free & over] = f"{REASON_OVERSIZED} ({cfg.max_bytes})"

    if cfg.id_column:
        ids = pc.cast(batch.column(cfg.id_column), pa.string()).to_pylist()
    else:
        ids = [None] * n
    texts = text.to_pylist()
    doc_ids = [
        i if i is not None else content_id(t) if t is not None else _row_id(batch, r)
        for r, (i, t) in enumerate(zip(ids, texts))
    ]

    if cfg.token_column:
        tokens = pc.cast(batch.column(cfg.token_column), pa.int64()).fill_null(0)
    else:
        est = np.ceil(np.nan_to_num(nbytes.astype(float), nan=0.0) / cfg.bytes_per_token)
        tokens = pa.array(est.astype(np.int64))

    drop = [c for c in (cfg.text_column, cfg.id_column, S.DOC_ID, S.TEXT, S.N_TOKENS) if c]
    rest = batch.drop_columns([c for c in dict.fromkeys(drop) if c in batch.column_names])
    out = pa.table(
        {
            S.DOC_ID: pa.array(doc_ids, pa.string()),
            S.TEXT: text,
            S.N_TOKENS: tokens,
            S.INVALID_REASON: pa.array(reasons.tolist(), pa.string()),
        }
    )
    for name in rest.column_names:
        out = out.append_column(name, rest.column(name))
    return out


def parse_jsonl(lines: pa.Table, cfg: ValidateConfig, line_column: str = "line") -> pa.Table:
    """Parse one JSON object per line; a line that cannot be a document becomes a row with a reason.

    Lines arrive as raw bytes (or str) and are decoded here, one at a time,
    so nothing raises: invalid UTF-8 (`invalid UTF-8 at byte N`, the line kept
    base64-encoded in `metadata`), malformed JSON, a non-object, or a text or
    id holding a lone surrogate escape (`"\\ud800"`: valid JSON, but not
    encodable as UTF-8; quarantined, not replaced, so the text is never
    silently changed). The text, id and token fields become columns; every
    other key travels in one JSON string column `metadata` (ASCII-escaped,
    so surrogates there survive), so every batch has the same schema whatever
    keys its lines carry.
    """
    fields = [f for f in dict.fromkeys((cfg.text_column, cfg.id_column, cfg.token_column)) if f]
    cols: dict[str, list] = {f: [] for f in fields}
    meta: list[str | None] = []
    reasons: list[str | None] = []
    for raw in lines.column(line_column).to_pylist():
        obj, reason, keep = _parse_line(raw)
        if obj is None:
            for f in fields:
                cols[f].append(None)
            meta.append(json.dumps(keep))
            reasons.append(reason)
            continue
        for f in fields:
            cols[f].append(obj.pop(f, None))
        meta.append(json.dumps(obj, sort_keys=True) if obj else None)
        t = cols[cfg.text_column][-1]
        i = cols[cfg.id_column][-1] if cfg.id_column else None
        if t is not None and not isinstance(t, str):
            reasons.append(f"{REASON_NOT_TEXT} ({type(t).__name__})")
        elif not (_encodable(t) and _encodable(i)):
            reasons.append(REASON_SURROGATE)
            cols[cfg.text_column][-1] = None
            if cfg.id_column:
                cols[cfg.id_column][-1] = None
            meta[-1] = json.dumps({"raw_line": raw if isinstance(raw, str) else raw.decode("utf-8")})
        else:
            reasons.append(None)
    texts = cols[cfg.text_column]
    table = {cfg.text_column: pa.array([t if isinstance(t, str) else None for t in texts], pa.string())}
    if cfg.id_column:
        table[cfg.id_column] = pa.array([None if v is None else str(v) for v in cols[cfg.id_column]], pa.string())
    if cfg.token_column:
        table[cfg.token_column] = pa.array(
            [v if isinstance(v, int) and not isinstance(v, bool) else None for v in cols[cfg.token_column]], pa.int64()
        )
    table["metadata"] = pa.array(meta, pa.string())
    table[S.INVALID_REASON] = pa.array(reasons, pa.string())
    for position in (S.INPUT_FILE, S.INPUT_OFFSET):  # where each line came from, when the reader says
        if position in lines.column_names:
            table[position] = lines.column(position)
    return pa.table(table)


def _parse_line(raw: bytes | str) -> tuple[dict | None, str | None, dict | None]:
    """(object, None, None) for a JSON object line, else (None, reason, what of the line to keep)."""
    if isinstance(raw, bytes):
        try:
            line = raw.decode("utf-8")
        except UnicodeDecodeError as e:
            return None, f"{REASON_BAD_UTF8} at byte {e.start}", {"raw_line_base64": base64.b64encode(raw).decode("ascii")}
    else:
        line = raw
    try:
        obj = json.loads(line)
    except ValueError:
        obj = None
    if not isinstance(obj, dict):
        return None, REASON_BAD_JSON, {"raw_line": line}
    return obj, None, None


def _encodable(v) -> bool:
    """False for a str holding a lone surrogate (it has no UTF-8 form)."""
    if not isinstance(v, str):
        return True
    try:
        v.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def lift_json_keys(batch: pa.Table, numeric: list[str] = (), text: list[str] = (), metadata_column: str = "metadata") -> pa.Table:
    """Lift top-level keys of the JSONL `metadata` column into real columns, so they read like Parquet columns.

    The caller says how a key is used: `numeric` keys (filters, score columns)
    become float64, null where a line lacks the key or its value is not a
    number; `text` keys (a domain) become strings. Typing by use, not by the
    values, gives every batch the same schema.
    """
    import polars as pl

    if not numeric and not text:
        return batch
    meta = pl.from_arrow(batch.column(metadata_column).combine_chunks())
    for key, dtype in [*((k, pl.Float64) for k in numeric), *((k, pl.String) for k in text)]:
        raw = meta.str.json_path_match(f"$[{json.dumps(key)}]")
        batch = batch.append_column(key, raw.cast(dtype, strict=False).to_arrow())
    return batch


def _isnone(a: np.ndarray) -> np.ndarray:
    return np.array([x is None for x in a], dtype=bool)


def _row_id(batch: pa.Table, r: int) -> str:
    """Id for a row with no usable text and no id: a hash of its input position, else of the whole row."""
    names = [S.INPUT_FILE, S.INPUT_OFFSET] if S.INPUT_OFFSET in batch.column_names else batch.column_names
    row = {k: v[0] for k, v in batch.select(names).slice(r, 1).to_pydict().items()}
    return "row-" + hashlib.blake2b(repr(sorted(row.items())).encode(), digest_size=16).hexdigest()
