"""A scorer added from this file alone (its operator, its spec class, `register`) runs in a real job; phase bodies see only their slice."""

from __future__ import annotations

import pickle
import sys
from typing import ClassVar

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from thresher.operators import schema as S
from thresher.operators.fitted import Fitted
from thresher.pipeline import scorers
from thresher.pipeline.phases import PHASES, select_phase
from thresher.pipeline.plan import Slice, SliceError
from thresher.pipeline.runner import keys_for, run

from .helpers import make_spec, write_corpus


class LengthRank(Fitted):
    """The toy operator: q_length = the share of the fit sample with fewer tokens."""

    def __init__(self, quantiles: int = 64):
        self.quantiles = quantiles

    def fit(self, sample: pa.Table) -> "LengthRank":
        tokens = np.asarray(sample.column(S.N_TOKENS).to_numpy(zero_copy_only=False), np.float64)
        self.edges_ = np.quantile(tokens, np.linspace(0, 1, self.quantiles + 1))
        return self

    def transform(self, batch: pa.Table) -> pa.Table:
        tokens = np.asarray(batch.column(S.N_TOKENS).fill_null(0).to_numpy(zero_copy_only=False), np.float64)
        return batch.append_column("q_length", pa.array(np.searchsorted(self.edges_, tokens, side="right") / len(self.edges_)))


class LengthSpec(scorers.ScorerSpec):
    """The toy scorer's spec class."""

    name: ClassVar[str] = "length"
    description: ClassVar[str] = "Longer is better (a test's toy)."
    state: ClassVar[str] = f"{__name__}:LengthRank"

    quantiles: int = 64

    def writes(self) -> set[str]:
        return {"q_length"}

    def sample_columns(self) -> set[str]:
        return {S.N_TOKENS}

    def fit(self, sample, side, seed):
        return LengthRank(self.quantiles).fit(sample), {"length_quantiles": self.quantiles}


@pytest.fixture
def length_scorer():
    import ray.cloudpickle

    ray.cloudpickle.register_pickle_by_value(sys.modules[__name__])  # Ray workers get the toy's classes by value
    scorers.register(LengthSpec)
    yield LengthSpec
    scorers.SCORERS.remove(LengthSpec)
    ray.cloudpickle.unregister_pickle_by_value(sys.modules[__name__])


def test_a_scorer_registered_from_a_test_file_runs_in_a_job(local_ray, tmp_path, length_scorer):
    corpus = write_corpus(tmp_path / "corpus", 400)
    spec = make_spec(
        corpus, tmp_path / "out",
        scorers={"length": {"quantiles": 32}},
        selection={"strategy": "topk", "by": {"q_length": 1.0}, "budget": {"unit": "docs", "amount": 100}},
    )
    assert [n for n, _ in spec.scorers.enabled()] == ["quality", "length"] and "q_length" in spec.computed_columns()
    manifest = run(spec, log=lambda m: None, progress=False)
    assert manifest["fit"]["length_quantiles"] == 32
    work = tmp_path / "out.work"
    fit_dir = work / f"fit-{keys_for(spec)['fit']}"
    assert LengthRank.load(fit_dir / "length").quantiles == 32  # saved and loaded by the Fitted mixin
    score = pq.read_table(work / f"score-{keys_for(spec)['score']}" / "data", columns=[S.DOC_ID, S.N_TOKENS, "q_length"])
    data = pq.read_table(tmp_path / "out" / "data", columns=[S.DOC_ID])
    chosen = np.isin(score.column(S.DOC_ID).to_numpy(zero_copy_only=False), data.column(S.DOC_ID).to_numpy(zero_copy_only=False))
    tokens = score.column(S.N_TOKENS).to_numpy(zero_copy_only=False)
    assert 90 <= chosen.sum() <= 110 and tokens[chosen].min() >= np.median(tokens)  # the longest documents, by the toy's score
    again = make_spec(corpus, tmp_path / "out", scorers={"length": {"quantiles": 16}}, selection=spec.selection.model_dump())
    changed = {n for n in keys_for(spec) if keys_for(spec)[n] != keys_for(again)[n]}
    assert changed == {"fit", "score", "select"}  # its spec is in the fit phase's key, and only what follows refits


def test_an_unknown_scorer_is_refused_naming_the_known_ones(tmp_path):
    from thresher.pipeline.errors import SpecError
    from thresher.pipeline.spec import parse_spec

    with pytest.raises(SpecError, match=r"scorers.lenght: unknown scorer 'lenght' \(known: classifier, target_sim, rules, dsir, uds, allsh\)"):
        parse_spec({"input": {"paths": ["x"]}, "output": {"path": "o"}, "scorers": {"lenght": {}}})
    with pytest.raises(SpecError, match=r"scorers.dsir.target: Field required"):
        parse_spec({"input": {"paths": ["x"]}, "output": {"path": "o"}, "scorers": {"dsir": {}}})


def test_a_phase_body_given_another_phase_slice_fails_loudly(tmp_path):
    spec = make_spec(tmp_path / "corpus", tmp_path / "out")
    clusters = next(p for p in PHASES if p.name == "clusters").reads(spec, {"input": []})
    assert clusters.clustering == spec.clustering and clusters.seed == spec.seed
    with pytest.raises(SliceError, match=r"phase clusters read 'selection', which is not in its slice \(clustering, seed, frozen\)"):
        select_phase(None, clusters, tmp_path, {})  # the select body reaches for the selection first
    with pytest.raises(SliceError, match="read-only"):
        clusters.seed = 3
    copy = pickle.loads(pickle.dumps(clusters))
    assert copy.key_data() == clusters.key_data() and not hasattr(Slice("x"), "__wrapped__")
