"""Heuristic quality rules as keep/drop decisions with a reason, vectorised with polars (the repetition scans in C, `rulescan`).

Four rule families, each with its published thresholds as defaults:

- Gopher quality    (Rae et al. 2021, "Scaling Language Models: Methods, Analysis &
  Insights from Training Gopher", Appendix A): word count, mean word length, '#'
  and ellipsis ratios, bullet and ellipsis lines, alphabetic words, stop words;
- Gopher repetition (same appendix, Table A1): duplicate lines and paragraphs,
  top 2-4-gram and duplicated 5-10-gram character fractions;
- C4                (Raffel et al. 2020, "Exploring the Limits of Transfer Learning
  with a Unified Text-to-Text Transformer", section 2.2): terminal punctuation,
  short lines, javascript, lorem ipsum, curly brackets, policy lines, >= 5 sentences;
- FineWeb           (Penedo et al. 2024, "The FineWeb Datasets: Decanting the Web
  for the Finest Text Data at Scale", its custom filters): line punctuation, short
  lines, duplicated line characters, newline-to-word ratio.

`apply_rules` appends one string column per enabled family: the name of the first
rule the document fails, in the family's order, or null when it passes (null text
gives null). The rules are those of datatrove (GopherQualityFilter,
GopherRepetitionFilter, C4QualityFilter, FineWebQualityFilter), the reference
implementation most curated corpora were built with, re-expressed over whole
batches; reason names are datatrove's reason with a family prefix (`gopher_`,
`c4_`, `fineweb_`), except `gopher_too_few_stop_words` (datatrove:
`gopher_enough_stop_words`). tests/parity checks the decisions against datatrove.

Where thresher departs from datatrove:

- Words. datatrove splits English words with spaCy's rule-based tokenizer
  (`spacy.blank("en")`: no model or data download). Here regexes mimic it
  (`_rewritten`, `_TOKEN`): split on whitespace; ellipses and symbols (So) are
  tokens; punctuation splits off the ends of a chunk (a period only at the end,
  not after a lone capital, an initialism or a listed abbreviation); hyphens,
  commas, `: < > = /` and `.` split inside a word in spaCy's letter and digit
  contexts; units and currency split off numbers; contractions split as in
  spaCy's exceptions ("don't" -> do n't, "dont" -> do nt, "cannot" -> can not);
  a URL filling its chunk stays whole. Not mimicked: the rest of spaCy's
  exceptions, its re-merging of special cases inside code-like chunks
  (`split("`), its full URL grammar. 99.8% of tokens agree on README and licence
  files full of URLs and code, 99.95% on the demo corpus; a decision moves only
  when a token more or less crosses a threshold.
- Duplicated n-grams replay datatrove's greedy scan exactly, comparing n-grams by
  their concatenated characters as datatrove does (`rulescan`, in C).
- C4. datatrove's C4QualityFilter also rewrites the kept document (it drops the
  lines that fail the line rules). thresher only decides: the line rules act on
  the decision as in datatrove (only surviving lines are searched for `lorem
  ipsum` and `{`, only their sentences count towards the minimum), and the text
  is left unchanged; `sig_c4_kept_char_frac` says how much of it C4 would keep.
  Sentences are counted like spaCy's sentencizer over the mimicked tokens, with
  the common sentence terminals and without spaCy's whitespace tokens. Only the
  paper's line mode (datatrove's `split_paragraph=True`) exists.
- Whitespace and line breaks follow Python's `str.splitlines`/`str.strip`, with
  Unicode White_Space (Python also strips U+001C..U+001F).
- Degenerate inputs on which datatrove would divide by zero (no words, with a
  rule that needs them enabled) pass that rule here.

A threshold of None disables its rule; for the Gopher families 0 disables too,
as in datatrove.
"""

from __future__ import annotations

import dataclasses

import string
from dataclasses import dataclass

import polars as pl
import pyarrow as pa

from . import rulescan
from . import schema as S

GOPHER_STOP_WORDS = ("the", "be", "to", "of", "and", "that", "have", "with")
C4_POLICY_SUBSTRINGS = (
    "terms of use",
    "privacy policy",
    "cookie policy",
    "uses cookies",
    "use of cookies",
    "use cookies",
)


@dataclass(frozen=True)
class GopherQualityConfig:
    """Gopher quality filter thresholds (Rae et al. 2021, Appendix A; Table A1).

    `max_non_alpha_words_ratio` keeps datatrove's name but is a minimum: a document
    fails when fewer than this fraction of its words hold a letter. Stop words are
    counted as distinct words, case-sensitively, as in datatrove.
    """

    min_doc_words: int | None = 50
    max_doc_words: int | None = 100_000
    min_avg_word_length: float | None = 3
    max_avg_word_length: float | None = 10
    max_symbol_word_ratio: float | None = 0.1
    max_bullet_lines_ratio: float | None = 0.9
    max_ellipsis_lines_ratio: float | None = 0.3
    max_non_alpha_words_ratio: float | None = 0.8
    min_stop_words: int | None = 2
    stop_words: tuple[str, ...] = GOPHER_STOP_WORDS


