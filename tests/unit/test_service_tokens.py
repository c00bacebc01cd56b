"""Tokens at start: one admin token printed on first start, or the config's, stored hashed either way."""

from __future__ import annotations

from thresher.services.app import first_token, open_store
from thresher.services.config import ServiceSettings


def test_first_start_creates_one_admin_token_and_later_starts_none(tmp_path):
    settings = ServiceSettings(data_dir=tmp_path / "data")
    store = open_store(settings)
    token = first_token(settings, store)
    assert token and store.check_token(token) == "admin"
    assert (tmp_path / "data" / "admin-token").read_text().strip() == token
    assert (tmp_path / "data" / "admin-token").stat().st_mode & 0o077 == 0  # readable by its owner only
    assert first_token(settings, store) is None  # a restart prints nothing new
    assert token.encode() not in (tmp_path / "data" / "jobs.db").read_bytes()


def test_configured_tokens_are_stored_hashed_and_no_token_is_made_up(tmp_path):
    settings = ServiceSettings(data_dir=tmp_path / "data", tokens={"t-admin": "admin", "t-read": "read"})
    store = open_store(settings)
    assert first_token(settings, store) is None and not (tmp_path / "data" / "admin-token").exists()
    assert store.check_token("t-admin") == "admin" and store.check_token("t-read") == "read" and store.check_token("other") is None
    assert first_token(settings, store) is None  # a restart does not store them twice
