"""Language identification: accuracy on text localised on this machine, throughput on realmix.

Labelled set, built from this machine only: the gettext catalogs under
/usr/share/locale/<dir>/LC_MESSAGES/*.mo. The label is the directory's language
(`pt_BR` -> pt, `sr@latin` -> sr, `nb` -> no); English comes from the catalogs'
source strings (msgids). Strings left untranslated (msgstr == msgid) are
dropped; format specifiers, markup and accelerator marks are removed. A document
is several random strings of one catalog joined to 200-500 characters, the
catalogs of a language taken in turn. Only languages the model knows and with
enough catalogs are kept. Interface strings are short and full of technical
terms, so this is harder than prose of the same length.

Reported:
  1. accuracy per language and overall, with the commonest confusions;
  2. calibration: accuracy against the score in bins, and the expected
     calibration error, for `identify` and for py3langid's own `classify`
     (no merging of varieties);
  3. accuracy on long documents (5,000-6,000 characters) read to a prefix of
     100 ... 2,000 characters or whole: what MAX_CHARS costs;
  4. docs/s of `identify` on the first --pool-docs documents of
     ../shared/corpora/realmix/pool.parquet (read in place), at MAX_CHARS and
     whole, how often the two labels agree, and the label distribution;
  5. docs/s of the static embedder (`Embedder(resolve_model("static"))`) on the
     same documents, for scale.

Usage:
    python bench/bench_langid.py
    python bench/bench_langid.py --per-lang 30 --pool-docs 1000 --skip-embed
"""

from __future__ import annotations

import argparse
import gettext
import os
import platform
import random
import re
import time
from collections import Counter, defaultdict
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq

from thresher.operators.langid import MAX_CHARS, _identifier, identify

ROOT = Path(__file__).resolve().parents[1]
POOL = ROOT.parent / "shared" / "corpora" / "realmix" / "pool.parquet"
LOCALE = Path("/usr/share/locale")

# printf and Python format specifiers, {placeholders}, <markup>, $VARIABLES.
_NOISE = re.compile(r"%(\([^)]*\))?[-+ #0]*(\d+|\*)?(\.(\d+|\*))?[hlLqjzt]*[a-zA-Z%]|\{[^{}]*\}|<[^<>]*>|\$\{?\w+\}?")


def _clean(s: str) -> str:
    s = _NOISE.sub(" ", s).replace("_", "").replace("&", "")
    return " ".join(s.split())


def _label(directory: str) -> str:
    lang = re.split(r"[_@.]", directory)[0]
    return "no" if lang == "nb" else lang


def load_catalogs(root: Path, known: set[str], min_chars: int = 1000) -> dict[str, list[list[str]]]:
    """Cleaned strings of each catalog, by language; English from the msgids of every catalog."""
    by_lang: dict[str, list[list[str]]] = defaultdict(list)
    msgids: dict[str, set[str]] = defaultdict(set)  # per gettext domain: the same source strings in every language
    for path in sorted(root.glob("*/LC_MESSAGES/*.mo")):
        lang = _label(path.parts[-3])
        if lang == "en" or lang not in known:
            continue
        try:
            with path.open("rb") as f:
                catalog = gettext.GNUTranslations(f)._catalog  # no public way to list a catalog's entries
        except (OSError, UnicodeDecodeError, IndexError):  # a few catalogs on disk are malformed
            continue
        strings = []
        for key, value in catalog.items():
            source = key[0] if isinstance(key, tuple) else key
            if not source or value == source:
                continue
            msgids[path.stem].add(_clean(source))
            text = _clean(value)
            if sum(c.isalpha() for c in text) >= 3:
                strings.append(text)
        if sum(map(len, strings)) >= min_chars:
            by_lang[lang].append(strings)
    by_lang["en"] = [sorted(s) for s in msgids.values() if sum(map(len, s)) >= min_chars]
    return dict(by_lang)