@dataclass(frozen=True)
class GopherRepetitionConfig:
    """Gopher repetition filter thresholds (Rae et al. 2021, Table A1).

    `top_n_grams` and `dup_n_grams` are (n, max character fraction) pairs.
    """

    dup_line_frac: float | None = 0.3
    dup_para_frac: float | None = 0.3
    dup_line_char_frac: float | None = 0.2
    dup_para_char_frac: float | None = 0.2
    top_n_grams: tuple[tuple[int, float], ...] = ((2, 0.2), (3, 0.18), (4, 0.16))
    dup_n_grams: tuple[tuple[int, float], ...] = ((5, 0.15), (6, 0.14), (7, 0.13), (8, 0.12), (9, 0.11), (10, 0.10))


@dataclass(frozen=True)
class C4Config:
    """C4 page rules (Raffel et al. 2020, section 2.2), as in datatrove's C4QualityFilter.

    The bad-words rule of the paper is a separate filter and not part of this family.
    `max_word_length` (lines holding a longer word are dropped) and `filter_policy`
    come from the C4 reference code rather than the paper. -1 or None disables the
    numeric rules.
    """

    remove_citations: bool = True
    filter_no_terminal_punct: bool = True
    min_num_sentences: int | None = 5
    min_words_per_line: int | None = 3
    max_word_length: int | None = 1000
    filter_lorem_ipsum: bool = True
    filter_javascript: bool = True
    filter_curly_bracket: bool = True
    filter_policy: bool = True
    policy_substrings: tuple[str, ...] = C4_POLICY_SUBSTRINGS


@dataclass(frozen=True)
class FineWebConfig:
    """FineWeb custom filters (Penedo et al. 2024, "The FineWeb Datasets").

    `stop_chars` None means the Unicode sentence terminals datatrove uses.
    """

    line_punct_thr: float = 0.12
    line_punct_exclude_zero: bool = False
    stop_chars: tuple[str, ...] | None = None
    short_line_thr: float = 0.67
    short_line_length: int = 30
    char_duplicates_ratio: float = 0.01
    new_line_ratio: float = 0.3


# --------------------------------------------------------------------------
# Character classes (Rust regex syntax, as polars uses).
# --------------------------------------------------------------------------


def _chars(chars: str) -> str:
    """Characters escaped for a regex, as class members or as a literal."""
    return "".join(f"\\x{{{ord(c):X}}}" for c in chars)


# Sentence terminals as datatrove lists them: Unicode's Sentence_Terminal property
# of an earlier Unicode version, plus three Khmer signs, minus characters that
# later Unicode versions added.
_STERM_ADDED = "\u17d6\u17d9\u17da"
_STERM_REMOVED = (
    "\u1b4e\u1b4f\u1b7f\u2024\u2cf9\u2cfa\u2cfb\ufe12\ufe15\ufe16"
    "\U000113d4\U000113d5\U00016d6e\U00016d6f"
)
_STERM = rf"\p{{Sentence_Terminal}}{_chars(_STERM_ADDED)}--[{_chars(_STERM_REMOVED)}]"

# Characters a "symbol word" is made of (datatrove's punctuation set): ASCII
# punctuation, control characters other than tab and newline, some CJK and
# typographic marks, and the sentence terminals.
_SYMBOL_EXTRA = "—”％１〈、━【「」，】；“《„’∶´．（–？！：～«〉》）。…►»"
_SYMBOL_CHARS = (
    _chars(string.punctuation + _SYMBOL_EXTRA)
    + r"\x00-\x08\x0B-\x1F\x7F-\x9F"
)
_SYMBOL_WORD = rf"^(?:[{_SYMBOL_CHARS}]|[{_STERM}])+$"

# Line breaks of str.splitlines other than "\n".
_LINE_BREAKS = r"\r\n|[\r\x0B\x0C\x1C\x1D\x1E\x{85}\x{2028}\x{2029}]"

# --------------------------------------------------------------------------
# Word tokenizer mimicking spaCy's English rules (see the module docstring).
# Word boundaries are ASCII ones, (?-u:\b): Unicode boundaries keep the regex
# engine off its fast DFA on non-ASCII text (about 10x slower).
# --------------------------------------------------------------------------

