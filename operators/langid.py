"""Language identification: an ISO 639-1 code and its probability for each document.

The model is py3langid's (a faster fork of langid.py): naive Bayes over byte
n-grams, 139 languages, shipped inside the wheel, so nothing is fetched at run
time. The probability is py3langid's `norm_probs`: a softmax of the log
posteriors divided by sqrt(bytes read). Plain softmax, as in langid.py, gives
1.0 to nearly every paragraph; the temperature keeps the score usable as a
threshold at any length.

The model splits some languages into varieties (Standard, Egyptian and Moroccan
Arabic; Mandarin, Wu and Cantonese), which would spread a Standard Arabic
text's probability over three labels. Varieties of a language with an ISO 639-1
code are merged into it and their probabilities summed. Languages without one
keep their ISO 639-3 code (e.g. `kab`, `vec`), and `zxx` marks text with no
language in it (numbers, markup).

Only the first MAX_CHARS characters are read: cost grows with length, and on
long documents the prefix gives the same label (bench/bench_langid.py measures
both). Empty or whitespace-only text gets lang "" and score 0. Text with no
n-gram the model knows (a lone "ok", emoji) gets a near-uniform distribution,
so its score is about 0.02 and its label means nothing.
"""

from __future__ import annotations

from functools import cache

import numpy as np
import pyarrow as pa
from py3langid.langid import MODEL_FILE, LanguageIdentifier

from . import schema as S

MAX_CHARS = 2000

# Model labels that are ISO 639-3 varieties (or the 639-2 code) of a language with an ISO 639-1 code.
_TO_639_1 = {
    "ary": "ar",
    "arz": "ar",
    "wuu": "zh",
    "yue": "zh",
    "uzs": "uz",
    "gug": "gn",
    "fuv": "ff",
    "sdh": "ku",
    "ltg": "lv",
    "kik": "ki",
}


@cache
def _identifier() -> LanguageIdentifier:
    """The model, loaded once per process (about 1.5 s)."""
    return LanguageIdentifier.from_model_file(MODEL_FILE, norm_probs=True)


def identify(texts: list[str], max_chars: int | None = MAX_CHARS) -> tuple[list[str], np.ndarray]:
    """The language code and its probability (float32, in [0, 1]) of each text.

    `max_chars=None` reads whole texts.
    """
    model = _identifier()
    langs = []
    scores = np.zeros(len(texts), np.float32)
    for i, text in enumerate(texts):
        if not text or text.isspace():
            langs.append("")
            continue
        merged: dict[str, float] = {}
        for label, p in model.rank(text[:max_chars]):
            code = _TO_639_1.get(label, label)
            merged[code] = merged.get(code, 0.0) + p
        best = max(merged, key=merged.__getitem__)  # a tie goes to the model's higher rank
        langs.append(best)
        scores[i] = merged[best]
    return langs, np.clip(scores, 0.0, 1.0)  # a sum of float32 probabilities can pass 1 by rounding


def lang_batch(batch: pa.Table, text_column: str = S.TEXT, max_chars: int | None = MAX_CHARS) -> pa.Table:
    """Append `lang` (string) and `q_lang_score` (float32): null for invalid rows and null text."""
    texts = batch.column(text_column).to_pylist()
    valid = np.array([t is not None for t in texts], dtype=bool)
    if S.INVALID_REASON in batch.column_names:
        valid &= np.asarray(batch.column(S.INVALID_REASON).is_null().to_numpy(zero_copy_only=False))
    langs, scores = identify([t for t, ok in zip(texts, valid) if ok], max_chars)
    lang = np.full(batch.num_rows, None, dtype=object)
    lang[valid] = langs
    score = np.zeros(batch.num_rows, np.float32)
    score[valid] = scores
    batch = batch.append_column(S.LANG, pa.array(lang.tolist(), pa.string()))
    return batch.append_column(S.Q_LANG_SCORE, pa.array(score, mask=~valid))
