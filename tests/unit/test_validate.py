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
    parsed = parse_jsonl(lines, cfg)
    assert parsed.column(S.INVALID_REASON).to_pylist() == [None, "malformed JSON line", "text is not a string (int)", "malformed JSON line"]
    assert parsed.column("metadata").to_pylist()[0] == '{"src": "a"}'
    out = validate(parsed, cfg)
    assert out.column(S.INVALID_REASON).to_pylist()[0] is None
    assert out.column(S.INVALID_REASON).to_pylist()[1] == "malformed JSON line"
