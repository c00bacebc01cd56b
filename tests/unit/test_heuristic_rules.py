"""Hand-computed cases on both sides of every heuristic rule's threshold."""

import polars as pl
import pyarrow as pa
import pytest

from thresher.operators import heuristic_rules as H
from thresher.operators import schema as S
from thresher.operators.heuristic_rules import (
    C4Config,
    FineWebConfig,
    GopherQualityConfig,
    GopherRepetitionConfig,
    apply_rules,
)

ONLY = dict(gopher_quality=None, gopher_repetition=None, c4=None, fineweb=None)


def gq(texts, **cfg):
    out = apply_rules(pa.table({S.TEXT: texts}), **{**ONLY, "gopher_quality": GopherQualityConfig(**cfg)})
    return out.column(S.Q_RULE_GOPHER_QUALITY).to_pylist()


def gr(texts, signals=False, **cfg):
    out = apply_rules(
        pa.table({S.TEXT: texts}), **{**ONLY, "gopher_repetition": GopherRepetitionConfig(**cfg)}, signals=signals
    )
    return out if signals else out.column(S.Q_RULE_GOPHER_REPETITION).to_pylist()


def c4(texts, **cfg):
    out = apply_rules(pa.table({S.TEXT: texts}), **{**ONLY, "c4": C4Config(**cfg)}, signals=True)
    return out.column(S.Q_RULE_C4).to_pylist()


def fw(texts, **cfg):
    out = apply_rules(pa.table({S.TEXT: texts}), **{**ONLY, "fineweb": FineWebConfig(**cfg)})
    return out.column(S.Q_RULE_FINEWEB).to_pylist()


def letters(i: int, width: int = 4) -> str:
    """A distinct lower-case word of `width` letters for every i < 26**width."""
    out = ""
    for _ in range(width):
        i, d = divmod(i, 26)
        out += chr(97 + d)
    return out


def unique_words(n: int, start: int = 1000) -> list[str]:
    return [letters(start + i) for i in range(n)]


# --------------------------------------------------------------------------
# Words (the tokenizer mimicking spaCy's English rules).
# --------------------------------------------------------------------------


def words(text: str) -> list[str]:
    return pl.select(H._words(pl.lit(H._rewritten(pl.Series([text])).item()))).item().to_list()


def test_words_split_like_spacy():
    # Expected tokens as spaCy's blank English tokenizer gives them.
    assert words("Hello, world! It's a test... e.g. U.S. long-term 3.5% #tag don't (paren) \"q\"") == [
        "Hello", ",", "world", "!", "It", "'s", "a", "test", "...", "e.g.", "U.S.", "long", "-", "term",
        "3.5", "%", "#", "tag", "do", "n't", "(", "paren", ")", '"', "q", '"',
    ]  # fmt: skip
    assert words("See https://example.com/a-b/c?d=1. Then x.y and end.Next cannot") == [
        "See", "https://example.com/a-b/c?d=1", ".", "Then", "x.y", "and", "end", ".", "Next", "can", "not",
    ]  # fmt: skip
    assert words("- item\n• point\t10km a/b and/or Mr. Smith ...wait") == [
        "-", "item", "•", "point", "10", "km", "a", "/", "b", "and/or", "Mr.", "Smith", "...", "wait",
    ]  # fmt: skip


# --------------------------------------------------------------------------
# Gopher quality.
# --------------------------------------------------------------------------


def prose(n: int) -> str:
    """n words: 'the', 'and', then n - 2 distinct four-letter words; no punctuation."""
    return " ".join(["the", "and"] + unique_words(n - 2))


def test_gopher_word_count_bounds():
    assert gq([prose(49), prose(50)]) == ["gopher_short_doc", None]  # at least 50 words
    assert gq([prose(60), prose(61)], max_doc_words=60) == [None, "gopher_long_doc"]  # at most 60 words
    # Symbol-only words do not count: 49 words and 5 '&' tokens are still short.
    assert gq([prose(49) + " & & & & &"]) == ["gopher_short_doc"]


def test_gopher_mean_word_length_bounds():
    three = " ".join(["the", "and"] + ["cat"] * 48)  # mean 150 / 50 = 3.0 -> kept
    below = three.replace("cat", "ca", 1)  # 149 / 50 = 2.98 < 3
    # 'the' + 'and' (6) + 46 x 10 letters + 2 x 17 letters = 500 characters over 50 words = 10.0
    ten = " ".join(["the", "and"] + [letters(i, 10) for i in range(46)] + [letters(i, 17) for i in range(2)])
    above = ten + "x"  # 501 / 50 = 10.02 > 10
    assert gq([three, below, ten, above]) == [None, "gopher_below_avg_threshold", None, "gopher_above_avg_threshold"]