# Split from the start or end of a whitespace-separated chunk, one token each
# (a period only from the end).
_EDGE = (
    _chars("!\"#$%&'()*,:;?[]_`{}<>.=§+…¿¡؟。？！，、；：～·।،۔؛٪”“‘´’‚„»«「」『』（）〔〕【】《》〈〉⟦⟧£€¥฿₽﷼—–")
    + r"\x{20A0}-\x{20BF}"
)
# Split from the start only (from the end only after a digit).
_PREFIX_ONLY = _chars("§%=+$£€¥฿₽﷼") + r"\x{20A0}-\x{20BF}"
_WORD_CHAR = rf"(?:[^\s{_EDGE}]|[{_PREFIX_ONLY}])"
_UNITS = (
    "km²|km³|km/h|km|kmh|m²|m³|m/s|mm|cm|dm|ha|µm|nm|mph|yd|in|ft|kg|mg|µg|lb|oz|hPa|Pa|mbar|mb|MB|kb|KB|"
    "gb|GB|tb|TB|g|m|t|T|G|M|K"
)
# Abbreviations spaCy keeps whole with their period (single letters too, below).
_ABBREVIATIONS = (
    "Mr|Mrs|Ms|Dr|St|Jr|vs|Inc|Ltd|Co|Corp|Mt|Prof|Gen|Gov|Sen|Rep|Rev|Adm|Bros|Messrs|"
    "Jan|Feb|Mar|Apr|Jun|Jul|Aug|Sep|Sept|Oct|Nov|Dec|Ala|Ariz|Ark|Calif|Colo|Conn|Del|Fla|Ga|Ill|"
    "Ind|Kan|Kans|Ky|La|Md|Mass|Mich|Minn|Miss|Mo|Mont|Neb|Nev|Okla|Ore|Pa|Tenn|Va|Wash|Wis"
)
_QUOTES = _chars("'\"”“`‘´’‚„»«「」『』（）〔〕【】《》〈〉⟦⟧")
_CONTRACTION = "n't|N'T|n’t|'s|'S|’s|’S|'m|'re|'ve|'ll|'d|’m|’re|’ve|’ll|’d"
# Contractions written without an apostrophe, which spaCy splits too: (heads, tails).
_BARE_CONTRACTIONS = [
    ("[Ii]", "m|ve|d"),
    ("[Yy]ou|[Tt]hey|[Ww]hat|[Tt]here|[Ww]here|[Ww]hen|[Ww]hy|[Hh]ow|[Tt]hese|[Tt]hose", "d|ll|re|ve"),
    ("[Hh]e", "d|s"),
    ("[Ss]he", "s"),
    ("[Ii]t", "d|ll"),
    ("[Ww]e", "d|ve"),
    ("[Ww]ho", "d|ll|s|ve"),
    ("[Tt]hat|[Tt]his", "d|ll|s"),
    ("[Ww]hat|[Tt]here|[Ww]here|[Ww]hen|[Ww]hy|[Hh]ow", "s"),
    ("[Cc]ould|[Ww]ould|[Ss]hould|[Mm]ust|[Mm]ight", "ve"),
    (
        "[Dd]o|[Dd]oes|[Dd]id|[Ii]s|[Aa]re|[Ww]as|[Ww]ere|[Hh]ave|[Hh]as|[Hh]ad|[Cc]ould|[Ww]ould|[Ss]hould|"
        "[Cc]a|[Ww]o|[Aa]i|[Nn]eed|[Mm]ust|[Mm]ight|[Mm]ay|[Oo]ught|[Ss]ha|[Dd]are",
        "nt",
    ),
    ("[Cc]an", "not"),
    ("[Gg]on", "na"),
    ("[Gg]ot", "ta"),
]
# Emoticons made of punctuation, which spaCy re-merges from their tokens.
_EMOTICONS = (
    ":-))) :))) :-)) :)) :-((( :((( :-(( :(( :-) :) :-( :( )-: ): (-: (: ;-) ;) (-; (; :-] :] [-: [: =] [= ]= =[ "
    "=) (= =( :-} :} :-> :> >:( :-* :* :-/ :/ =/ :-| :| =| :'-( :'-) :'( :') ''"
).split()
# URLs stay one token (spaCy's URL matcher): a scheme or www., or a domain with an
# optional path; trailing punctuation is left out. Only a URL that starts its
# whole chunk (apart from opening and closing punctuation) is protected from the
# splitting rewrites.
_URL = (
    rf"(?:[A-Za-z][A-Za-z0-9+.\-]*://|www\.)\S*[^\s{_EDGE}]"
    rf"|[A-Za-z0-9][A-Za-z0-9\-]*(?:\.[A-Za-z0-9\-]+)*\.[a-z]{{2,63}}(?::\d{{2,5}})?(?:/\S*[^\s{_EDGE}]|/)?"
)
_TOKEN = "|".join(
    [
        r"\.{2,}",
        r"(?:\p{Lu}\.){2,}|(?-u:\b)(?:[Ee]\.g|[Ii]\.e|a\.m|p\.m)\.",
        rf"(?-u:\b)(?:{_ABBREVIATIONS})\.(?-u:\B)",
        r"(?-u:\b)[A-Za-z]\.(?-u:\B)",
        rf"(?:{_CONTRACTION})(?-u:\b)",
        r"(?-u:\b)and/or(?-u:\b)|(?-u:\b)w/o(?-u:\b)",
        "|".join(_chars(e) for e in _EMOTICONS),
        rf"[{_PREFIX_ONLY}]",
        rf"\.*{_WORD_CHAR}+(?:[{_EDGE}]+{_WORD_CHAR}+)*",
        rf"[{_EDGE}]",
    ]
)


