"""The select phase's pick pass: each group's eligible documents to its strategy's `pick`, one Ray task per group.

Strategies that choose a subset group by group (`operators/subset_select.py`)
need every eligible document of a group together, with columns the score
files may not hold (facility location and max-min read `emb` from the embed
phase's output; the score files drop it). Eligibility is decided where the
select phase decides it, in its histogram pass over the score files:
`Eligible` keeps each eligible document's 64-bit doc_id digest and group
there with the score the strategy gave it in that pass (16 bytes a document).
The pass then reads the strategy's source
phase, keeps the valid rows whose digest is eligible and tags each with its
group and that score (`pick_score`; a broadcast hash join: one small sorted array shipped to every read
task, no shuffle), and groups by it with Ray Data's `groupby(...).map_groups`,
as `semdedup_phase` does, so a task holds one group. Ray Data's
`Dataset.join` would shuffle both sides first, and cost about 13 s more per
pass on a 2-CPU local Ray even for a toy pool. The group-by runs Ray's
sort-based shuffle (see `pick_pass`).

The picks (doc_id, group, rank in pick order, n_tokens) are saved as
`picks.parquet` in the select phase's directory.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import ray.data
from ray.data.context import ShuffleStrategy

from thresher.operators import schema as S
from thresher.operators.selection import uniform_from_ids
from thresher.operators.subset_select import digests, member

from . import versions

PICKS_FILE = "picks.parquet"


def _picks_schema() -> pa.Schema:
    return pa.schema([(S.DOC_ID, pa.string()), (S.DOMAIN, pa.string()), ("rank", pa.int32()), (S.N_TOKENS, pa.int64())])


class Eligible:
    """The eligible documents the histogram pass saw: 64-bit doc_id digests, the group (histogram key) and score of each."""

    def __init__(self):
        self._parts: list[tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]] = []

    def add(self, doc_ids: pa.ChunkedArray, keys: np.ndarray, scores: np.ndarray) -> None:
        names, inverse = np.unique(np.asarray(keys).astype(str), return_inverse=True)
        self._parts.append((digests(doc_ids.to_pylist()), names, inverse.astype(np.int32), np.asarray(scores, np.float32)))

    def merge(self, other: "Eligible") -> None:
        """Another pass's documents after these (histogram tasks over later files)."""
        self._parts += other._parts

    def arrays(self, keys: list[str]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(sorted digests, index of each one's group in `keys`, its score): what the join ships to every read task."""
        from thresher.operators.histogram import index_of

        if not self._parts:
            return np.zeros(0, np.uint64), np.zeros(0, np.int32), np.zeros(0, np.float32)
        sorted_keys = np.asarray(keys, str)
        d = np.concatenate([p[0] for p in self._parts])
        code = np.concatenate([index_of(sorted_keys, names)[inv] for _, names, inv, _ in self._parts]).astype(np.int32)
        score = np.concatenate([p[3] for p in self._parts])
        order = np.argsort(d, kind="stable")
        return d[order], code[order], score[order]


def tag_eligible(batch: pa.Table, digest: np.ndarray, code: np.ndarray, score: np.ndarray, keys: list[str]) -> pa.Table:
    """The valid rows of a phase output batch that are eligible, with their group in `domain` and their histogram-pass
    score in `pick_score` (the join's map side)."""
    batch = batch.filter(batch.column(S.INVALID_REASON).is_null())  # a repeated id's later rows share its digest
    hit, at = member(digest, digests(batch.column(S.DOC_ID).to_pylist()))
    out = batch.filter(pa.array(hit)).drop_columns([S.INVALID_REASON])
    out = out.append_column(S.DOMAIN, pa.array(np.asarray(keys, dtype=object)[code[at[hit]]].tolist(), pa.string()))
    return out.append_column(S.PICK_SCORE, pa.array(score[at[hit]], pa.float32()))


def pick_group(group: pa.Table, strategy, budgets: dict[str, int]) -> pa.Table:
    """One group's picks as one row: the group, its picked doc_ids and their tokens in pick order, the pick's facts (JSON)."""
    group = group.sort_by(S.DOC_ID)  # rows arrive in shuffle order; sorted, positions (and ties) are the same on every run
    key = group.column(S.DOMAIN)[0].as_py()
    pos, facts = strategy.pick(group, budgets[key], strategy.unit_)
    take = pa.array(pos, pa.int64())
    return pa.table(
        {
            S.DOMAIN: pa.array([key], pa.string()),
            "doc_ids": pa.array([group.column(S.DOC_ID).take(take).to_pylist()], pa.list_(pa.string())),
            "tokens": pa.array([group.column(S.N_TOKENS).take(take).to_pylist()], pa.list_(pa.int64())),
            "facts": pa.array([json.dumps(facts)], pa.string()),
        }
    )


def pick_pass(d: Path, needed: dict, strategy, eligible: Eligible) -> dict:
    """Run the strategy's picks over its source phase, save them to d / picks.parquet and hand them to the strategy."""
    budgets = strategy.budgets()
    digest, code, score = eligible.arrays(strategy.keys_)
    wanted = np.asarray([budgets[k] > 0 for k in strategy.keys_], bool)[code] if len(code) else np.zeros(0, bool)
    digest, code, score = digest[wanted], code[wanted], score[wanted]
    rows: list[pa.Table] = []
    if len(digest):
        columns = sorted({S.DOC_ID, S.INVALID_REASON, S.N_TOKENS, *strategy.pick_columns})
        groups = len(np.unique(code))
        source = ray.data.read_parquet(str(needed[strategy.source] / "data"), columns=columns)
        # This Dataset's own copy of the context: Ray's sort-based shuffle runs in plain tasks; the default
        # hash shuffle starts aggregator actors on every pass (pick pass of 600 docs, 2 local CPUs: 12-20 s, sorted 2.5 s).
        source.context.shuffle_strategy = ShuffleStrategy.SORT_SHUFFLE_PULL_BASED
        ds = (
            source.map_batches(tag_eligible, fn_kwargs={"digest": digest, "code": code, "score": score, "keys": list(strategy.keys_)}, batch_format="pyarrow", batch_size=4096)
            .groupby(S.DOMAIN, num_partitions=max(1, min(groups, 200)))
            .map_groups(pick_group, fn_args=[strategy, budgets], batch_format="pyarrow")
        )
        rows = list(ds.iter_batches(batch_format="pyarrow", batch_size=None))
    found = pa.concat_tables(rows) if rows else pa.table({S.DOMAIN: pa.array([], pa.string()), "doc_ids": pa.array([], pa.list_(pa.string())), "tokens": pa.array([], pa.list_(pa.int64())),
        "facts": pa.array([], pa.string())})
    found = found.sort_by(S.DOMAIN)
    parts, facts = [], {}
    for r in found.to_pylist():
        n = len(r["doc_ids"])
        parts.append(pa.table({S.DOC_ID: r["doc_ids"], S.DOMAIN: [r[S.DOMAIN]] * n, "rank": np.arange(n, dtype=np.int32), S.N_TOKENS: np.asarray(r["tokens"], np.int64)}, schema=_picks_schema()))
        if json.loads(r["facts"]):
            facts[r[S.DOMAIN]] = json.loads(r["facts"])
    picks = pa.concat_tables(parts) if parts else _picks_schema().empty_table()
    pq.write_table(picks, d / PICKS_FILE)
    strategy.set_picks(picks, facts)
    return {"picks": picks.num_rows, "picked_groups": len(parts)}


def previous_embeddings(version: str | None, embed_dir: Path, most: int, seed: int) -> tuple[np.ndarray, dict]:
    """The embeddings of what an earlier version selected, for a strategy that remembers it (UDS's memory).

    At most `most` of its documents (those of smallest seeded hash), found in this pool's embed phase by doc_id
    (a broadcast filter over the read tasks); documents the pool no longer holds are counted, not found.
    """
    chosen = list(versions.selected_ids(Path(version))) if version else []
    if len(chosen) > most:
        chosen = [chosen[i] for i in np.argsort(uniform_from_ids(f"memory-{seed}", chosen), kind="stable")[:most]]
    facts = {"version": Path(version).name if version else None, "documents": len(chosen)}
    if not chosen:
        return np.zeros((0, 0), np.float32), facts | {"in_pool": 0}
    wanted = np.sort(digests(chosen))
    found = ray.data.read_parquet(str(embed_dir / "data"), columns=[S.DOC_ID, S.EMB]).map_batches(
        lambda t: t.filter(pa.array(member(wanted, digests(t.column(S.DOC_ID).to_pylist()))[0])), batch_format="pyarrow").take_all()
    order = {d: i for i, d in enumerate(chosen)}
    found.sort(key=lambda r: order[r[S.DOC_ID]])
    emb = np.stack([np.asarray(r[S.EMB], np.float32) for r in found]) if found else np.zeros((0, 0), np.float32)
    return emb, facts | {"in_pool": len(found)}