def test_gopher_hash_and_ellipsis_ratios():
    # 54 words and 6 '#' tokens: 6 / 60 = 0.1 (kept); 7 / 61 = 0.115 > 0.1.
    assert gq([prose(54) + " #" * 6, prose(54) + " #" * 7]) == [None, "gopher_too_many_hashes"]
    # Same with ellipses ('...' is one token, '…' too); none at a line end.
    assert gq(["... " * 6 + prose(54), "… " * 7 + prose(54)]) == [None, "gopher_too_many_ellipsis"]


def test_gopher_bullet_and_ellipsis_lines():
    lines = [" ".join(["the", "and"] + unique_words(5, 100 * i)) for i in range(20)]
    bullets18 = "\n".join(("- " if i < 18 else "") + line for i, line in enumerate(lines))  # 18 / 20 = 0.9
    bullets19 = "\n".join(("  • " if i < 19 else "") + line for i, line in enumerate(lines))  # 19 / 20 = 0.95
    assert gq([bullets18, bullets19]) == [None, "gopher_too_many_bullets"]
    ell6 = "\n".join(line + ("..." if i < 6 else ".") for i, line in enumerate(lines))  # 6 / 20 = 0.3
    ell7 = "\n".join(line + (" …" if i < 7 else ".") for i, line in enumerate(lines))  # 7 / 20 = 0.35
    assert gq([ell6, ell7]) == [None, "gopher_too_many_end_ellipsis"]


def test_gopher_alphabetic_words_and_stop_words():
    # 40 words with letters and 10 numbers: 40 / 50 = 0.8 (kept); with 11 numbers 40 / 51 < 0.8.
    base = " ".join(["the", "and"] + unique_words(38))
    assert gq([base + " 12" * 10, base + " 12" * 11]) == [None, "gopher_below_alpha_threshold"]
    # Distinct stop words, case-sensitive: 'the' x3 is one; 'The And' is none.
    others = " ".join(unique_words(50))
    one = "the the the " + others
    two = "the with " + others
    cased = "The And " + others
    assert gq([one, two, cased]) == ["gopher_too_few_stop_words", None, "gopher_too_few_stop_words"]


def test_gopher_quality_rules_can_be_disabled():
    assert gq([prose(10)], min_doc_words=None) == [None]
    assert gq([prose(10)], min_doc_words=0) == [None]  # 0 disables, as in datatrove
    assert gq(["The And " + " ".join(unique_words(50))], min_stop_words=None) == [None]


# --------------------------------------------------------------------------
# Gopher repetition.
# --------------------------------------------------------------------------


def test_duplicate_paragraphs_and_lines():
    uniques = [" ".join(unique_words(20, 100 * i)) for i in range(7)]  # 7 paragraphs of 99 characters
    # 10 paragraphs, 3 of them repeats of 'dup one' (7 chars): 3 / 10 = 0.3 (kept); 4 / 10 > 0.3.
    ok = "\n\n".join(uniques + ["dup one"] * 4)
    bad = "\n\n".join(uniques[:6] + ["dup one"] * 5)
    assert gr([ok, bad]) == [None, "gopher_dup_para_frac"]
    # The same with single line breaks is judged on lines.
    assert gr([ok.replace("\n\n", "\n"), bad.replace("\n\n", "\n")]) == [None, "gopher_dup_line_frac"]


def test_duplicate_paragraph_and_line_characters():
    # Seven paragraphs: 5 unique of 99 characters, 'ab', and a repeat of the first:
    # len = 5 * 99 + 2 + 99 + 6 separators * 2 = 608, repeated 99 / 608 = 0.163 (kept).
    paras = [" ".join(unique_words(20, 100 * i)) for i in range(5)]
    ok = "\n\n".join(paras + ["ab", paras[0]])
    # A second repeat: 198 / 709 = 0.279 > 0.2, while 2 of 8 paragraphs = 0.25 <= 0.3.
    bad = "\n\n".join(paras + ["ab", paras[0], paras[1]])
    no_ngrams = dict(top_n_grams=(), dup_n_grams=())  # the repeats also repeat 9-grams
    assert gr([ok, bad], **no_ngrams) == [None, "gopher_dup_para_char_frac"]
    # As lines: 99 / 602 = 0.164 and 198 / 702 = 0.282.
    assert gr([ok.replace("\n\n", "\n"), bad.replace("\n\n", "\n")], **no_ngrams) == [
        None,
        "gopher_dup_line_char_frac",
    ]