# Splitting rules as (left context, part to separate, right context): a rewrite
# puts a space either side of the separated part. They run as one alternation,
# twice, so that overlapping contexts ("a-b-c") both split.
_SPLITS = [
    ("", r"\.{2,}|…|\p{So}", ""),
    (r"[\p{L}0-9]", "---|--|——|[-–—~]", r"\p{L}"),
    (r"\p{L}", ",", r"\p{L}"),
    (r"[\p{L}0-9]", "[:<>=/]", r"\p{L}"),
    (r"[0-9]", r"[-+*^]", r"[0-9-]"),
    (rf"[\p{{Ll}}{_QUOTES}]", r"\.", rf"[\p{{Lu}}{_QUOTES}]"),
    (r"\d", rf"(?:{_UNITS}|[{_PREFIX_ONLY}])+", rf"[{_EDGE}]*(?:\s|$)"),
    (r"\p{L}", _CONTRACTION, r"(?-u:\b)"),
] + [(rf"(?:^|\s)[{_EDGE}]*(?:{h})", t, r"(?-u:\b)") for h, t in _BARE_CONTRACTIONS]
# A URL filling its chunk, and "and/or", "w/o", are written back unchanged; the
# rewrite's two spaces land after the URL's trailing whitespace, where they are
# harmless. A line end is not consumed, so lines stay aligned with the input.
_PROTECT = (
    rf"(?:^|\s)[{_EDGE}]*(?:{_URL})[{_EDGE}]*(?:(?mR:$)|\s)"
    r"|(?-u:\b)and/or(?-u:\b)|(?-u:\b)w/o(?-u:\b)"
)
_HORIZONTAL_SPACE = r"[^\S\r\n\x0B\x0C\x1C-\x1E\x{85}\x{2028}\x{2029}]"


def _split_rewrite(protect: bool) -> tuple[str, str]:
    first = 2 if protect else 1
    groups = [(first + 3 * k, first + 3 * k + 1, first + 3 * k + 2) for k in range(len(_SPLITS))]
    pattern = "|".join(f"({left})({part})({right})" for left, part, right in _SPLITS)
    template = " ".join("".join(f"${{{g[i]}}}" for g in groups) for i in range(3))
    if protect:
        return f"({_PROTECT})|{pattern}", "${1}" + template
    return pattern, template


_PLAIN_REWRITE = _split_rewrite(protect=False)
_PROTECTED_REWRITE = _split_rewrite(protect=True)


def _rewritten(text: pl.Series) -> pl.Series:
    """The text with a space wherever the tokenizer splits inside a word.

    Documents holding something URL-like take the slower path that keeps URLs
    whole; there, horizontal whitespace is doubled first so that a protected URL
    can consume the space after it and still leave one in front of the next chunk.
    Only spaces are inserted, never line breaks, so lines stay aligned.
    """
    frame = pl.DataFrame({"t": text}).with_row_index("i")
    needs = pl.col("t").str.contains(_PROTECT)
    plain, protected = pl.col("t"), pl.col("t").str.replace_all(_HORIZONTAL_SPACE, "$0 ")
    for _ in range(2):
        plain = plain.str.replace_all(*_PLAIN_REWRITE)
        protected = protected.str.replace_all(*_PROTECTED_REWRITE)
    frame = frame.with_columns(needs.alias("p"))
    parts = [frame.filter(~pl.col("p")).with_columns(plain), frame.filter("p").with_columns(protected)]
    return pl.concat(parts).sort("i").get_column("t")


# spaCy's sentencizer: a sentence ends after a token that is one of its sentence
# terminals, at the next token that is not all punctuation.
_SENT_TERMINAL = _chars(".!?։؟۔।॥።፧‼‽⁇⁈⁉。｡！？．﹒﹖﹗")
_SENT_BOUNDARY = rf" [{_SENT_TERMINAL}](?: \p{{P}}+)* \S*?[^\p{{P}}\s]"


def _words(rewritten: pl.Expr) -> pl.Expr:
    """The words datatrove's English word tokenizer would produce, from `_rewritten` text."""
    return rewritten.str.extract_all(_TOKEN)


def _sentences(rewritten_line: pl.Expr) -> pl.Expr:
    """Number of sentences spaCy's sentencizer finds in a non-empty (rewritten) line."""
    joined = pl.lit(" ") + _words(rewritten_line).list.join(" ")
    return joined.str.count_matches(_SENT_BOUNDARY) + 1


def _splitlines(text: pl.Expr) -> pl.Expr:
    """str.splitlines(): no empty last line after a final line break, [] for ''."""
    t = text.str.replace_all(_LINE_BREAKS, "\n")
    parts = t.str.split("\n")
    drop_last = (t.str.ends_with("\n") | (t.str.len_chars() == 0)).cast(pl.Int64)
    return parts.list.slice(0, parts.list.len().cast(pl.Int64) - drop_last)


def _duplicates(df: pl.DataFrame, items: pl.Expr) -> tuple[pl.Series, pl.Series]:
    """Per document, in `_doc` order: the elements of the list ITEMS equal to an earlier element, and their total characters."""
    n, chars = rulescan.duplicates(df.select(items.alias("_items")).get_column("_items"))
    return pl.Series(n), pl.Series(chars)


def _reason(checks: list[tuple[pl.Expr, str]]) -> pl.Expr:
    """The name of the first check that holds, else null."""
    if not checks:
        return pl.lit(None, pl.String)
    expr = pl.when(checks[0][0].fill_null(False)).then(pl.lit(checks[0][1]))
    for cond, name in checks[1:]:
        expr = expr.when(cond.fill_null(False)).then(pl.lit(name))
    return expr.otherwise(pl.lit(None, pl.String))


