"""Near-duplicate recall and precision on planted copies of real text (realmix's pool), per threshold.

Each of N originals (pool documents of at least 200 words) gets four copies,
appended after the pool: an exact copy, the first 90% of its words, its
paragraphs moved (the first third of its lines, or of its words when it has
under three lines, moved to the end), and 3% of its words replaced by words
drawn from the pool. The finder (operators/dedup.py, bands and rows from the
threshold) runs over pool + copies in that order, so a found copy names a
member of its family.

Each threshold's bands-from-the-threshold row is also resolved on the workers
(`pipeline/dedup_shuffle.py`, a local Ray with 2 CPUs, the corpus as four
signature pieces) and compared with the single-process detector given the same
keep order (input order): the last column says whether every flag is the same.

- recall, per kind: copies flagged as a duplicate of their own family;
- precision: flags that are right, where right = the flagged document and the
  one it names are of one planted family, or their exact Jaccard similarity
  (of the 5-word shingle sets the finder hashes) is at least the threshold
  (realmix has near duplicates of its own).

    python bench/bench_neardup.py [--originals 300] [--thresholds 0.5,0.6,0.7,0.8]
"""

from __future__ import annotations

import argparse
import random
import tempfile
import time
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import ray

from thresher.operators import schema as S
from thresher.operators.dedup import NearDuplicates, candidate_probability, lsh_for_threshold, normalised_words

from thresher.pipeline import dedup_shuffle, ids as positions
from thresher.pipeline.seen import Order

REALMIX = Path(__file__).resolve().parents[2] / "shared" / "corpora" / "realmix" / "pool.parquet"
KINDS = ("exact", "truncated_10pct", "paragraphs_moved", "words_edited_3pct")