def test_top_ngram_character_fraction():
    # m distinct 4-letter words and k copies of 'ab cd' (5 characters), one space apart:
    # len = 4m + 5k + (m + k - 1) = 5m + 6k - 1; the top 2-gram covers 5k characters.
    # m = 23, k = 6: 30 / 150 = 0.2 (kept); m = 22: 30 / 145 = 0.207 > 0.2.
    def doc(m, k):
        out = []
        for i, word in enumerate(unique_words(m)):
            out.append(word)
            if i % 3 == 1 and k:
                out.append("ab cd")
                k -= 1
        return " ".join(out)

    ok, bad = doc(23, 6), doc(22, 6)
    assert (len(ok), len(bad)) == (150, 145)
    assert gr([ok, bad]) == [None, "gopher_top_2_gram"]
    fracs = gr([ok], signals=True).column(S.SIG_GOPHER_TOP_NGRAM_CHAR_FRAC).to_pylist()[0]
    # Every 3- and 4-gram occurs once; the first ones (two words, then 'ab' and 'ab cd') have 12 and 15.
    assert fracs == [pytest.approx(0.2), pytest.approx(12 / 150), pytest.approx(15 / 150)]


def test_duplicated_ngrams_follow_the_greedy_scan():
    # n = 5 over "a b c d e a b c d e": the n-gram at 5 was seen at 0 -> 5 characters; 5 / 19.
    out = gr(["a b c d e a b c d e"], signals=True, top_n_grams=(), dup_n_grams=((5, 0.5),))
    assert out.column(S.SIG_GOPHER_DUP_NGRAM_CHAR_FRAC).to_pylist()[0] == [pytest.approx(5 / 19)]
    assert out.column(S.Q_RULE_GOPHER_REPETITION).to_pylist() == [None]
    assert gr(["a b c d e a b c d e"], top_n_grams=(), dup_n_grams=((5, 0.25),)) == ["gopher_duplicated_5_n_grams"]
    # n = 2 over "x y x y z y z": (x,y) at 2 repeats 0 -> count 2, jump to 4; (y,z) at 5 first
    # appeared at 3, which the jump skipped, so it is new: 2 characters, not 4; 2 / 13.
    out = gr(["x y x y z y z"], signals=True, top_n_grams=(), dup_n_grams=((2, 0.5),))
    assert out.column(S.SIG_GOPHER_DUP_NGRAM_CHAR_FRAC).to_pylist()[0] == [pytest.approx(2 / 13)]
    # Words are compared concatenated, as in datatrove: "ab"+"c" equals "a"+"bc": 3 / 9.
    out = gr(["ab c a bc"], signals=True, top_n_grams=(), dup_n_grams=((2, 0.5),))
    assert out.column(S.SIG_GOPHER_DUP_NGRAM_CHAR_FRAC).to_pylist()[0] == [pytest.approx(3 / 9)]


def test_duplicated_long_ngrams_split_differently_and_equal_only_in_their_first_characters():
    # 19 characters each, more than the prefilter's window (H.WINDOW): equal concatenations, different words.
    text = "abcdefgh ijklmnop q r s abcdefghijkl mnop q r s"
    out = gr([text], signals=True, top_n_grams=(), dup_n_grams=((5, 0.9),))
    assert out.column(S.SIG_GOPHER_DUP_NGRAM_CHAR_FRAC).to_pylist()[0] == [pytest.approx(19 / len(text))]
    # the same first 16 characters, then different ones: never a duplicate
    text = "abcdefgh ijklmnop q r s abcdefghijkl mnop q r t"
    out = gr([text], signals=True, top_n_grams=(), dup_n_grams=((5, 0.9),))
    assert out.column(S.SIG_GOPHER_DUP_NGRAM_CHAR_FRAC).to_pylist()[0] == [0.0]


def test_repetition_edge_cases():
    assert gr([""]) == ["gopher_empty"]
    assert gr(["\n"]) == ["gopher_dup_line_frac"]  # two empty lines, one a duplicate: 1 / 2 > 0.3
    assert gr(["x"], top_n_grams=(), dup_n_grams=()) == [None]


# --------------------------------------------------------------------------
# C4.
# --------------------------------------------------------------------------

FIVE = "The cat sat down. The dog ran off. Birds sang all day.\nThe sun set slowly. It was very late."


def test_c4_counts_sentences_on_kept_lines_only():
    four = "The cat sat down. The dog ran off. Birds sang all day.\nThe sun set slowly."
    assert c4([FIVE, four]) == [None, "c4_too_few_sentences"]
    # Lines that C4 removes do not count: too few words, no end punctuation, an ellipsis,
    # javascript, a policy phrase, a word over 1,000 characters.
    removed = [
        "Two words.",
        "No end punctuation here",
        "It trails off here...",
        "Please enable JavaScript now.",
        "This site uses cookies today.",
        "A " + "x" * 1001 + " word.",
    ]
    assert c4([four + "\n" + "\n".join(removed)]) == ["c4_too_few_sentences"]
    assert c4([four + "\nA " + "x" * 1000 + " word."]) == [None]  # 1,000 characters is allowed
    assert c4([four + "\nIt rained all night.[1]"]) == [None]  # the citation is removed first
    assert c4([four], min_num_sentences=4) == [None]