def _ratio(num: pl.Expr, den: pl.Expr) -> pl.Expr:
    """num / den, null where den is 0 (the rule then passes)."""
    return pl.when(den > 0).then(num / den).otherwise(None)


# --------------------------------------------------------------------------
# Families. Each takes a frame with `_doc` (row number), `_text` (text, '' for
# null), `_rewritten` (see `_rewritten`) and `_words`, and returns one row per
# document in `_doc` order.
# --------------------------------------------------------------------------


def _gopher_quality(df: pl.DataFrame, cfg: GopherQualityConfig, prefix: str) -> pl.DataFrame:
    text, words = pl.col("_text"), pl.col("_words")
    symbol = pl.element().str.contains(_SYMBOL_WORD)
    n_words = words.list.len()
    # columns, not expressions used twice: polars would compute each use (see `_c4`)
    df = df.select("_text", "_words", words.list.eval(pl.element().filter(~symbol)).alias("_content"), _splitlines(text).alias("_lines"))
    content, lines = pl.col("_content"), pl.col("_lines")
    n_lines = lines.list.len()
    stop = list(cfg.stop_words)
    out = df.select(
        n_words.alias("n_all"),
        content.list.len().alias(S.SIG_GOPHER_N_WORDS),
        content.list.eval(pl.element().str.len_chars()).list.mean().alias(S.SIG_GOPHER_MEAN_WORD_LEN),
        _ratio(text.str.count_matches("#", literal=True), n_words).alias(S.SIG_GOPHER_HASH_RATIO),
        _ratio(
            text.str.count_matches("...", literal=True) + text.str.count_matches("…", literal=True), n_words
        ).alias(S.SIG_GOPHER_ELLIPSIS_RATIO),
        _ratio(
            lines.list.eval(pl.element().str.strip_chars_start().str.contains(r"^[•\-]")).list.sum(), n_lines
        ).alias(S.SIG_GOPHER_BULLET_LINE_FRAC),
        _ratio(
            lines.list.eval(pl.element().str.strip_chars_end().str.contains(r"(?:\.\.\.|…)$")).list.sum(), n_lines
        ).alias(S.SIG_GOPHER_ELLIPSIS_LINE_FRAC),
        _ratio(words.list.eval(pl.element().str.contains(r"\p{L}")).list.sum(), n_words).alias(
            S.SIG_GOPHER_ALPHA_WORD_FRAC
        ),
        words.list.eval(pl.element().filter(pl.element().is_in(stop))).list.n_unique().alias(S.SIG_GOPHER_N_STOP_WORDS),
    )
    c = pl.col
    checks: list[tuple[pl.Expr, str]] = []
    if cfg.min_doc_words:
        checks.append((c(S.SIG_GOPHER_N_WORDS) < cfg.min_doc_words, "short_doc"))
    if cfg.max_doc_words:
        checks.append((c(S.SIG_GOPHER_N_WORDS) > cfg.max_doc_words, "long_doc"))
    if cfg.min_avg_word_length:
        checks.append((c(S.SIG_GOPHER_MEAN_WORD_LEN) < cfg.min_avg_word_length, "below_avg_threshold"))
    if cfg.max_avg_word_length:
        checks.append((c(S.SIG_GOPHER_MEAN_WORD_LEN) > cfg.max_avg_word_length, "above_avg_threshold"))
    if cfg.max_symbol_word_ratio:
        checks.append((c(S.SIG_GOPHER_HASH_RATIO) > cfg.max_symbol_word_ratio, "too_many_hashes"))
        checks.append((c(S.SIG_GOPHER_ELLIPSIS_RATIO) > cfg.max_symbol_word_ratio, "too_many_ellipsis"))
    if cfg.max_bullet_lines_ratio:
        checks.append((c(S.SIG_GOPHER_BULLET_LINE_FRAC) > cfg.max_bullet_lines_ratio, "too_many_bullets"))
    if cfg.max_ellipsis_lines_ratio:
        checks.append((c(S.SIG_GOPHER_ELLIPSIS_LINE_FRAC) > cfg.max_ellipsis_lines_ratio, "too_many_end_ellipsis"))
    if cfg.max_non_alpha_words_ratio:
        checks.append((c(S.SIG_GOPHER_ALPHA_WORD_FRAC) < cfg.max_non_alpha_words_ratio, "below_alpha_threshold"))
    if cfg.min_stop_words:
        checks.append((c(S.SIG_GOPHER_N_STOP_WORDS) < cfg.min_stop_words, "too_few_stop_words"))
    checks = [(cond, prefix + name) for cond, name in checks]
    return out.with_columns(_reason(checks).alias("_reason")).drop("n_all")


