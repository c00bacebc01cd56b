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
