"""Heuristic text signals, vectorised with polars string kernels.

Definitions follow the Gopher quality rules (Rae et al. 2021) where one exists:
words are whitespace-separated tokens; the symbol ratio counts '#' and
ellipses ('...' or '…') per word; stop words are Gopher's eight
(the, be, to, of, and, that, have, with); the alphabetic ratio is the fraction
of words holding at least one letter; duplicate lines are non-empty lines
(whitespace-trimmed) equal to an earlier line of the same document.
Rows with null text get null signals.
"""

from __future__ import annotations

import polars as pl
import pyarrow as pa

from . import schema as S
from .heuristic_rules import GOPHER_STOP_WORDS

SIGNALS = (
    S.SIG_N_CHARS,
    S.SIG_N_WORDS,
    S.SIG_MEAN_WORD_LEN,
    S.SIG_SYMBOL_RATIO,
    S.SIG_DUP_LINE_FRAC,
    S.SIG_ALPHA_RATIO,
    S.SIG_N_STOPWORDS,
    S.SIG_STOPWORD_RATIO,
    S.SIG_UNIQUE_WORD_FRAC,
)


def _expressions() -> list[pl.Expr]:
    # Counts come from regex matches on the text where a word list is not needed; the lists
    # that are needed (lower-cased words, lines) are shared through lazy CSE.
    text = pl.col(S.TEXT)
    n_words = text.str.count_matches(r"\S+")
    per_word = pl.max_horizontal(n_words, pl.lit(1))
    lower_words = text.str.to_lowercase().str.extract_all(r"\S+")
    n_stopwords = lower_words.list.eval(pl.element().is_in(GOPHER_STOP_WORDS)).list.sum()
    lines = (
        text.str.split("\n")
        .list.eval(pl.element().str.strip_chars())
        .list.eval(pl.element().filter(pl.element() != ""))
    )
    n_lines = lines.list.len()
    return [
        text.str.len_chars().cast(pl.Int64).alias(S.SIG_N_CHARS),
        n_words.cast(pl.Int64).alias(S.SIG_N_WORDS),
        ((text.str.len_chars() - text.str.count_matches(r"\s")) / per_word).alias(S.SIG_MEAN_WORD_LEN),
        (text.str.count_matches(r"#|\.\.\.|…") / per_word).alias(S.SIG_SYMBOL_RATIO),
        pl.when(n_lines > 0)
        .then(1.0 - lines.list.n_unique() / n_lines)
        .otherwise(0.0)
        .alias(S.SIG_DUP_LINE_FRAC),
        # A match of \S*\p{L}\S* is exactly one whole word holding a letter.
        (text.str.count_matches(r"\S*\p{L}\S*") / per_word).alias(S.SIG_ALPHA_RATIO),
        n_stopwords.cast(pl.Int64).alias(S.SIG_N_STOPWORDS),
        (n_stopwords / per_word).alias(S.SIG_STOPWORD_RATIO),
        pl.when(n_words > 0)
        .then(lower_words.list.n_unique() / n_words)
        .otherwise(0.0)
        .alias(S.SIG_UNIQUE_WORD_FRAC),
    ]


def add_signals(batch: pa.Table) -> pa.Table:
    """Append the `sig_*` columns to a batch holding a `text` column."""
    df = pl.from_arrow(batch.select([S.TEXT]))
    is_null = pl.col(S.TEXT).is_null()
    exprs = [pl.when(is_null).then(None).otherwise(e).alias(e.meta.output_name()) for e in _expressions()]
    sig = df.lazy().select(exprs).collect()
    out = batch
    for name in SIGNALS:
        out = out.append_column(name, sig.get_column(name).to_arrow())
    return out