def make_docs(catalogs: dict[str, list[list[str]]], per_lang: int, lo: int, hi: int, seed: int) -> list[tuple[str, str]]:
    """(label, text) pairs: per language up to per_lang documents of lo-hi characters, one catalog each."""
    rng = random.Random(seed)
    docs = []
    for lang in sorted(catalogs):
        pools = [rng.sample(s, len(s)) for s in catalogs[lang]]
        rng.shuffle(pools)
        made, i = [], 0
        while len(made) < per_lang and pools:
            i %= len(pools)
            pool = pools[i]
            target, parts, n = rng.randint(lo, hi), [], 0
            while pool and n < target:
                parts.append(pool.pop())
                n += len(parts[-1]) + 1
            if n < target:
                del pools[i]  # this catalog is used up
                continue
            text = " ".join(parts)
            if len(text) > hi:
                text = text[:hi].rsplit(" ", 1)[0]
            made.append((lang, text))
            i += 1
        docs += made
    return docs


def accuracy_table(docs: list[tuple[str, str]], langs: list[str], scores: np.ndarray) -> None:
    by_lang: dict[str, list[tuple[bool, float]]] = defaultdict(list)
    confusions: Counter[tuple[str, str]] = Counter()
    for (truth, _), pred, score in zip(docs, langs, scores):
        by_lang[truth].append((pred == truth, float(score)))
        if pred != truth:
            confusions[(truth, pred)] += 1
    print(f"{'lang':<6}{'docs':>6}{'accuracy':>10}{'mean score':>12}")
    for lang in sorted(by_lang):
        hits = by_lang[lang]
        print(f"{lang:<6}{len(hits):>6}{np.mean([h for h, _ in hits]):>10.3f}{np.mean([s for _, s in hits]):>12.3f}")
    correct = sum(h for hits in by_lang.values() for h, _ in hits)
    per_lang = np.mean([np.mean([h for h, _ in hits]) for hits in by_lang.values()])
    print(f"overall: {correct}/{len(docs)} = {correct / len(docs):.3f}; mean of per-language accuracy {per_lang:.3f}")
    print("commonest confusions (truth -> predicted):", ", ".join(f"{t}->{p} {n}" for (t, p), n in confusions.most_common(12)))


def calibration(name: str, correct: np.ndarray, scores: np.ndarray) -> None:
    scores = scores.astype(np.float64)  # a float32 array would round the top edge down to 1.0
    edges = [0.0, 0.25, 0.5, 0.75, 0.9, 0.99, 1.0 + 1e-9]
    print(f"{name}:")
    print(f"  {'score bin':<14}{'docs':>6}{'mean score':>12}{'accuracy':>10}")
    ece = 0.0
    for a, b in zip(edges, edges[1:]):
        inside = (scores >= a) & (scores < b)
        if inside.any():
            conf, acc = scores[inside].mean(), correct[inside].mean()
            ece += inside.mean() * abs(acc - conf)
            print(f"  [{a:.2f}, {min(b, 1.0):.2f}){'':<2}{inside.sum():>6}{conf:>12.3f}{acc:>10.3f}")
    print(f"  accuracy {correct.mean():.3f}, mean score {scores.mean():.3f}, expected calibration error {ece:.3f}")


