from pathlib import Path

from thresher.pipeline.cli import spec_reference


def test_readme_spec_reference_is_current():
    readme = (Path(__file__).parents[2] / "README.md").read_text()
    assert spec_reference() in readme, "README's spec reference is stale: regenerate with `thresher spec-reference`"
