"""Operator settings: what the person running thresher configures, never a job spec.

A job spec travels (over HTTP, between teams); a setting is the machine's.
Anything that would let a spec run code lives here: a spec may only name a
configured proxy command (`selection.search.proxy: command:NAME`), never give
one. Read from the environment (`THRESHER_*`, nested fields as JSON) and
from a YAML file (`--config FILE`, or `THRESHER_CONFIG`); the environment wins.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import yaml
from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict

from .errors import SpecError


class Settings(BaseSettings):
    # The file is shared with the service (services/config.py, whose settings are strict about unknown keys):
    # here its keys are ignored.
    model_config = SettingsConfigDict(env_prefix="THRESHER_", extra="ignore")

    proxy_commands: dict[str, list[str]] = Field(
        default_factory=dict,
        description="Proxy evaluators run as commands, by name: argv (no shell). The command gets the selection's Parquet (text, sel_copies) and the validation texts' Parquet (text) as its last two "
            "arguments and prints the loss (lower = better) as the last line of stdout.",
    )
    proxy_timeout_s: float = Field(600.0, gt=0, description="A proxy command still running after this long fails the job.")
    allowed_roots: list[Path] = Field(
        default_factory=list,
        description="Directories every path a job opens must lie under, symlinks followed, checked where the files are opened (pipeline/confine.py); empty = not confined (the service's own default "
            "is the directory it started in).",
    )

    content_cache: Path | None = Field(None, description="Embeddings and score columns by text digest (and model version, or scoring states), shared by every job given the same "
        "directory (pipeline/content_cache.py); none = "
        "WORK/content-cache, shared by the runs of one output.")

    def proxy_command(self, proxy: str) -> list[str]:
        """The argv a spec's `command:NAME` proxy names, or SpecError when the operator configured none by that name."""
        label = proxy.removeprefix("command:")
        if label not in self.proxy_commands:
            known = ", ".join(sorted(self.proxy_commands)) or "none"
            raise SpecError(f"selection.search.proxy: no proxy command {label!r} in the settings (proxy_commands; configured: {known})")
        return self.proxy_commands[label]


def load_settings(path: str | Path | None = None) -> Settings:
    """Settings from the YAML file (`path`, else $THRESHER_CONFIG, else none) overridden by THRESHER_* variables."""
    from pydantic import ValidationError

    path = path or os.environ.get("THRESHER_CONFIG")
    try:
        from_env = Settings()
        return Settings(**{**read_config_file(Path(path)), **from_env.model_dump(exclude_unset=True)}) if path else from_env
    except ValidationError as e:
        first = e.errors()[0]
        raise SpecError(f"config: {'.'.join(str(p) for p in first['loc'])}: {first['msg']}") from None


def read_config_file(path: Path) -> dict[str, Any]:
    try:
        raw = yaml.safe_load(path.read_text()) or {}
    except FileNotFoundError:
        raise SpecError(f"config file not found: {path}") from None
    except yaml.YAMLError as e:
        raise SpecError(f"{path}: not valid YAML: {e}") from None
    if not isinstance(raw, dict):
        raise SpecError(f"{path}: the config must be a mapping of settings")
    return raw