def test_c4_page_rules_apply_to_surviving_lines():
    assert c4([FIVE + "\nLorem ipsum dolor sit amet."]) == ["c4_lorem_ipsum"]
    assert c4([FIVE + "\nLorem ipsum dolor sit amet"]) == [None]  # no end punctuation: removed first
    assert c4([FIVE + "\nIt costs {1} to enter."]) == ["c4_curly_bracket"]
    assert c4([FIVE + "\nJavascript uses {braces} here."]) == [None]  # removed as a javascript line
    assert c4([FIVE + "\nIt costs {1}"]) == [None]
    assert c4(["It costs {1} here.\nLorem ipsum is a text."]) == ["c4_curly_bracket"]  # the first one wins
    assert c4([FIVE + "\nLorem ipsum dolor sit amet."], filter_lorem_ipsum=False) == [None]


# --------------------------------------------------------------------------
# FineWeb.
# --------------------------------------------------------------------------


def long_line(i: int) -> str:
    return " ".join(unique_words(7, 100 * i))  # 34 characters, 7 words


def test_fineweb_line_punctuation():
    ok = "\n".join(long_line(i) + ("." if i < 3 else "") for i in range(25))  # 3 / 25 = 0.12
    bad = "\n".join(long_line(i) + ("!" if i < 2 else "") for i in range(25))  # 2 / 25 = 0.08
    assert fw([ok, bad]) == [None, "fineweb_line_punct_ratio"]
    assert fw([bad], line_punct_thr=0.05) == [None]


def test_fineweb_short_lines():
    short = "a" * 29 + "."  # 30 characters: short
    ok = "\n".join([short, short.replace("a", "b"), long_line(0) + "."])  # 2 / 3 = 0.667 <= 0.67
    bad = "\n".join([short.replace("a", c) for c in "abcdefg"] + [long_line(i) + "." for i in range(3)])  # 0.7
    assert fw([ok, bad]) == [None, "fineweb_short_line_ratio"]


def test_fineweb_duplicate_line_characters():
    body = [" ".join(unique_words(8, 100 * i)) + "." for i in range(25)]  # 25 lines x 40 = 1,000 characters
    ok = "\n".join(body + ["abcdefghi."] * 2)  # 10 repeated of 1,020 characters = 0.0098
    bad = "\n".join(body + ["abcdefghij."] * 2)  # 11 of 1,022 = 0.0108 > 0.01
    assert fw([ok, bad]) == [None, "fineweb_char_dup_ratio"]


def test_fineweb_newline_to_word_ratio():
    def three(i):  # 32 characters, 3 words ('.' is one)
        return f"extraordinarily comprehensive{i}."

    def two(i):  # 31 characters, 2 words
        return f"extraordinarilycomprehensive{i}x."

    ok = "\n".join([three(0), three(1), two(2), two(3)])  # 3 newlines / 10 words = 0.3
    bad = "\n".join([three(0), two(1), two(2), two(3)])  # 3 / 9 = 0.33 > 0.3
    assert fw([ok, bad]) == [None, "fineweb_list_ratio"]
    assert fw(["", " \n \t"]) == ["fineweb_empty", "fineweb_empty"]


# --------------------------------------------------------------------------
# The batch interface.
# --------------------------------------------------------------------------


def test_apply_rules_columns_nulls_and_signals():
    batch = pa.table({S.DOC_ID: ["a", "b", "c"], S.TEXT: pa.array([prose(60), None, ""], pa.string())})
    out = apply_rules(batch)
    assert out.column_names == [S.DOC_ID, S.TEXT] + [
        S.Q_RULE_GOPHER_QUALITY,
        S.Q_RULE_GOPHER_REPETITION,
        S.Q_RULE_C4,
        S.Q_RULE_FINEWEB,
    ]
    rows = out.to_pylist()
    assert all(rows[1][c] is None for c in out.column_names[2:])  # null text, null decisions
    assert rows[2][S.Q_RULE_GOPHER_QUALITY] == "gopher_short_doc"
    assert rows[2][S.Q_RULE_FINEWEB] == "fineweb_empty"
    with_signals = apply_rules(batch, signals=True)
    row = with_signals.to_pylist()[0]
    assert row[S.SIG_GOPHER_N_WORDS] == 60
    assert row[S.SIG_GOPHER_N_STOP_WORDS] == 2
    assert len(row[S.SIG_GOPHER_DUP_NGRAM_CHAR_FRAC]) == 6
    assert with_signals.to_pylist()[1][S.SIG_GOPHER_N_WORDS] is None
    assert apply_rules(batch, **ONLY) is batch
    assert apply_rules(batch.slice(0, 0)).num_rows == 0