def timed(fn, repeats: int) -> tuple[object, float]:
    best, out = float("inf"), None
    for _ in range(repeats):
        t = time.perf_counter()
        out = fn()
        best = min(best, time.perf_counter() - t)
    return out, best


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--per-lang", type=int, default=10, help="short documents per language")
    ap.add_argument("--long-per-lang", type=int, default=3, help="long documents per language (prefix sweep)")
    ap.add_argument("--min-catalogs", type=int, default=5, help="languages with fewer usable catalogs are left out")
    ap.add_argument("--pool-docs", type=int, default=2000)
    ap.add_argument("--repeats", type=int, default=3, help="timed runs at MAX_CHARS; the fastest is reported")
    ap.add_argument("--skip-embed", action="store_true")
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()
    print(f"python {platform.python_version()}, {os.cpu_count()} CPUs, load average {os.getloadavg()[0]:.2f}")

    t = time.perf_counter()
    model = _identifier()
    print(f"model load: {time.perf_counter() - t:.2f} s; MAX_CHARS = {MAX_CHARS}")

    catalogs = load_catalogs(LOCALE, set(model.labels))
    catalogs = {k: v for k, v in catalogs.items() if len(v) >= args.min_catalogs}
    docs = make_docs(catalogs, args.per_lang, 200, 500, args.seed)
    n_langs = len({lang for lang, _ in docs})
    lengths = [len(t) for _, t in docs]
    print(f"\n## 1. Accuracy: {len(docs)} documents in {n_langs} languages from {LOCALE}/*/LC_MESSAGES/*.mo")
    print(f"document length: median {int(np.median(lengths))}, range {min(lengths)}-{max(lengths)} characters")
    texts = [t for _, t in docs]
    langs, scores = identify(texts)
    accuracy_table(docs, langs, scores)

    print("\n## 2. Calibration on the same documents")
    truth = np.array([lang for lang, _ in docs])
    calibration("identify (varieties merged into ISO 639-1)", np.array(langs) == truth, scores)
    raw = [model.classify(t) for t in texts]
    calibration(
        "py3langid classify (norm_probs, no merging)",
        np.array([lang for lang, _ in raw]) == truth,
        np.array([p for _, p in raw]),
    )

    long_docs = make_docs(catalogs, args.long_per_lang, 5000, 6000, args.seed + 1)
    long_texts, long_truth = [t for _, t in long_docs], np.array([lang for lang, _ in long_docs])
    print(f"\n## 3. Prefix length: {len(long_docs)} documents of 5,000-6,000 characters, {len(set(long_truth))} languages")
    print(f"  {'prefix':<8}{'accuracy':>10}{'mean score':>12}{'docs/s':>10}")
    for prefix in (100, 250, 500, 1000, MAX_CHARS, None):
        (pred, sc), secs = timed(lambda: identify(long_texts, max_chars=prefix), 1)
        acc = (np.array(pred) == long_truth).mean()
        print(f"  {prefix or 'whole':<8}{acc:>10.3f}{sc.mean():>12.3f}{len(long_texts) / secs:>10.0f}")

    table = pq.read_table(POOL, columns=["text", "source"]).slice(0, args.pool_docs)
    pool = table.column("text").to_pylist()
    chars = sum(map(len, pool))
    print(f"\n## 4. Throughput on realmix: first {len(pool)} documents of pool.parquet, {chars / len(pool):.0f} characters on average")
    (pool_langs, pool_scores), secs = timed(lambda: identify(pool), args.repeats)
    print(f"  identify, MAX_CHARS={MAX_CHARS}: {len(pool) / secs:,.0f} docs/s ({secs:.2f} s, best of {args.repeats})")
    (whole_langs, _), whole_secs = timed(lambda: identify(pool, max_chars=None), 1)
    print(f"  identify, whole text:    {len(pool) / whole_secs:,.0f} docs/s ({whole_secs:.2f} s, {chars / whole_secs / 1e6:.2f} M characters/s)")
    long_rows = [i for i, t in enumerate(pool) if len(t) > MAX_CHARS]
    same = [pool_langs[i] == whole_langs[i] for i in long_rows]
    print(f"  documents over {MAX_CHARS} characters: {len(long_rows)}; same label from the prefix as from the whole text: {np.mean(same):.3f}")
    sources = table.column("source").to_pylist()
    changed = Counter(f"{sources[i]}: {whole_langs[i]}->{pool_langs[i]}" for i, s in zip(long_rows, same) if not s)
    print("  label changes by source (whole->prefix):", ", ".join(f"{k} {n}" for k, n in changed.most_common(8)) or "none")
    print("  labels:", ", ".join(f"{k or '(empty)'} {n}" for k, n in Counter(pool_langs).most_common(12)))
    print(f"  score >= 0.65: {(pool_scores >= 0.65).mean():.3f} of documents; median score {np.median(pool_scores):.3f}")

    if not args.skip_embed:
        from thresher.operators.embed import Embedder, resolve_model

        embedder = Embedder(resolve_model("static"), device="cpu")
        embedder.encode(pool[:64])  # warm-up
        _, secs = timed(lambda: embedder.encode(pool), args.repeats)
        print(f"\n## 5. Static embedder (model2vec) on the same documents: {len(pool) / secs:,.0f} docs/s ({secs:.2f} s, best of {args.repeats})")


if __name__ == "__main__":
    main()