def _ngram_stats(df: pl.DataFrame, cfg: GopherRepetitionConfig) -> pl.DataFrame:
    """Per document: top n-gram (`_top{n}`, null below n words) and duplicated n-gram (`_dup{n}`) character counts.

    datatrove's `find_top_duplicate` and `find_all_duplicate`, walked per document in C (`rulescan.ngram_chars`):
    the top n-grams join their words with spaces, the duplicated ones without a separator (so ["ab", "c"] equals
    ["a", "bc"]), and the greedy scan jumps past each repeated n-gram it counts.
    """
    top_ns = sorted({n for n, _ in cfg.top_n_grams})
    dup_ns = sorted({n for n, _ in cfg.dup_n_grams})
    top, dup = rulescan.ngram_chars(df.get_column("_words"), top_ns, dup_ns)
    out = df.select("_doc").with_columns(
        [pl.Series(f"_top{n}", top[:, j]) for j, n in enumerate(top_ns)] + [pl.Series(f"_dup{n}", dup[:, j]) for j, n in enumerate(dup_ns)]
    )
    return out.with_columns(pl.when(pl.col(f"_top{n}") >= 0).then(pl.col(f"_top{n}")) for n in top_ns)


def _gopher_repetition(df: pl.DataFrame, cfg: GopherRepetitionConfig, prefix: str) -> pl.DataFrame:
    text = pl.col("_text")
    df = df.with_columns(  # columns, not expressions used twice (see `_c4`)
        text.str.len_chars().alias("_n_chars"),
        text.str.strip_chars().str.extract_all(r"[^\n]+(?:\n[^\n]+)*").alias("_paras"),
        text.str.extract_all(r"[^\n]+").alias("_runs"),
    )
    n_chars, paragraphs, runs = pl.col("_n_chars"), pl.col("_paras"), pl.col("_runs")
    n_para = pl.max_horizontal(paragraphs.list.len(), pl.lit(1))
    para_dup, para_dup_chars = map(pl.lit, _duplicates(df, paragraphs))
    starts, ends = text.str.starts_with("\n").cast(pl.Int64), text.str.ends_with("\n").cast(pl.Int64)
    run_dup, line_dup_chars = map(pl.lit, _duplicates(df, runs))
    n_lines = runs.list.len() + starts + ends
    line_dup = run_dup + starts * ends
    out = df.select(
        "_doc",
        n_chars.alias("_n_chars"),
        (para_dup / n_para).alias(S.SIG_GOPHER_DUP_PARA_FRAC),
        _ratio(para_dup_chars, n_chars).alias(S.SIG_GOPHER_DUP_PARA_CHAR_FRAC),
        _ratio(line_dup, n_lines).alias(S.SIG_GOPHER_DUP_LINE_FRAC),
        _ratio(line_dup_chars, n_chars).alias(S.SIG_GOPHER_DUP_LINE_CHAR_FRAC),
    )
    grams = _ngram_stats(df, cfg)
    out = out.join(grams, on="_doc", how="left")
    c = pl.col
    frac = lambda col: _ratio(c(col), c("_n_chars"))  # noqa: E731
    top_fracs = [frac(f"_top{n}") for n, _ in cfg.top_n_grams]
    dup_fracs = [frac(f"_dup{n}").fill_null(0.0) for n, _ in cfg.dup_n_grams]
    checks: list[tuple[pl.Expr, str]] = [(c("_n_chars") == 0, "empty")]
    if cfg.dup_para_frac:
        checks.append((c(S.SIG_GOPHER_DUP_PARA_FRAC) > cfg.dup_para_frac, "dup_para_frac"))
    if cfg.dup_para_char_frac:
        checks.append((c(S.SIG_GOPHER_DUP_PARA_CHAR_FRAC) > cfg.dup_para_char_frac, "dup_para_char_frac"))
    if cfg.dup_line_frac:
        checks.append((c(S.SIG_GOPHER_DUP_LINE_FRAC) > cfg.dup_line_frac, "dup_line_frac"))
    if cfg.dup_line_char_frac:
        checks.append((c(S.SIG_GOPHER_DUP_LINE_CHAR_FRAC) > cfg.dup_line_char_frac, "dup_line_char_frac"))
    for (n, thr), f in zip(cfg.top_n_grams, top_fracs):
        checks.append((f > thr, f"top_{n}_gram"))
    for (n, thr), f in zip(cfg.dup_n_grams, dup_fracs):
        checks.append((f > thr, f"duplicated_{n}_n_grams"))
    checks = [(cond, prefix + name) for cond, name in checks]
    return out.select(
        c(S.SIG_GOPHER_DUP_PARA_FRAC),
        c(S.SIG_GOPHER_DUP_PARA_CHAR_FRAC),
        c(S.SIG_GOPHER_DUP_LINE_FRAC),
        c(S.SIG_GOPHER_DUP_LINE_CHAR_FRAC),
        pl.concat_list(top_fracs).alias(S.SIG_GOPHER_TOP_NGRAM_CHAR_FRAC)
        if top_fracs
        else pl.lit(None, pl.List(pl.Float64)).alias(S.SIG_GOPHER_TOP_NGRAM_CHAR_FRAC),
        pl.concat_list(dup_fracs).alias(S.SIG_GOPHER_DUP_NGRAM_CHAR_FRAC)
        if dup_fracs
        else pl.lit(None, pl.List(pl.Float64)).alias(S.SIG_GOPHER_DUP_NGRAM_CHAR_FRAC),
        _reason(checks).alias("_reason"),
    )


def _enabled(x: int | None) -> bool:
    return x is not None and x >= 0


