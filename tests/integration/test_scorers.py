"""Issue-3 scorers inside a real job on the demo corpus (local Ray, static embedder)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
import pytest

from thresher.demo_corpus import LOW_QUALITY_KINDS, generate
from thresher.pipeline.runner import keys_for, run

from .helpers import make_spec, write_corpus


def _auc(pos: np.ndarray, neg: np.ndarray) -> float:
    """P(score of a random positive > score of a random negative), ties counting half."""
    scores = np.concatenate([pos, neg])
    ranks = np.argsort(np.argsort(scores, kind="stable"), kind="stable") + 1.0
    for v in np.unique(scores):  # average ranks of ties
        m = scores == v
        ranks[m] = ranks[m].mean()
    return float((ranks[: len(pos)].sum() - len(pos) * (len(pos) + 1) / 2) / (len(pos) * len(neg)))


@pytest.fixture(scope="module")
def scored(local_ray, tmp_path_factory):
    root = tmp_path_factory.mktemp("scorers")
    corpus = write_corpus(root / "corpus", 2500)
    side = generate(1500, seed=99)  # other documents from the same generator
    clean = side.filter(pc.equal(side.column("planted"), "clean"))
    pq.write_table(clean, root / "reference.parquet")
    pq.write_table(clean.filter(pc.equal(clean.column("topic"), "medicine")), root / "medicine.parquet")
    corpus_table = pq.read_table(corpus)
    pq.write_table(corpus_table.append_column("my_score", pa.array(np.arange(corpus_table.num_rows, dtype=np.float64))), root / "with_score.parquet")
    spec = make_spec(
        root / "with_score.parquet",
        root / "out",
        scorers={
            "classifier": {"reference": {"paths": [str(root / "reference.parquet")]}},
            "dsir": {"target": {"paths": [str(root / "medicine.parquet")]}},
            "target_sim": {"target": {"paths": [str(root / "medicine.parquet")]}, "k": 5},
            "columns": [{"column": "my_score", "higher_is_better": False}],
            "dedup": {},
            "rules": {"c4": {"min_num_sentences": 3}},
            "semdedup": {"epsilon": 0.02},
        },
        selection={
            "strategy": "dsir",
            "budget": {"unit": "docs", "amount": 250},
            "filters": [],
            "exclude": ["d_exact_dup", "d_near_dup", "d_semdup"],
        },
    )
    m = run(spec, log=lambda m: None, progress=False)
    work = Path(spec.output.path).with_suffix(".work")
    table = pq.read_table(work / f"score-{keys_for(spec)['score']}" / "data")
    return spec, m, table


def test_classifier_separates_planted_low_quality(scored):
    _, m, t = scored
    # held-out AUC of reference vs pool is recorded; the pool is mostly clean, so it is modest
    assert 0.5 <= m["fit"]["classifier"]["auc"] <= 1.0
    q = np.asarray(t.column("q_classifier").to_numpy(zero_copy_only=False))
    planted = np.asarray(t.column("planted").to_pylist())
    low = np.isin(planted, LOW_QUALITY_KINDS)
    assert _auc(q[planted == "clean"], q[low]) >= 0.9


def test_dsir_ranks_the_target_domain_first(scored):
    spec, m, t = scored
    u = np.asarray(t.column("u_dsir").to_numpy(zero_copy_only=False))
    topic = np.asarray(t.column("topic").to_pylist())
    planted = np.asarray(t.column("planted").to_pylist())
    prose = ~np.isin(planted, LOW_QUALITY_KINDS)
    n = int(((topic == "medicine") & prose).sum())
    top = np.argsort(-u)[:n]
    assert np.mean(topic[top] == "medicine") >= 0.9
    # the dsir strategy (Gumbel top-k on log w) then selects mostly medicine
    sel = pq.read_table(Path(spec.output.path) / "data", columns=["topic"]).column("topic").to_pylist()
    assert abs(len(sel) - 250) <= 5
    assert np.mean(np.asarray(sel) == "medicine") >= 0.8


def test_target_similarity_and_column_scores(scored):
    _, _, t = scored
    sim = np.asarray(t.column("u_target_sim").to_numpy(zero_copy_only=False))
    topic = np.asarray(t.column("topic").to_pylist())
    assert np.median(sim[topic == "medicine"]) > np.median(sim[topic != "medicine"]) + 0.1
    # q_my_score is the rank-normalised column with lower = better: the order reverses
    raw = np.asarray(t.column("my_score").to_numpy(zero_copy_only=False))
    q = np.asarray(t.column("q_my_score").to_numpy(zero_copy_only=False))
    order = np.argsort(raw)
    assert np.all(np.diff(q[order]) <= 1e-6) and q.min() >= 0 and q.max() <= 1


def test_cluster_size_and_rarity(scored):
    _, m, t = scored
    size = np.asarray(t.column("d_cluster_size").to_numpy(zero_copy_only=False))
    rarity = np.asarray(t.column("d_cluster_rarity").to_numpy(zero_copy_only=False))
    cluster = np.asarray(t.column("d_cluster").to_numpy(zero_copy_only=False))
    for c in np.unique(cluster):
        assert size[cluster == c].min() == size[cluster == c].max() == (cluster == c).sum()
    assert np.all(np.diff(rarity[np.argsort(size)]) <= 1e-6)  # rarer = smaller


def _groups(t: pa.Table) -> dict[str, str]:
    """Planted duplicate group of every document: its original's id (originals: their own)."""
    return {i: (o or i) for i, o in zip(t.column("doc_id").to_pylist(), t.column("dup_of").to_pylist())}


