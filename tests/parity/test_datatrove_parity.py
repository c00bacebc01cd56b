"""Keep/drop parity of thresher's heuristic rule families with datatrove's filters.

datatrove (with spaCy for its English word tokenizer) is a test-only dependency:
    pip install "datatrove>=0.10" "spacy>=3.8"
The test is skipped when either is missing.

Corpus (deterministic): 2,000 demo-corpus documents (clean prose, boilerplate,
keyword spam, gibberish, exact and near duplicates, 20 to 3,000 words) plus
documents crafted on both sides of every rule's threshold. Each family must
agree on the keep/drop decision for at least 99% of documents, and both outcomes
must be well represented.

Disagreement categories. On this corpus none occurs: agreement is 100% for all
four families, reasons included, and also with overridden thresholds. The known
sources, measured on other text (300 README, METADATA and licence files from
site-packages, full of URLs and code: 100% decision agreement, 99.8% of words
identical; 20,000 demo documents in bench/bench_filters.py: 100%):
- Words: thresher mimics spaCy's English tokenizer with regexes. It does not
  reproduce spaCy's re-merging of special cases inside code-like chunks
  (`split("`, `")[-1`), its full URL grammar (`s3://bucket/key`, e-mail
  addresses with hyphens), all of its exceptions (`Ph.D.`, `o'clock`), or its
  emoticon merges inside symbol soup (`:x`, `):`). A word more or less moves
  Gopher word counts and ratios, the repetition n-grams and FineWeb's
  newline/word ratio a little; a decision flips only at a threshold.
- Sentences (C4): thresher counts spaCy-sentencizer boundaries over its own
  words, with the common sentence terminals (not all 128 of spaCy's) and without
  whitespace words (spaCy starts a sentence at a run of spaces after a period
  followed only by punctuation, e.g. "Done.  )").
- Duplicated n-grams are compared through 64-bit hashes of their characters; a
  collision would count a false repeat (none seen).
- Whitespace: Python strips U+001C..U+001F as whitespace, the regex engine does
  not; Unicode tables differ in version (sentence terminals added after
  datatrove's list was made are excluded to match it).
"""

from __future__ import annotations

import random
from collections import Counter

import pyarrow as pa
import pytest

datatrove = pytest.importorskip("datatrove")
pytest.importorskip("spacy")

from datatrove.data import Document  # noqa: E402
from datatrove.pipeline.filters import (  # noqa: E402
    C4QualityFilter,
    FineWebQualityFilter,
    GopherQualityFilter,
    GopherRepetitionFilter,
)

from thresher.operators import schema as S  # noqa: E402
from thresher.operators.heuristic_rules import (  # noqa: E402
    C4Config,
    FineWebConfig,
    GopherQualityConfig,
    GopherRepetitionConfig,
    apply_rules,
)
from thresher.demo_corpus import generate  # noqa: E402

N_DEMO = 2000
FAMILIES = {
    S.Q_RULE_GOPHER_QUALITY: (GopherQualityFilter, ""),
    S.Q_RULE_GOPHER_REPETITION: (GopherRepetitionFilter, "gopher_"),
    S.Q_RULE_C4: (C4QualityFilter, "c4_"),
    S.Q_RULE_FINEWEB: (FineWebQualityFilter, "fineweb_"),
}
RENAMED = {"gopher_enough_stop_words": "gopher_too_few_stop_words"}

# --------------------------------------------------------------------------
# Crafted documents, each family's thresholds approached from both sides.
# --------------------------------------------------------------------------

NOUNS = "river garden window teacher market engine letter island doctor winter harbor signal".split()
VERBS = "carried opened watched painted measured followed repaired visited described noticed".split()
ADJS = "quiet narrow bright heavy early modern simple distant careful golden".split()


def sentence(r: random.Random, words: int = 8) -> str:
    """A plain sentence of exactly `words` words (>= 5) holding the stop words the, of, and."""
    core = ["The", r.choice(ADJS), r.choice(NOUNS), r.choice(VERBS), "the", r.choice(NOUNS)]
    extra = []
    while len(core) + len(extra) < words:
        extra += ["of", "the", r.choice(NOUNS)] if r.random() < 0.5 else ["and", r.choice(ADJS), r.choice(NOUNS)]
    return " ".join((core + extra)[:words]) + "."