def _c4(df: pl.DataFrame, cfg: C4Config, prefix: str) -> pl.DataFrame:
    c = pl.col
    # Lines of the text and of its rewritten form (for counting sentences) align.
    lines = df.select("_doc", _splitlines(c("_text")).alias("_line"), _splitlines(c("_rewritten")).alias("_rline"))
    lines = lines.explode("_line", "_rline").with_columns(c("_line").str.strip_chars(), c("_rline").str.strip_chars())
    line = c("_line")

    def uncited(x: pl.Expr) -> pl.Expr:
        return x.str.replace_all(r"\[\d*\]|\[edit\]|\[citation needed\]", "") if cfg.remove_citations else x

    # In stages, each a column: a later expression reusing an earlier one would recompute it (polars does not
    # share subexpressions here), several times over for `kept`.
    lines = lines.with_columns(uncited(line).alias("_cited"))
    cited = c("_cited")
    lines = lines.with_columns(cited.str.to_lowercase().alias("_lower"))
    lower = c("_lower")
    eligible = line.is_not_null()
    if _enabled(cfg.max_word_length):
        eligible = eligible & ~line.str.contains(rf"\S{{{cfg.max_word_length + 1}}}")
    if cfg.filter_no_terminal_punct:
        eligible = eligible & cited.str.contains(r"[.?!\"']$") & ~cited.str.ends_with("...")
    if _enabled(cfg.min_words_per_line) and cfg.min_words_per_line > 0:  # at least k words: the regex stops at the k-th
        eligible = eligible & line.str.contains(rf"(?:\S+\s+){{{cfg.min_words_per_line - 1}}}\S")
    lines = lines.with_columns(eligible.alias("_eligible"))
    eligible = c("_eligible")
    lines = lines.with_columns(
        (eligible & lower.str.contains("lorem ipsum", literal=True) if cfg.filter_lorem_ipsum else pl.lit(False)).alias("_lorem"),
        (lower.str.contains("javascript", literal=True) if cfg.filter_javascript else pl.lit(False)).alias("_javascript"),
        (cited.str.contains("{", literal=True) if cfg.filter_curly_bracket else pl.lit(False)).alias("_brace"),
        (
            lower.str.contains("|".join(_chars(p) for p in cfg.policy_substrings))  # one pass for every substring
            if cfg.filter_policy and cfg.policy_substrings
            else pl.lit(False)
        ).alias("_policy"),
    )
    lines = lines.with_columns((eligible & ~c("_lorem") & ~c("_javascript")).alias("_survives"))
    lines = lines.with_columns((c("_survives") & c("_brace")).alias("_curly"))
    lines = lines.with_columns(
        (c("_survives") & ~c("_curly") & ~c("_policy")).fill_null(False).alias("_kept"),
        _reason([(c("_lorem"), prefix + "lorem_ipsum"), (c("_curly"), prefix + "curly_bracket")]).alias("_fail"),
    )
    per_doc = lines.with_columns(
        _sentences(uncited(pl.when(c("_kept")).then(c("_rline")))).fill_null(0).alias("_sent"),
        pl.when(c("_kept")).then(c("_cited").str.len_chars()).otherwise(0).alias("_kept_chars"),
    ).group_by("_doc").agg(
        c("_fail").drop_nulls().first(),
        c("_sent").sum().alias(S.SIG_C4_N_SENTENCES),
        c("_kept_chars").sum(),
    )
    out = (
        df.select("_doc", c("_text").str.len_chars().alias("_n_chars"))
        .join(per_doc, on="_doc", how="left")
        .with_columns(c(S.SIG_C4_N_SENTENCES).fill_null(0), c("_kept_chars").fill_null(0))
    )
    too_few = (
        c(S.SIG_C4_N_SENTENCES) < cfg.min_num_sentences
        if cfg.min_num_sentences is not None and cfg.min_num_sentences >= 0
        else pl.lit(False)
    )
    return out.sort("_doc").select(
        c(S.SIG_C4_N_SENTENCES).cast(pl.Int64),
        pl.when(c("_n_chars") > 0).then(c("_kept_chars") / c("_n_chars")).otherwise(0.0).alias(S.SIG_C4_KEPT_CHAR_FRAC),
        pl.coalesce(c("_fail"), pl.when(too_few).then(pl.lit(prefix + "too_few_sentences"))).alias("_reason"),
    )


