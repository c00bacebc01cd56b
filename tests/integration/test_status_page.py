"""The status page (`/`, `/jobs/{id}`) against a real `thresher serve`, rendered by headless Chromium while a job embeds."""

from __future__ import annotations

import re
import shutil
import subprocess
import tempfile
from html.parser import HTMLParser
from pathlib import Path

import httpx
import numpy as np
import pytest
from PIL import Image

from .helpers import chromium, write_corpus
from .test_service import ADMIN_TOKEN, Server, spec

BAR_RGB = np.array([0x25, 0x63, 0xEB])  # .progress-bar .fill in services/routers/pages.py


class Bars(HTMLParser):
    """The progress bars in a dumped DOM: each bar's attributes plus its fill's style."""

    def __init__(self, dom: str):
        super().__init__()
        self.bars: list[dict] = []
        self._want_fill = False
        self.feed(dom)

    def handle_starttag(self, tag, attrs):
        a = dict(attrs)
        classes = (a.get("class") or "").split()
        if "progress-bar" in classes:
            self.bars.append(a)
            self._want_fill = True
        elif self._want_fill and "fill" in classes:
            self.bars[-1]["fill_style"] = a.get("style") or ""
            self._want_fill = False

    def of(self, job_id: str, phase: str | None = None) -> list[dict]:
        return [b for b in self.bars if b.get("data-job-id") == job_id and (phase is None or b.get("data-phase") == phase)]


def width(bar: dict) -> float:
    m = re.search(r"width:\s*([\d.]+)%", bar.get("fill_style", ""))
    return float(m.group(1)) if m else 0.0


def render(browser: str, url: str, tmp: Path, name: str, screenshot: bool = False) -> str | Path:
    """The DOM after the page's script ran (--dump-dom), or a screenshot PNG of it."""
    flags = [browser, "--headless", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage", f"--user-data-dir={tmp / (name + '-profile')}",
             "--window-size=1200,900", "--virtual-time-budget=5000"]
    png = tmp / f"{name}.png"
    done = subprocess.run(flags + ([f"--screenshot={png}"] if screenshot else ["--dump-dom"]) + [url], capture_output=True, text=True, timeout=90)
    assert done.returncode == 0, done.stderr[-2000:]
    return png if screenshot else done.stdout


def embedding(job: dict) -> bool:
    assert job["state"] in ("queued", "running"), job  # fail now, not at the timeout
    return job["progress"]["phase"] == "embed" and job["progress"]["phases"]["embed"].get("rows_done", 0) > 0


def test_the_status_page_shows_a_running_job_with_live_progress_only_with_a_token(tmp_path, monkeypatch):
    browser = chromium()
    if browser is None:
        pytest.skip("chromium not installed (apt-get install chromium)")
    # The driver's local Ray keeps its files (and looks for a running cluster) under its own short temp dir
    # (Unix socket paths are limited to 107 bytes), so a `ray start` elsewhere on the machine is not joined.
    ray_tmp = Path(tempfile.mkdtemp(prefix="thr-", dir="/tmp"))
    monkeypatch.setenv("RAY_TMPDIR", str(ray_tmp))
    write_corpus(tmp_path / "corpus", 2000)
    server = Server(tmp_path).start()
    try:
        body = {**spec(tmp_path, "out", tmp_path / "corpus"), "embedder": {"model": "minilm", "batch_size": 16}}
        job_id = server.http.post("/v1/jobs", json=body).json()["id"]
        server.wait(job_id, until=embedding, timeout=120)

        # 1. the HTML shell comes without a token and carries no job data
        shell = httpx.get(f"{server.url}/", timeout=10)
        assert shell.status_code == 200 and shell.headers["content-type"].startswith("text/html")
        assert job_id not in shell.text and "<script>" in shell.text and "sessionStorage" in shell.text
        assert job_id not in httpx.get(f"{server.url}/jobs/{job_id}", timeout=10).text  # the job page's shell neither

        # 2. with #token=..., the list shows the job running with a progress bar over 0
        dom = render(browser, f"{server.url}/#token={ADMIN_TOKEN}", tmp_path, "list")
        row = re.search(rf'<tr class="job" data-job-id="{job_id}">(.*?)</tr>', dom, re.S)
        assert row and 'class="badge running">running<' in row.group(1) and ">embed<" in row.group(1), dom[-3000:]
        bars = Bars(dom).of(job_id, "embed")
        assert bars and float(bars[0]["aria-valuenow"]) > 0 and width(bars[0]) > 0, bars
        assert "rows/s" in row.group(1) and f"{job_id}" in row.group(1)

        png = render(browser, f"{server.url}/#token={ADMIN_TOKEN}", tmp_path, "list", screenshot=True)
        shutil.copy(png, "/tmp/status-page.png")  # for a person to look at
        pixels = np.asarray(Image.open(png).convert("RGB")).reshape(-1, 3).astype(int)
        assert float(np.mean(pixels.min(axis=1) < 240)) > 0.01  # not blank
        assert len(np.unique(pixels[::7], axis=0)) > 20
        assert int(np.sum(np.abs(pixels - BAR_RGB).max(axis=1) <= 8)) >= 10, "no progress-bar colour in the screenshot"

        # 3. the job page: the embed phase's row with its bar
        dom = render(browser, f"{server.url}/jobs/{job_id}#token={ADMIN_TOKEN}", tmp_path, "job")
        assert re.search(r'<tr class="phase" data-phase="embed" data-state="running">', dom), dom[-3000:]
        bars = Bars(dom).of(job_id, "embed")
        assert bars and float(bars[0]["aria-valuenow"]) > 0 and width(bars[0]) > 0, bars
        assert '<button id="cancel" type="button">Cancel</button>' in dom  # shown (not hidden) while the job runs

        # a wrong token: no data, a readable message
        dom = render(browser, f"{server.url}/#token=not-a-token", tmp_path, "wrong")
        assert job_id not in dom and "refused the token" in dom and "unknown token" in dom

        # 4. cancel, so the test ends quickly
        assert server.http.post(f"/v1/jobs/{job_id}/cancel").status_code == 202
        assert server.wait(job_id, timeout=60)["state"] == "cancelled"
    finally:
        server.stop()
        server.reap()
        shutil.rmtree(ray_tmp, ignore_errors=True)
