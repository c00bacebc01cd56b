"""The service's settings: the operator's `Settings` (proxy commands) plus where and how the service runs.

Same sources as the CLI: a YAML file (`thresher serve --config FILE`, or
THRESHER_CONFIG) overridden by THRESHER_* variables; the README lists every
field with its default.
"""

from __future__ import annotations

import os
from pathlib import Path

from pydantic import Field
from pydantic_settings import SettingsConfigDict

from thresher.pipeline.errors import SpecError
from thresher.pipeline.settings import Settings, read_config_file


class ServiceSettings(Settings):
    """Every setting of the file; unknown keys are refused, so a typo never passes silently."""

    model_config = SettingsConfigDict(env_prefix="THRESHER_", extra="forbid")

    host: str = Field("127.0.0.1", description="Address the HTTP server binds.")
    port: int = Field(8000, ge=0, le=65535, description="Port the HTTP server binds (0 = any free port).")
    data_dir: Path = Field(Path("thresher-data"), description="Job store (jobs.db), per-job files (spec, driver log, result) and the first-start token.")
    database_url: str | None = Field(None, description="SQLAlchemy URL of the job store (e.g. postgresql+psycopg://...); none = SQLite in data_dir/jobs.db.")
    allowed_roots: list[Path] = Field(default_factory=list, description="Directories every path a job opens must lie under, symlinks followed: checked at submit, and again by the driver on each "
        "file it opens and directory it creates (pipeline/confine.py); the output must lie inside one, not be one. Empty = the directory the service started in.")
    max_concurrent_jobs: int = Field(1, ge=1, description="Jobs running at once; the rest wait queued.")
    ray_address: str | None = Field(None, description="A Ray cluster's dashboard address (http://head:8265): jobs go through Ray's Job Submission API; none = a driver subprocess per job on a local "
        "Ray.")
    tokens: dict[str, str] = Field(default_factory=dict, description="Bearer tokens from the config: token -> kind (admin or read). Stored hashed at start; with none configured and none stored, one "
        "admin token is created and printed on first start.")
    max_attempts: int = Field(2, ge=1, description="Driver starts per job: a driver that dies is resumed from its checkpoints until this many have been made, then the job fails.")
    poll_s: float = Field(0.5, gt=0, description="How often the scheduler checks drivers and starts queued jobs.")
    max_body_bytes: int = Field(2**20, ge=1024, description="Largest request body accepted (a job spec is a few KiB); a larger one is refused with 413 before it is read, also without a token.")
    job_nice: int = Field(10, ge=0, le=19, description="CPU niceness of a local driver and the local Ray it starts, so the API stays responsive while a job fills the cores (0 = the service's own "
        "priority).")

    def roots(self) -> list[Path]:
        return [p.resolve() for p in (self.allowed_roots or [Path.cwd()])]


def load_service_settings(path: str | Path | None = None, **overrides) -> ServiceSettings:
    """As `settings.load_settings`, for the service's fields too; `overrides` (CLI flags) win over both."""
    from pydantic import ValidationError

    path = path or os.environ.get("THRESHER_CONFIG")
    try:
        from_env = ServiceSettings()
        merged = {**(read_config_file(Path(path)) if path else {}), **from_env.model_dump(exclude_unset=True), **{k: v for k, v in overrides.items() if v is not None}}
        return ServiceSettings(**merged)
    except ValidationError as e:
        first = e.errors()[0]
        raise SpecError(f"config: {'.'.join(str(p) for p in first['loc'])}: {first['msg']}") from None


def settings_table() -> str:
    """The README's table of every setting with its default, generated so it cannot drift from the fields."""
    rows = ["| setting | default | |", "|---|---|---|"]
    for name, field in ServiceSettings.model_fields.items():
        default = field.default_factory() if field.default_factory else field.default
        rows.append(f"| `{name}` | `{default}` | {field.description} |")
    return "\n".join(rows) + "\n"