def _fineweb(df: pl.DataFrame, cfg: FineWebConfig, prefix: str) -> pl.DataFrame:
    text = pl.col("_text")
    df = df.with_columns(text.str.split("\n").list.eval(pl.element().filter(pl.element().str.strip_chars() != "")).alias("_lines"))
    lines = pl.col("_lines")
    n_lines = lines.list.len()
    if cfg.stop_chars is None:
        ends = rf"[{_STERM}]$"
    else:
        ends = "(?:" + "|".join(_chars(s) for s in cfg.stop_chars if s) + ")$" if any(cfg.stop_chars) else r"[^\s\S]"
    dup_chars = pl.lit(_duplicates(df, lines)[1])
    out = df.select(
        n_lines.alias("_n_lines"),
        _ratio(lines.list.eval(pl.element().str.contains(ends)).list.sum(), n_lines).alias(S.SIG_FINEWEB_LINE_PUNCT_FRAC),
        _ratio(
            lines.list.eval(pl.element().str.len_chars() <= cfg.short_line_length).list.sum(), n_lines
        ).alias(S.SIG_FINEWEB_SHORT_LINE_FRAC),
        _ratio(dup_chars, text.str.len_chars() - text.str.count_matches("\n", literal=True)).alias(
            S.SIG_FINEWEB_DUP_LINE_CHAR_FRAC
        ),
        _ratio(text.str.count_matches("\n", literal=True), pl.col("_words").list.len()).alias(
            S.SIG_FINEWEB_NEWLINE_WORD_RATIO
        ),
    )
    c = pl.col
    punct_fail = c(S.SIG_FINEWEB_LINE_PUNCT_FRAC) < cfg.line_punct_thr
    if cfg.line_punct_exclude_zero:
        punct_fail = punct_fail & (c(S.SIG_FINEWEB_LINE_PUNCT_FRAC) != 0)
    checks = [
        (c("_n_lines") == 0, "empty"),
        (punct_fail, "line_punct_ratio"),
        (c(S.SIG_FINEWEB_SHORT_LINE_FRAC) > cfg.short_line_thr, "short_line_ratio"),
        (c(S.SIG_FINEWEB_DUP_LINE_CHAR_FRAC) > cfg.char_duplicates_ratio, "char_dup_ratio"),
        (c(S.SIG_FINEWEB_NEWLINE_WORD_RATIO) > cfg.new_line_ratio, "list_ratio"),
    ]
    checks = [(cond, prefix + name) for cond, name in checks]
    return out.with_columns(_reason(checks).alias("_reason")).drop("_n_lines")


def apply_rules(
    batch: pa.Table,
    gopher_quality: GopherQualityConfig | None = GopherQualityConfig(),
    gopher_repetition: GopherRepetitionConfig | None = GopherRepetitionConfig(),
    c4: C4Config | None = C4Config(),
    fineweb: FineWebConfig | None = FineWebConfig(),
    *,
    signals: bool = False,
) -> pa.Table:
    """Append a reason column per enabled family (None disables a family).

    Each reason column (schema.Q_RULE_*) holds the first failed rule's name, null
    when the document passes or its text is null. With `signals=True` the measured
    value of every rule is appended too (`sig_gopher_*`, `sig_c4_*`,
    `sig_fineweb_*`; the n-gram fractions as lists in the configured order).
    """
    families = [
        (S.Q_RULE_GOPHER_QUALITY, gopher_quality, _gopher_quality, "gopher_"),
        (S.Q_RULE_GOPHER_REPETITION, gopher_repetition, _gopher_repetition, "gopher_"),
        (S.Q_RULE_C4, c4, _c4, "c4_"),
        (S.Q_RULE_FINEWEB, fineweb, _fineweb, "fineweb_"),
    ]
    families = [f for f in families if f[1] is not None]
    if not families:
        return batch
    text = pl.from_arrow(batch.select([S.TEXT])).get_column(S.TEXT)
    if batch.num_rows == 0:
        text = pl.Series(S.TEXT, [], pl.String)
    is_null = text.is_null()
    text = text.fill_null("").cast(pl.String)
    df = pl.DataFrame({"_text": text, "_rewritten": _rewritten(text)}).with_row_index("_doc")
    if gopher_quality is not None or gopher_repetition is not None or fineweb is not None:
        df = df.with_columns(_words(pl.col("_rewritten")).alias("_words"))
    out = batch
    null_mask = pl.lit(is_null)
    for column, cfg, run, prefix in families:
        res = run(df, cfg, prefix)
        cols = [column] + ([c for c in res.columns if c.startswith("sig_")] if signals else [])
        res = res.rename({"_reason": column}).select(
            [pl.when(null_mask).then(None).otherwise(pl.col(c)).alias(c) for c in cols]
        )
        for c in cols:
            out = out.append_column(c, res.get_column(c).to_arrow())
    return out


FAMILY_CONFIGS = {
    "gopher_quality": GopherQualityConfig,
    "gopher_repetition": GopherRepetitionConfig,
    "c4": C4Config,
    "fineweb": FineWebConfig,
}


def rule_configs(overrides: dict[str, dict | None]) -> dict[str, object | None]:
    """Family configs from threshold overrides: {} = published defaults, None = family off.

    Lists in the overrides (YAML has no tuples) become tuples; an unknown
    family or threshold is a ValueError naming it.
    """
    configs: dict[str, object | None] = {}
    for family, cls in FAMILY_CONFIGS.items():
        values = overrides.get(family, {})
        if values is None:
            configs[family] = None
            continue
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(values) - known)
        if unknown:
            raise ValueError(f"{family}: unknown threshold {unknown[0]!r} (known: {', '.join(sorted(known))})")
        configs[family] = cls(**{k: _tupled(v) for k, v in values.items()})
    extra = sorted(set(overrides) - set(FAMILY_CONFIGS))
    if extra:
        raise ValueError(f"unknown rule family {extra[0]!r}")
    return configs


def _tupled(v):
    return tuple(_tupled(x) for x in v) if isinstance(v, list) else v
