import base64
import json

import pyarrow as pa

from thresher.operators import schema as S
from thresher.operators.validate import ValidateConfig, content_id, parse_jsonl, validate


def test_reasons_ids_and_tokens():
    batch = pa.table({"body": pa.array(["hello world", None, "   ", "x" * 101, "ok"], pa.string()), "lang": ["en"] * 5})
    out = validate(batch, ValidateConfig(text_column="body", max_bytes=100, bytes_per_token=4))
    rows = out.to_pylist()
    assert [r[S.INVALID_REASON] for r in rows] == [None, "null text", "empty text", "text over max_bytes (100)", None]
    assert rows[0][S.DOC_ID] == content_id("hello world") == content_id("hello world")
    assert rows[0][S.N_TOKENS] == 3  # ceil(11 bytes / 4)
    assert rows[0]["lang"] == "en" and rows[0][S.TEXT] == "hello world"
    assert len({r[S.DOC_ID] for r in rows}) == 5


def test_non_string_column_is_quarantined():
    out = validate(pa.table({"text": [1, 2]}), ValidateConfig())
    assert out.column(S.INVALID_REASON).to_pylist() == ["text is not a string (int64)"] * 2


def test_id_and_token_columns():
    out = validate(pa.table({"text": ["a b"], "id": [7], "toks": [42]}), ValidateConfig(id_column="id", token_column="toks"))
    assert out.to_pylist()[0][S.DOC_ID] == "7" and out.to_pylist()[0][S.N_TOKENS] == 42


def test_jsonl_lines_are_parsed_robustly():
    lines = pa.table({"text": ['{"text": "fine", "src": "a"}', "{broken", '{"text": 5}', '[1, 2]']})
    cfg = ValidateConfig()
    parsed = parse_jsonl(lines, cfg, line_column="text")
    assert parsed.column(S.INVALID_REASON).to_pylist() == [None, "malformed JSON line", "text is not a string (int)", "malformed JSON line"]
    assert parsed.column("metadata").to_pylist()[0] == '{"src": "a"}'
    out = validate(parsed, cfg)
    assert out.column(S.INVALID_REASON).to_pylist()[0] is None
    assert out.column(S.INVALID_REASON).to_pylist()[1] == "malformed JSON line"


def test_jsonl_bytes_that_cannot_be_documents_become_rows_with_reasons():
    lines = pa.table(
        {
            "line": pa.array(
                [
                    b'{"text": "caf\xc3\xa9", "id": "ok"}',
                    b'{"text": "bad \xff byte", "id": "utf8"}',  # invalid UTF-8 at byte 14
                    b'{"text": "lone \\ud800 half", "id": "sur"}',  # valid JSON, no UTF-8 form
                    '{"text": "line\u2028sep and \u0085 next", "id": "sep"}'.encode(),  # raw separators inside a string
                    b'{"text": "fine", "id": "meta", "note": "\\udfff"}',  # a surrogate in other keys survives escaped
                ],
                pa.binary(),
            )
        }
    )
    cfg = ValidateConfig(id_column="id")
    parsed = parse_jsonl(lines, cfg)
    reasons = parsed.column(S.INVALID_REASON).to_pylist()
    assert reasons == [None, "invalid UTF-8 at byte 14", "lone surrogate in text or id (not encodable as UTF-8)", None, None]
    meta = parsed.column("metadata").to_pylist()
    assert base64.b64decode(json.loads(meta[1])["raw_line_base64"]) == lines.column("line")[1].as_py()
    assert json.loads(meta[2])["raw_line"].startswith('{"text": "lone \\ud800')
    assert parsed.column("text").to_pylist()[3] == "line\u2028sep and \u0085 next"
    assert json.loads(meta[4]) == {"note": "\udfff"}
    out = validate(parsed, cfg)  # and the batch converts to Arrow/UTF-8 without raising
    assert out.column(S.DOC_ID).to_pylist()[0] == "ok" and out.column(S.INVALID_REASON).to_pylist()[3] is None