def test_planted_duplicates_found_with_high_recall_and_precision(scored):
    spec, m, t = scored
    group = _groups(t)
    for flag, of in (("d_near_dup", "d_near_dup_of"), ("d_exact_dup", "d_exact_dup_of")):
        rows = t.select(["doc_id", "planted", "dup_of", flag, of]).to_pylist()
        flagged = [r for r in rows if r[flag]]
        precision = np.mean([group[r["doc_id"]] == group[r[of]] for r in flagged])
        kinds = ("exact_dup", "near_dup") if flag == "d_near_dup" else ("exact_dup",)
        planted = [r for r in rows if r["planted"] in kinds]
        kept = {r["doc_id"]: r[of] for r in flagged}
        # a planted pair is found when one of the two points to the other, or both to the same kept copy
        found = [
            kept.get(r["doc_id"]) == r["dup_of"]
            or kept.get(r["dup_of"]) == r["doc_id"]
            or (r["doc_id"] in kept and kept.get(r["doc_id"]) == kept.get(r["dup_of"]))
            for r in planted
        ]
        assert precision >= 0.95 and np.mean(found) >= 0.95, (flag, precision, np.mean(found))
    assert m["fit"] and m["timings"]["dedup"]["exact_duplicates"] > 0


def test_semdedup_flags_and_exclusion(scored):
    spec, m, t = scored
    flagged = {r["doc_id"] for r in t.select(["doc_id", "d_semdup"]).to_pylist() if r["d_semdup"]}
    pairs = [r for r in t.select(["doc_id", "planted", "dup_of"]).to_pylist() if r["planted"] == "exact_dup"]
    # identical texts embed identically: one of each planted pair is flagged (the other is kept)
    assert np.mean([(r["doc_id"] in flagged) != (r["dup_of"] in flagged) for r in pairs]) > 0.95
    assert len(flagged) < 0.25 * t.num_rows
    out = pq.read_table(Path(spec.output.path) / "data", columns=["d_exact_dup", "d_near_dup", "d_semdup"]).to_pylist()
    assert not any(r["d_exact_dup"] or r["d_near_dup"] or r["d_semdup"] for r in out)
    assert any(k.startswith("d_") for k in m["counts"]["not_selected_by_reason"])


