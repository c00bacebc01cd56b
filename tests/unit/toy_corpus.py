"""A small synthetic corpus for operator tests: topical prose, planted duplicates and junk.

Every row carries its truth (`topic`, `planted`, `dup_of`), so a test can score
an operator against it. It is built for the properties those tests rely on,
not for realism:

- topics have disjoint content words (they share only function words and a
  few general ones), so n-grams tell a topic apart;
- a clean document is 200-335 words of random sentences, so two of them share
  almost no word 5-gram, while a near duplicate (two words replaced, one
  upper-cased) keeps a word 5-gram Jaccard of at least 0.9 with its original;
- an exact duplicate differs from its original only in case and spacing,
  which duplicate detection normalises away;
- junk has no topic, and each kind stands out in one heuristic signal:
  repeated menu lines (boilerplate), no function words (keyword spam), no
  letters (gibberish).

Separate from pipeline/package/demo_corpus.py on purpose: operator tests should not
move when the demo generator changes.
"""

from __future__ import annotations

import numpy as np
import pyarrow as pa

from thresher.operators import schema as S

TOPICS = {
    "medicine": "patient doctor clinic dose symptom therapy nurse vaccine fever tablet diagnosis surgeon "
    "ward injury infection allergy pharmacy pulse recovery antibody",
    "programming": "compiler function variable loop module debugger pointer array thread runtime syntax "
    "library kernel commit branch parser integer bytecode linker stack",
    "cooking": "oven flour butter recipe saucepan garlic onion simmer dough pastry spice ladle skillet "
    "broth vinegar whisk batter pepper roast ginger",
    "astronomy": "telescope planet orbit comet galaxy nebula asteroid eclipse meteor quasar satellite "
    "crater supernova cosmos pulsar gravity redshift equinox solstice lunar",
}
GENERAL = "people time year work way part place case point group".split()
FUNCTION = "the of and to with that have be a in is for on as by from".split()
MENU = (
    "home about contact blog shop news login register careers support faq sitemap events gallery archive press "
    "partners pricing downloads forum"
).split()
SPAM = "buy cheap best deal discount free online sale price shop offer review top official coupon outlet".split()
NO_LETTERS = list("#$%&*@!~^<>{}[]0123456789")

# Share of each planted kind; clean prose takes the rest.
FRACTIONS = {"exact_dup": 0.08, "near_dup": 0.12, "boilerplate": 0.06, "keyword_spam": 0.06, "gibberish": 0.06}
JUNK = ("boilerplate", "keyword_spam", "gibberish")

Sentences = list[list[str]]


def _prose(rng: np.random.Generator, topic: str) -> Sentences:
    """200-335 words in sentences of 8-15: 40% function words, 10% general ones, the rest the topic's."""
    lengths = rng.integers(8, 16, 40)  # 40 x 8 >= 320 words
    lengths = lengths[: np.searchsorted(np.cumsum(lengths), rng.integers(200, 321)) + 1]
    n = int(lengths.sum())
    kind = rng.random(n)
    words = np.where(
        kind < 0.4,
        rng.choice(FUNCTION, n),
        np.where(kind < 0.5, rng.choice(GENERAL, n), rng.choice(TOPICS[topic].split(), n)),
    )
    return [s.tolist() for s in np.split(words, np.cumsum(lengths)[:-1])]


def _render(sentences: Sentences) -> str:
    """Four sentences a line."""
    text = [" ".join(s) for s in sentences]
    text = [t[0].upper() + t[1:] + "." for t in text]
    return "\n".join(" ".join(text[i : i + 4]) for i in range(0, len(text), 4))


def _near_copy(rng: np.random.Generator, sentences: Sentences, topic: str) -> str:
    copy = [list(s) for s in sentences]
    flat = [(i, j) for i, s in enumerate(copy) for j in range(len(s))]
    picks = rng.choice(len(flat), 3, replace=False)
    for p in picks[:2]:
        i, j = flat[p]
        copy[i][j] = rng.choice([w for w in TOPICS[topic].split() if w != copy[i][j]])
    i, j = flat[picks[2]]
    copy[i][j] = copy[i][j].upper()
    return _render(copy)


def _boilerplate(rng: np.random.Generator) -> str:
    def menu() -> str:
        return " | ".join(rng.choice(MENU, 5, replace=False)).title()

    site = "".join(rng.choice(list("abcdefghijklmnopqrstuvwxyz"), 8))
    footer = f"Copyright {rng.integers(1990, 2030)} {site}. All rights reserved."
    return "\n".join([menu()] * 3 + [footer] + [menu()] * 3)


def _keyword_spam(rng: np.random.Generator) -> str:
    return " ".join(rng.choice(SPAM, rng.integers(60, 150)))


def _gibberish(rng: np.random.Generator) -> str:
    tokens = ["".join(rng.choice(NO_LETTERS, rng.integers(3, 10))) for _ in range(rng.integers(50, 120))]
    return "\n".join(" ".join(tokens[i : i + 10]) for i in range(0, len(tokens), 10))


def generate(n_docs: int, seed: int = 0) -> pa.Table:
    """`n_docs` rows (doc_id, text, topic, planted, dup_of) in a shuffled order; same arguments, same table.

    `dup_of` is the doc_id of a duplicate's original (always a clean document), null otherwise;
    `topic` is null for junk.
    """
    rng = np.random.default_rng(seed)
    counts = {kind: round(share * n_docs) for kind, share in FRACTIONS.items()}
    n_clean = n_docs - sum(counts.values())
    topics: list[str | None] = [str(t) for t in rng.choice(list(TOPICS), n_clean)]
    prose = [_prose(rng, t) for t in topics]
    texts = [_render(p) for p in prose]
    planted, orig = ["clean"] * n_clean, [-1] * n_clean

    for i in rng.choice(n_clean, counts["exact_dup"], replace=False):
        texts.append(texts[i].upper().replace(" ", "  "))
        topics.append(topics[i])
        planted.append("exact_dup")
        orig.append(i)
    for i in rng.choice(n_clean, counts["near_dup"], replace=False):
        texts.append(_near_copy(rng, prose[i], topics[i]))
        topics.append(topics[i])
        planted.append("near_dup")
        orig.append(i)
    for kind, make in zip(JUNK, (_boilerplate, _keyword_spam, _gibberish)):
        for _ in range(counts[kind]):
            texts.append(make(rng))
            topics.append(None)
            planted.append(kind)
            orig.append(-1)

    order = rng.permutation(n_docs)  # row r of the table is document order[r]
    doc_id = np.empty(n_docs, object)
    doc_id[order] = [f"doc-{r:05d}" for r in range(n_docs)]
    return pa.table(
        {
            S.DOC_ID: pa.array(doc_id[order], pa.string()),
            S.TEXT: pa.array([texts[i] for i in order], pa.string()),
            "topic": pa.array([topics[i] for i in order], pa.string()),
            "planted": pa.array([planted[i] for i in order], pa.string()),
            "dup_of": pa.array([doc_id[orig[i]] if orig[i] >= 0 else None for i in order], pa.string()),
        }
    )