def paragraph(r: random.Random, n_sentences: int) -> str:
    return " ".join(sentence(r, r.randint(6, 14)) for _ in range(n_sentences))


def words_doc(r: random.Random, n: int) -> str:
    """Exactly n words, with stop words, in sentences."""
    out, left = [], n
    while left > 0:
        k = min(left, r.randint(6, 12))
        if left - k in range(1, 5):
            k = left
        s = sentence(r, max(k, 5)).rstrip(".").split()[:k]
        out.append(" ".join(s) + ".")
        left -= k
    return " ".join(out)


def gopher_quality_cases(r: random.Random) -> list[str]:
    docs = []
    for n in range(45, 56):  # min_doc_words = 50
        docs += [words_doc(r, n) for _ in range(3)]
    for target in (2.8, 2.95, 3.0, 3.05, 3.2, 9.8, 9.95, 10.0, 10.05, 10.3):  # 3 <= mean word length <= 10
        for _ in range(3):
            words = ["the", "of", "and"]
            while len(words) < 60:
                mean = sum(map(len, words)) / len(words)
                words.append("a" * r.randint(1, 3) if mean > target else "x" * r.randint(9, 16))
            docs.append(" ".join(words))
    for k in range(6, 17):  # '#' per word <= 0.1 ('#tag' is two words, each '.' one)
        base = words_doc(r, 80).split()
        for i in range(k):
            base.insert(r.randrange(len(base)), "#tag")
        docs.append(" ".join(base))
    for k in range(7, 16):  # ellipses per word <= 0.1
        base = words_doc(r, 90).split()
        for i in range(k):
            base.insert(r.randrange(len(base)), "...")
        docs.append(" ".join(base))
    for bullets in range(15, 21):  # bullet lines <= 90%
        lines = [("- " if i < bullets else "") + sentence(r) for i in range(20)]
        docs.append("\n".join(r.sample(lines, len(lines))))
    for bullets in (17, 18, 19):
        docs.append("\n".join(("• " if i < bullets else "   ") + sentence(r) for i in range(20)))
    for k in range(3, 10):  # lines ending in an ellipsis <= 30%
        docs.append("\n".join(sentence(r).rstrip(".") + ("..." if i < k else ".") for i in range(20)))
        docs.append("\n".join(sentence(r).rstrip(".") + (" …" if i < k else ".") for i in range(20)))
    for numbers in range(8, 16):  # >= 80% of words hold a letter
        words = words_doc(r, 50 - numbers).rstrip(".").split() + [str(r.randint(10, 999)) for _ in range(numbers)]
        r.shuffle(words)
        docs.append(" ".join(words))
    for stop in (0, 1, 2, 3):  # >= 2 distinct stop words (case-sensitive)
        pool = ["the", "of", "and", "with"][:stop]
        words = [r.choice(NOUNS + ADJS) for _ in range(60)]
        for w in pool:
            words[r.randrange(60)] = w
        docs.append(" ".join(words) + ".")
        docs.append(" ".join(w.capitalize() if w in ("the", "of", "and") else w for w in words) + ".")
    docs.append(" ".join(["lorem"] * 100_001))  # max_doc_words = 100,000
    docs.append(" ".join(("the", "of", "and", "signal")[i % 4] for i in range(99_999)))
    return docs


