"""The command proxy runs a real subprocess: what it receives, what it must print, how it fails."""

from __future__ import annotations

import sys

import numpy as np
import pytest

from thresher.operators.proxy_command import CommandProxy, ProxyCommandError
from thresher.pipeline.errors import SpecError
from thresher.pipeline.settings import load_settings
from thresher.pipeline.spec import parse_spec
from thresher.services.config import load_service_settings

SCRIPT = """
import sys
import pyarrow.parquet as pq
sel, val = pq.read_table(sys.argv[1]), pq.read_table(sys.argv[2])
print("training...")  # only the last line counts
print(sum(len(t) * c for t, c in zip(sel.column("text").to_pylist(), sel.column("sel_copies").to_pylist())) / val.num_rows)
"""


def _script(tmp_path, body: str) -> list[str]:
    path = tmp_path / "proxy.py"
    path.write_text(body)
    return [sys.executable, str(path)]


def test_the_command_gets_the_selection_with_copies_and_the_validation_texts(tmp_path):
    proxy = CommandProxy("chars", _script(tmp_path, SCRIPT))
    assert proxy.loss(["ab", "cde"], ["x", "y"], train_weights=np.array([2.0, 0.5])) == pytest.approx((2 * 2 + 3 * 0.5) / 2)
    assert proxy.loss(["ab", "cde"], ["x"]) == pytest.approx(5.0)  # no weights: one copy each


@pytest.mark.parametrize(
    ("body", "message"),
    [
        ("import sys; print('bad input', file=sys.stderr); sys.exit(3)", "exited 3: bad input"),
        ("print('done')", "printed no number on its last line (got 'done')"),
        ("print('nan')", "printed nan, not a finite loss"),
        ("import time; time.sleep(10)", "ran past 0.5s"),
    ],
)
def test_a_failing_command_is_one_readable_error(tmp_path, body, message):
    with pytest.raises(ProxyCommandError, match=message.replace("(", r"\(").replace(")", r"\)")):
        CommandProxy("mine", _script(tmp_path, body), timeout_s=0.5).loss(["a"], ["b"])


def test_a_missing_program_and_per_document_scoring_are_refused(tmp_path):
    with pytest.raises(ProxyCommandError, match="no-such-program not found"):
        CommandProxy("gone", ["no-such-program"]).loss(["a"], ["b"])
    with pytest.raises(ProxyCommandError, match="not per document"):
        CommandProxy("chars", _script(tmp_path, SCRIPT)).per_doc_loss(["a"], ["b"])


def test_a_spec_can_name_a_configured_command_but_never_give_one(tmp_path):
    base = {"input": {"paths": ["x.parquet"]}, "output": {"path": "out"}}
    search = {"validation": {"paths": ["v.parquet"]}}
    ok = parse_spec({**base, "selection": {"budget": {"amount": 10}, "search": {**search, "proxy": "command:my-lm"}}})
    assert ok.selection.search.proxy == "command:my-lm"
    for bad in ("python3 train.py", "command:../x", "command:a;rm", "gpt"):
        with pytest.raises(SpecError, match="selection.search.proxy"):
            parse_spec({**base, "selection": {"budget": {"amount": 10}, "search": {**search, "proxy": bad}}})


def test_settings_come_from_the_file_and_the_environment_wins(tmp_path, monkeypatch):
    config = tmp_path / "thresher.yaml"
    config.write_text("proxy_commands:\n  lm: [python3, train.py]\nproxy_timeout_s: 5\n")
    monkeypatch.delenv("THRESHER_CONFIG", raising=False)
    assert load_settings(config).proxy_commands == {"lm": ["python3", "train.py"]}
    monkeypatch.setenv("THRESHER_PROXY_TIMEOUT_S", "9")
    assert load_settings(config).proxy_timeout_s == 9.0
    monkeypatch.setenv("THRESHER_CONFIG", str(config))
    assert load_settings().proxy_commands == {"lm": ["python3", "train.py"]}
    config.write_text("proxy_comands: {}\nport: 9000\n")
    assert load_settings(config).proxy_commands == {}  # the pipeline's loader ignores keys it does not own
    with pytest.raises(SpecError, match="config: proxy_comands: Extra inputs are not permitted"):
        load_service_settings(config)  # the CLI's and the service's refuse a typo
    config.write_text("port: 9000\n")
    assert load_service_settings(config).port == 9000
    with pytest.raises(SpecError, match="config file not found"):
        load_settings(tmp_path / "none.yaml")