def copies(text: str, vocabulary: list[str], rng: random.Random) -> dict[str, str]:
    words = text.split()
    lines = [ln for ln in text.split("\n") if ln.strip()]
    if len(lines) >= 3:
        cut = max(1, len(lines) // 3)
        moved = "\n".join(lines[cut:] + lines[:cut])
    else:
        cut = len(words) // 3
        moved = " ".join(words[cut:] + words[:cut])
    edited = list(words)
    for i in rng.sample(range(len(words)), max(1, round(0.03 * len(words)))):
        edited[i] = rng.choice(vocabulary)
    return {"exact": text, "truncated_10pct": " ".join(words[: int(len(words) * 0.9)]), "paragraphs_moved": moved, "words_edited_3pct": " ".join(edited)}


def shingles(text: str, n: int = 5) -> set[tuple[str, ...]]:
    words = normalised_words([text])[0].to_list()
    return {tuple(words[i:i + n]) for i in range(max(1, len(words) - n + 1))} if words else set()


def jaccard(a: str, b: str) -> float:
    x, y = shingles(a), shingles(b)
    return len(x & y) / len(x | y) if x | y else 0.0


def same_on_workers(table: pa.Table, threshold: float) -> bool:
    """The flags of the shuffles on Ray workers equal the single-process detector's, in input order."""
    finder = NearDuplicates(threshold=threshold)
    kept, sig = finder.signatures(table)
    rows = table.filter(pa.array(kept))
    offsets = np.arange(rows.num_rows)
    files = {f"piece-{i}": i for i in range(4)}
    piece = np.minimum(offsets * 4 // max(rows.num_rows, 1), 3)
    where = pa.table({S.DOC_ID: rows.column(S.DOC_ID), S.INPUT_FILE: [f"piece-{i}" for i in piece], S.INPUT_OFFSET: offsets})
    pos = positions.positions(where, files)
    single = NearDuplicates(threshold=threshold)
    single.add_signatures(rows.column(S.DOC_ID).combine_chunks(), sig, rank=np.arange(len(pos)))  # input order: the pieces are its runs
    expected = single.resolve()
    with tempfile.TemporaryDirectory() as tmp:
        order = Order.write(Path(tmp) / "order", [(pos[piece == i], np.zeros(int((piece == i).sum()), np.int64)) for i in range(4)])
        paths = []
        for i in range(4):
            mine = piece == i
            t = where.filter(pa.array(mine)).append_column("sig", pa.FixedSizeListArray.from_arrays(pa.array(sig[mine].reshape(-1), pa.uint32()), finder.num_perm))
            pq.write_table(t, f"{tmp}/piece-{i}.parquet")
            paths.append((f"{tmp}/piece-{i}.parquet", i))
        dedup_shuffle.resolve_near(NearDuplicates(threshold=threshold), paths, files, order, 2, Path(tmp), Path(tmp) / "near")
        got = NearDuplicates.load(Path(tmp) / "near")
    return dict(zip(got.duplicate_ids_.to_pylist(), got.kept_ids_.to_pylist())) == expected


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--originals", type=int, default=300)
    ap.add_argument("--thresholds", default="0.5,0.6,0.7,0.8")
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()
    rng = random.Random(args.seed)
    pool = pq.read_table(REALMIX, columns=["id", "text"])
    ids, texts = pool.column("id").to_pylist(), pool.column("text").to_pylist()
    vocabulary = sorted({w for t in texts[:500] for w in t.split() if w.isalpha()})
    originals = rng.sample([i for i, t in enumerate(texts) if len(t.split()) >= 200], args.originals)
    family = {d: d for d in ids}
    kind_of: dict[str, str] = {}
    all_ids, all_texts = list(ids), list(texts)
    for i in originals:
        for kind, text in copies(texts[i], vocabulary, rng).items():
            cid = f"{ids[i]}~{kind}"
            all_ids.append(cid)
            all_texts.append(text)
            family[cid], kind_of[cid] = ids[i], kind
    text_of = dict(zip(all_ids, all_texts))
    table = pa.table({S.DOC_ID: all_ids, S.TEXT: all_texts})
    print(f"realmix pool {len(ids):,} documents + {len(kind_of):,} planted copies of {args.originals} originals (>= 200 words)")
    for k in KINDS:
        js = sorted(jaccard(text_of[family[c]], text_of[c]) for c, kk in kind_of.items() if kk == k)
        print(f"  {k}: exact Jaccard to the original, median {js[len(js) // 2]:.3f}, 5th percentile {js[len(js) // 20]:.3f}")
    print()
    ray.init(address="local", num_cpus=2, include_dashboard=False, log_to_driver=False)
    print("| threshold | bands x rows | P(candidate) at threshold | " + " | ".join(f"recall {k}" for k in KINDS) + " | recall | flags | precision | seconds | same on workers |")
    print("|---|---|---|" + "---|" * len(KINDS) + "---|---|---|---|---|")
    for t in (float(x) for x in args.thresholds.split(",")):
        for bands, rows in ((None, None), (16, 8)):  # from the threshold; the fixed 16 x 8 used before
            if bands is not None and (bands, rows) == lsh_for_threshold(t, 128):
                continue
            start = time.perf_counter()
            finder = NearDuplicates(threshold=t, bands=bands, rows=rows).fit([table])
            secs = time.perf_counter() - start
            flagged = dict(zip(finder.duplicate_ids_.to_pylist(), finder.kept_ids_.to_pylist()))

            def found(c: str) -> bool:  # named its own family, or a near duplicate its original already had in the pool
                return c in flagged and (family[flagged[c]] == family[c] or jaccard(text_of[family[c]], text_of[flagged[c]]) >= t)

            recall = {k: sum(1 for c, kk in kind_of.items() if kk == k and found(c)) / args.originals for k in KINDS}
            total = sum(1 for c in kind_of if found(c)) / len(kind_of)
            right = sum(1 for d, k in flagged.items() if family[d] == family[k] or jaccard(text_of[d], text_of[k]) >= t)
            p = candidate_probability(t, finder.bands, finder.rows)
            how = "" if bands is None else " (fixed)"
            same = "" if bands is not None else ("yes" if same_on_workers(table, t) else "NO")
            print(f"| {t} | {finder.bands} x {finder.rows}{how} | {p:.3f} | " + " | ".join(f"{recall[k]:.3f}" for k in KINDS)
                  + f" | {total:.3f} | {len(flagged):,} | {right / max(len(flagged), 1):.3f} | {secs:.1f} | {same} |")


if __name__ == "__main__":
    main()
