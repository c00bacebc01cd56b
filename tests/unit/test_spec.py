import pytest

from thresher.pipeline.spec import SpecError, load_spec, parse_spec

BASE = {"input": {"paths": ["x.parquet"]}, "output": {"path": "out"}}


def test_defaults_fill_in():
    spec = parse_spec(BASE)
    assert spec.embedder.model == "static" and spec.selection.strategy == "quadmix" and spec.seed == 0


@pytest.mark.parametrize(
    "patch, field",
    [
        ({"selection": {"strategy": "best"}}, "selection.strategy"),
        ({"clustering": {"n_clusters": 0}}, "clustering.n_clusters"),
        ({"selection": {"strategy": "topk"}}, "selection.budget"),
        ({"embedder": {"modle": "minilm"}}, "embedder.modle"),
        ({"input": {"paths": []}}, "input.paths"),
        ({"selection": {"quadmix": {"omega": 2}}}, "selection.quadmix.omega"),
        ({"scorers": {"dedup": {"bands": 8}}}, "scorers.dedup"),  # bands without rows
        ({"scorers": {"dedup": {"bands": 32, "rows": 8}}}, "scorers.dedup"),  # 256 > num_perm
    ],
)
def test_invalid_spec_names_the_field(patch, field):
    with pytest.raises(SpecError) as e:
        parse_spec({**BASE, **patch})
    assert f": {field}:" in str(e.value)


def test_missing_required_and_bad_yaml(tmp_path):
    with pytest.raises(SpecError, match="output: Field required"):
        parse_spec({"input": {"paths": ["a"]}})
    bad = tmp_path / "bad.yaml"
    bad.write_text("input: [unclosed")
    with pytest.raises(SpecError, match="not valid YAML"):
        load_spec(bad)


def test_hash_is_stable_and_sensitive():
    assert parse_spec(BASE).hash() == parse_spec(dict(BASE)).hash()
    assert parse_spec(BASE).hash() != parse_spec({**BASE, "seed": 1}).hash()


@pytest.mark.parametrize("selection, named", [
    ({"strategy": "topk", "by": {"u_uds": 1.0}}, "selection.by: u_uds is not a quality column"),
    ({"strategy": "kmq", "by": {"q_heuristic": 1.0, "q_rule_c4": 1.0}}, "selection.by: q_rule_c4 is not a quality column"),
    ({"strategy": "quadmix", "quadmix": {"alpha": {"sig_n_words": 1.0}}}, "sig_n_words is not a quality column"),
])
def test_only_quality_columns_in_0_1_are_weighed(selection, named):
    # a u_* score (u_uds ~ 8-14) would be clipped into the [0, 1] histogram: top-k then took the whole pool
    budget = {"budget": {"unit": "docs", "amount": 10}} if selection["strategy"] != "quadmix" else {}
    with pytest.raises(SpecError, match=named):
        parse_spec({"input": {"paths": ["x"]}, "output": {"path": "o"}, "selection": {**selection, **budget}})
    ok = {**selection, "by": {"q_uds": 1.0}} if "by" in selection else {**selection, "quadmix": {"alpha": {"q_dsir": 1.0}}}
    parse_spec({"input": {"paths": ["x"]}, "output": {"path": "o"}, "selection": {**ok, **budget}})
