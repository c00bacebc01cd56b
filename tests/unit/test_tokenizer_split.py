"""The tokenizer as a CPU stage ahead of the model: the ids the model would make itself, the same vectors."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pyarrow as pa
import pytest

from thresher.operators import schema as S
from thresher.operators.embed import TOKENS, Embedder, ModelRef, embed_batch, resolve_model, tokenize_batch, tokenizer_for

TEXTS = [
    "  the telescope FOUND a comet\n",
    "naïve café in 東京, 3.5 km away",
    "word " * 600,  # longer than the model's 256 tokens: truncated as the model truncates
    "short",
    "The court heard the appeal on Tuesday; the ruling is due next month. " * 8,
]


@pytest.fixture(scope="module")
def minilm():
    ref = resolve_model("minilm")
    return ref, Embedder(ref, device="cpu", batch_size=2, tokenizer=tokenizer_for(ref))


def _batch(texts: list[str], invalid: set[int] = frozenset()) -> pa.Table:
    reasons = ["empty" if i in invalid else None for i in range(len(texts))]
    return pa.table({S.TEXT: texts, S.INVALID_REASON: pa.array(reasons, pa.string())})


def test_ids_are_the_models_own(minilm):
    ref, emb = minilm
    tok = tokenizer_for(ref)
    assert tok.max_length == 256 and not tok.lowercase
    out = tokenize_batch(_batch(TEXTS + ["ignored"], invalid={len(TEXTS)}), tok)
    tokens = out.column(TOKENS)
    assert tokens.type == pa.list_(pa.int32())
    assert tokens.null_count == 1 and not tokens[len(TEXTS)].is_valid
    own = emb._model.preprocess(TEXTS)
    for i in range(len(TEXTS)):
        expected = own["input_ids"][i][own["attention_mask"][i].bool()].tolist()
        assert tokens[i].as_py() == expected
    assert len(tokens[2].as_py()) == 256


def test_vectors_from_ids_equal_vectors_from_text(minilm):
    ref, emb = minilm
    batch = _batch(TEXTS + ["not embedded"], invalid={len(TEXTS)})
    split = embed_batch(tokenize_batch(batch, tokenizer_for(ref)), emb)  # batches of 2, each padded to its own longest
    whole = embed_batch(batch, emb)
    assert TOKENS not in split.column_names
    assert split.column_names == whole.column_names
    a = np.array(split.column(S.EMB).to_pylist()[: len(TEXTS)], np.float32)
    b = np.array(whole.column(S.EMB).to_pylist()[: len(TEXTS)], np.float32)
    assert np.abs(a - b).max() < 1e-5
    assert split.column(S.EMB)[len(TEXTS)].as_py() is None


def test_models_that_tokenize_themselves(tmp_path, minilm):
    ref, _ = minilm
    assert tokenizer_for(ModelRef(str(tmp_path), "model2vec")) is None
    copy = tmp_path / "m"
    shutil.copytree(ref.path, copy)
    (copy / "sentence_bert_config.json").unlink()
    assert tokenizer_for(ModelRef(str(copy), "sentence-transformers")) is None
    spec = json.loads((copy / "tokenizer.json").read_text())
    spec["normalizer"]["lowercase"] = False  # a cased tokenizer: only do_lower_case makes "Paris" and "paris" one
    (copy / "tokenizer.json").write_text(json.dumps(spec))

    def ids(text: str, lower: bool) -> list[int]:
        (copy / "sentence_bert_config.json").write_text(json.dumps({"max_seq_length": 128, "do_lower_case": lower}))
        tok = tokenizer_for(ModelRef(str(copy), "sentence-transformers"))
        assert tok.max_length == 128 and tok.lowercase == lower
        return tokenize_batch(_batch([text]), tok).column(TOKENS)[0].as_py()

    assert ids("Paris", False) != ids("paris", False)
    assert ids("Paris", True) == ids("paris", True)
    stale = tokenizer_for(ref).__class__(tokenizer_for(ref).path, 64, False)
    with pytest.raises(ValueError, match="truncates at 64 tokens, the model at 256"):
        Embedder(ref, device="cpu", tokenizer=stale)