def gopher_repetition_cases(r: random.Random) -> list[str]:
    docs = []
    for dup in range(2, 7):  # duplicate lines <= 30% (of 15), duplicate line characters <= 20%
        lines = [sentence(r, r.randint(5, 12)) for _ in range(15 - dup)]
        lines += r.sample(lines, dup)
        r.shuffle(lines)
        docs.append("\n".join(lines))
    for dup in range(1, 5):  # duplicate paragraphs <= 30% (of 10), their characters <= 20%
        paras = [paragraph(r, r.randint(1, 3)) for _ in range(10 - dup)]
        paras += r.sample(paras, dup)
        r.shuffle(paras)
        docs.append("\n\n".join(paras))
    for share in (0.14, 0.17, 0.19, 0.21, 0.23):  # one long repeated line, few short unique ones
        long = sentence(r, 30)
        body = words_doc(r, 300)
        reps = max(1, int(share * len(body) / (len(long) * (1 - share))))
        docs.append("\n".join([body] + [long] * (reps + 1)))
    for n, reps in ((2, 20), (2, 30), (2, 40), (3, 14), (3, 20), (3, 26), (4, 10), (4, 14), (4, 18)):
        gram = " ".join(r.choice(NOUNS) for _ in range(n))  # top n-gram character fraction
        words = words_doc(r, 200).split()
        for _ in range(reps):
            words.insert(r.randrange(len(words)), gram)
        docs.append(" ".join(words))
    for n in range(5, 11):  # duplicated n-gram character fractions
        for copies in (1, 2, 3, 4):
            passage = words_doc(r, n + r.randint(0, 6))
            docs.append(" ".join([words_doc(r, 150)] + [passage] * copies + [words_doc(r, 40)]))
    for _ in range(10):  # interleaved repeats, where the greedy scan's jumps matter
        phrase = words_doc(r, r.randint(5, 9))
        parts = [words_doc(r, r.randint(3, 12)) if r.random() < 0.5 else phrase for _ in range(30)]
        docs.append(" ".join(parts))
    docs += ["", "\n", "\n\n", "  ", "a\n\nb\n\na", "x\ny\nx\ny\nx", "\nline\n\nline\n"]
    return docs


def c4_cases(r: random.Random) -> list[str]:
    docs = []
    for n in range(2, 9):  # >= 5 sentences on kept lines
        docs.append(paragraph(r, n))
        docs.append("\n".join(sentence(r) for _ in range(n)))
        docs.append("\n".join([sentence(r) for _ in range(n)] + ["Menu", "Home | About", "Read more"]))
    docs += [
        "\n".join([sentence(r) for _ in range(6)] + ["Lorem ipsum dolor sit amet, consectetur adipiscing elit."]),
        "\n".join([sentence(r) for _ in range(6)] + ["Lorem ipsum dolor sit amet"]),  # not a kept line
        "\n".join([sentence(r) for _ in range(2)] + ["Lorem ipsum dolor sit amet, it said."] + ["{ brace }."]),
        "\n".join(["Our {template} engine is here."] + [sentence(r) for _ in range(2)] + ["Lorem ipsum is it."]),
        "\n".join([sentence(r) for _ in range(6)] + ["Use the function { return 1; } here."]),
        "\n".join([sentence(r) for _ in range(6)] + ["function f() { return 1; }"]),  # not a kept line
        "\n".join([sentence(r) for _ in range(6)] + ["Please enable JavaScript in { your browser }."]),
        "\n".join([sentence(r) for _ in range(5)] + ["Please enable JavaScript to view this page properly."]),
        "\n".join([sentence(r) for _ in range(5)] + ["This site uses cookies to improve your visit today."]),
        "\n".join([sentence(r) for _ in range(5)] + ["Read our privacy policy and terms of use before you go."]),
        "\n".join([sentence(r) for _ in range(4)] + ["Short line.", "Two words."]),
        "\n".join([sentence(r) for _ in range(4)] + ["Wait for it...", "And then it ended..."]),
        "\n".join([sentence(r) for _ in range(5)] + ["A cited claim of the river.[1]", "Another claim [edit]"]),
        "\n".join([sentence(r) for _ in range(4)] + ["A cited claim of the river.[1]", "Second cited claim.[2]"]),
        "\n".join([sentence(r) for _ in range(4)] + ['He said "the river opened."', "Was it the harbor?", "It was!"]),
        "\n".join([sentence(r) for _ in range(4)] + ["The word " + "x" * 1001 + " is far too long."]),
        "\n".join([sentence(r) for _ in range(5)] + ["The word " + "x" * 1000 + " is long but allowed."]),
        "\n".join(sentence(r) for _ in range(5)) + "\r\n" + sentence(r),
        "Dr. Smith arrived. The U.S. team won. It was 3.5 times larger. Wow! Really? Yes.",
        "One. Two. Three. Four. Five words here now.",
        "Is it? No! Yes... maybe. Fine then. Really done. End.",
        "",
        "   \n  \n",
    ]
    return docs


