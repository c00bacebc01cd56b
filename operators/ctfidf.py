"""Domain names from their documents: class-based TF-IDF (c-TF-IDF, Grootendorst 2022, BERTopic).

Each class's documents are treated as one document. With c(t, k) the count of
term t in class k:

    tf(t, k) = c(t, k) / sum_t' c(t', k)          (L1-normalised per class)
    idf(t)   = log(1 + A / f(t)),  f(t) = sum_k c(t, k),  A = int(mean_k sum_t c(t, k))

and a class is named by its terms of highest tf x idf: frequent in the class,
rare across classes. This is BERTopic's `ClassTfidfTransformer` with its
defaults (A truncated to an integer as it does).

Deviations: BERTopic counts with scikit-learn's `CountVectorizer` (tokens of
two or more word characters, no stop words unless given). Here a term is a
lowercased run of at least three letters, English stop words removed
(`STOP_WORDS`), so digits and function words never name a domain.
"""

from __future__ import annotations

import math
import re
from collections import Counter
from collections.abc import Iterable, Mapping

_TERM = re.compile(r"[^\W\d_]{3,}")

STOP_WORDS = frozenset(
    """about above after again against all also among and any are aren because been before being below between both but can
    cannot could did does doing down during each either else ever every few for from further had has have having her here
    hers herself him himself his how however into its itself just least less let like made make many may more most much must
    near neither nor not now off often once one only other others our ours ourselves out over own per rather said same see
    seen several shall she should since some such than that the their theirs them themselves then there these they this those
    though through thus too under until upon use used using very was were what when where whether which while who whom whose
    why will with within without would yet you your yours yourself yourselves""".split()
)


def terms(text: str) -> list[str]:
    """The terms c-TF-IDF counts in a text: lowercased runs of three or more letters, stop words dropped."""
    return [t for t in _TERM.findall(text.lower()) if t not in STOP_WORDS]


def class_terms(docs_by_class: Mapping[str, Iterable[str]], top: int = 6) -> dict[str, list[tuple[str, float]]]:
    """Each class's `top` terms by c-TF-IDF weight, highest first (ties by term), with their weights."""
    counts = {k: Counter(t for doc in docs for t in terms(doc)) for k, docs in docs_by_class.items()}
    totals = {k: sum(c.values()) for k, c in counts.items()}
    if not counts:
        return {}
    avg = int(sum(totals.values()) / len(totals))
    freq: Counter = Counter()
    for c in counts.values():
        freq.update(c)
    out = {}
    for k, c in counts.items():
        weights = [(t, n / totals[k] * math.log(1 + avg / freq[t])) for t, n in c.items()]
        out[k] = sorted(weights, key=lambda tw: (-tw[1], tw[0]))[:top]
    return out
