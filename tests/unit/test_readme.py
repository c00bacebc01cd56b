from pathlib import Path

from thresher.cli import spec_reference


def test_readme_spec_reference_is_current():
    readme = (Path(__file__).parents[2] / "README.md").read_text()
    assert spec_reference() in readme, "README's spec reference is stale: regenerate with `thresher spec-reference`"


def test_readme_settings_table_is_current():
    from thresher.services.config import settings_table

    readme = (Path(__file__).parents[2] / "README.md").read_text()
    assert settings_table() in readme, "README's settings table is stale: paste thresher.services.config.settings_table()"