def test_rule_families_flag_planted_low_quality(scored):
    _, _, t = scored
    planted = np.asarray(t.column("planted").to_pylist())
    low = np.isin(planted, LOW_QUALITY_KINDS)
    failed = np.zeros(t.num_rows, bool)
    for col in ("q_rule_gopher_quality", "q_rule_gopher_repetition", "q_rule_c4", "q_rule_fineweb"):
        reasons = t.column(col).to_pylist()
        failed |= np.array([r is not None for r in reasons])
    assert failed[low].mean() > 0.9 and failed[planted == "clean"].mean() < failed[low].mean() - 0.3


def test_uds_and_allsh_scores_in_a_job_and_uds_selections(local_ray, tmp_path):
    corpus = write_corpus(tmp_path / "corpus", 400)
    scorers = {"uds": {"steps": 10, "train_docs": 200}, "allsh": {"steps": 10, "train_docs": 200}}
    spec = make_spec(corpus, tmp_path / "out", scorers=scorers, output={"work_dir": str(tmp_path / "work")},
                     selection={"strategy": "topk", "by": {"q_uds": 1.0}, "budget": {"unit": "docs", "amount": 100}, "filters": []})
    m = run(spec, log=lambda m: None, progress=False)
    assert m["fit"]["uds_train_docs"] == 200 and m["fit"]["uds_reference_docs"] == 200  # the rest of the 400-document sample
    t = pq.read_table(tmp_path / "work" / f"score-{keys_for(spec)['score']}" / "data",
                      columns=["doc_id", "text", "invalid_reason", "u_uds", "q_uds", "u_allsh", "q_allsh", "planted", "dup_of"])
    valid = t.filter(pc.is_null(t.column("invalid_reason")))
    u = dict(zip(valid.column("doc_id").to_pylist(), valid.column("u_uds").to_pylist()))
    assert all(v is not None and np.isfinite(v) and v > 0 for v in u.values())
    copies = [r for r in valid.to_pylist() if r["planted"] == "exact_dup" and r["dup_of"] in u]
    assert copies and all(u[r["doc_id"]] == pytest.approx(u[r["dup_of"]], rel=1e-6) for r in copies)  # a function of the text alone
    sens = dict(zip(valid.column("doc_id").to_pylist(), valid.column("u_allsh").to_pylist()))
    assert all(0 <= v <= np.log(2) for v in sens.values()) and max(sens.values()) > 0 and m["fit"]["allsh_train_docs"] == 200
    assert all(sens[r["doc_id"]] == pytest.approx(sens[r["dup_of"]], rel=1e-6, abs=1e-12) for r in copies)  # the same perturbations of the same text
    q = np.asarray(valid.column("q_uds").to_numpy(zero_copy_only=False))
    assert q.min() >= 0 and q.max() <= 1 and np.all(np.diff(q[np.argsort(np.asarray(valid.column("u_uds").to_numpy()))]) >= 0)  # q_uds follows u_uds
    chosen = pq.read_table(Path(spec.output.path) / "data", columns=["u_uds"]).column("u_uds").to_numpy()
    assert abs(len(chosen) - 100) <= 5 and chosen.min() >= np.sort(np.asarray(list(u.values())))[-110]  # top-k by q_uds: the highest u_uds
    # the uds strategy on the same scored pool (only select reruns): exactly the budget; more diversity weight, more diverse
    vendi, chosen = {}, {}
    for alpha in (0.0, 50.0):
        run_spec = make_spec(corpus, tmp_path / f"uds-{alpha}", scorers=scorers, output={"work_dir": str(tmp_path / "work")},
                             selection={"strategy": "uds", "alpha": alpha, "batch": 16, "budget": {"unit": "docs", "amount": 100}, "filters": []})
        m = run(run_spec, log=lambda m: None, progress=False)
        assert m["phases"]["score"]["reused"] and m["counts"]["selected_docs"] == 100 and m["selection"]["alpha"] == alpha
        vendi[alpha] = m["diversity"]["selection"]["vendi"]
        chosen[alpha] = set(pq.read_table(tmp_path / f"uds-{alpha}" / "data", columns=["doc_id"]).column("doc_id").to_pylist())
    assert chosen[0.0] != chosen[50.0] and vendi[50.0] > vendi[0.0], vendi