def fineweb_cases(r: random.Random) -> list[str]:
    docs = []
    for punct in range(0, 7):  # >= 12% of lines end in terminal punctuation (of 30)
        lines = [sentence(r, r.randint(8, 12)).rstrip(".") + ("." if i < punct else "") for i in range(30)]
        docs.append("\n".join(r.sample(lines, len(lines))))
    for short in range(17, 24):  # <= 67% of lines at most 30 characters (of 30)
        lines = [sentence(r, 5)[:30] if i < short else sentence(r, 12) for i in range(30)]
        docs.append("\n".join(r.sample(lines, len(lines))))
    for dup_chars in (0, 10, 20, 30, 40, 60):  # duplicated line characters <= 1%
        body = [sentence(r, 12) for _ in range(40)]
        line = "x" * max(dup_chars, 1) + "."
        docs.append("\n".join(body + ([line, line] if dup_chars else [])))
    for lines in range(8, 16):  # newlines per word <= 0.3 (of 40 words)
        words = words_doc(r, 40).split()
        cut = sorted(r.sample(range(1, 40), lines - 1))
        parts = [" ".join(words[a:b]) for a, b in zip([0] + cut, cut + [40])]
        docs.append("\n".join(p if p.endswith(".") else p + "." for p in parts))
    long_words = "extraordinarily comprehensive infrastructure responsibilities characteristically".split()
    for three in range(0, 13, 2):  # list-like pages: long lines, few words (2 or 3 per line)
        lines = [" ".join(r.choice(long_words) for _ in range(3 if i < three else 2)) + "." for i in range(12)]
        docs.append("\n".join(r.sample(lines, len(lines))))
    docs += ["", " ", "\n\n\n", "word", "Heading\n\n\nBody text of the page.", "a\tb\nc."]
    return docs


def c4_page_cases(r: random.Random) -> list[str]:
    """Pages mixing prose lines with the lines C4 removes or drops the page for, in random order."""
    extras = [
        "Lorem ipsum dolor sit amet, consectetur adipiscing elit.",
        "lorem ipsum",
        "The config is { a: 1 } in this file.",
        "{ not kept",
        "Please enable javascript { and more }.",
        "We use cookies to improve your experience on our site.",
        "Privacy Policy | Terms of Use",
        "Home",
        "Share on Facebook",
        "Back to top...",
    ]
    docs = []
    for _ in range(60):
        lines = [sentence(r) for _ in range(r.randint(2, 7))] + r.sample(extras, r.randint(0, 3))
        r.shuffle(lines)
        docs.append("\n".join(lines))
    return docs


def mixed_cases(r: random.Random, demo: list[str]) -> list[str]:
    """Demo paragraphs re-cut into lines, bullets and repeats, to land near several thresholds at once."""
    docs = []
    for _ in range(150):
        paras = [p for d in r.sample(demo, 3) for p in d.split("\n\n")]
        picked = r.sample(paras, min(len(paras), r.randint(1, 6)))
        style = r.randrange(4)
        if style == 0:
            picked = ["- " + p for p in picked]
        elif style == 1:
            picked = picked + r.sample(picked, min(len(picked), r.randint(1, 2)))
        elif style == 2:
            picked = [s + ("." if s and s[-1] != "." else "") for p in picked for s in p.split(". ")]
        docs.append(("\n" if style != 1 else "\n\n").join(picked))
    return docs


def parity_corpus() -> list[str]:
    demo = generate(N_DEMO, seed=11).column("text").to_pylist()
    r = random.Random(20240611)
    crafted = gopher_quality_cases(r) + gopher_repetition_cases(r) + c4_cases(r) + c4_page_cases(r) + fineweb_cases(r)
    return demo + crafted + mixed_cases(r, demo)


def datatrove_reasons(texts: list[str]) -> dict[str, list[str | None]]:
    out: dict[str, list[str | None]] = {column: [] for column in FAMILIES}
    filters = {column: (cls(), prefix) for column, (cls, prefix) in FAMILIES.items()}
    for i, text in enumerate(texts):
        for column, (f, prefix) in filters.items():
            result = f.filter(Document(text=text, id=str(i)))  # a fresh Document: C4 rewrites kept text
            if result is True:
                out[column].append(None)
            else:
                reason = prefix + result[1]
                out[column].append(RENAMED.get(reason, reason))
    return out


@pytest.fixture(scope="module")
def decisions():
    texts = parity_corpus()
    ours = apply_rules(pa.table({S.TEXT: texts}))
    return texts, {c: ours.column(c).to_pylist() for c in FAMILIES}, datatrove_reasons(texts)


def test_corpus_is_large_and_varied(decisions):
    texts, _, theirs = decisions
    assert len(texts) >= 2000
    for column, reasons in theirs.items():
        dropped = sum(r is not None for r in reasons)
        assert 0.1 * len(texts) <= dropped <= 0.9 * len(texts), column  # both outcomes well represented
        assert len({r for r in reasons if r}) >= 3, column  # several rules of the family fire


@pytest.mark.parametrize("column", list(FAMILIES))
def test_keep_drop_agrees_with_datatrove(decisions, column):
    texts, ours, theirs = decisions
    agree = [(a is None) == (b is None) for a, b in zip(ours[column], theirs[column])]
    disagreements = Counter((b, a) for a, b, ok in zip(ours[column], theirs[column], agree) if not ok)
    rate = sum(agree) / len(texts)
    assert rate >= 0.99, f"{column}: {rate:.4f} agreement; (datatrove, thresher): {disagreements.most_common(5)}"


@pytest.mark.parametrize("column", list(FAMILIES))
def test_reasons_agree_with_datatrove(decisions, column):
    texts, ours, theirs = decisions
    same = sum(a == b for a, b in zip(ours[column], theirs[column]))
    assert same / len(texts) >= 0.98, column


OVERRIDES = {
    S.Q_RULE_GOPHER_QUALITY: dict(min_doc_words=100, max_avg_word_length=8, max_non_alpha_words_ratio=0.9, min_stop_words=4),
    S.Q_RULE_GOPHER_REPETITION: dict(
        dup_line_frac=0.1, dup_para_char_frac=0.05, top_n_grams=((2, 0.1), (3, 0.08)), dup_n_grams=((5, 0.05), (7, 0.03))
    ),
    S.Q_RULE_C4: dict(min_num_sentences=3, min_words_per_line=5, filter_policy=False, filter_javascript=False),
    S.Q_RULE_FINEWEB: dict(line_punct_thr=0.5, short_line_thr=0.3, char_duplicates_ratio=0.05, new_line_ratio=0.1),
}


@pytest.mark.parametrize("column", list(FAMILIES))
def test_overridden_thresholds_agree_with_datatrove(decisions, column):
    texts = decisions[0][:: len(decisions[0]) // 400]
    configs = {
        S.Q_RULE_GOPHER_QUALITY: ("gopher_quality", GopherQualityConfig),
        S.Q_RULE_GOPHER_REPETITION: ("gopher_repetition", GopherRepetitionConfig),
        S.Q_RULE_C4: ("c4", C4Config),
        S.Q_RULE_FINEWEB: ("fineweb", FineWebConfig),
    }
    families = {name: None for name, _ in configs.values()}
    name, config = configs[column]
    families[name] = config(**OVERRIDES[column])
    ours = apply_rules(pa.table({S.TEXT: texts}), **families).column(column).to_pylist()
    f = FAMILIES[column][0](**OVERRIDES[column])
    theirs = [f.filter(Document(text=t, id=str(i))) for i, t in enumerate(texts)]
    agree = sum((a is None) == (b is True) for a, b in zip(ours, theirs)) / len(texts)
    assert agree >= 0.99, column
    assert 0.1 <= sum(b is not True for b in theirs) / len(texts) <= 0.95, column

