"""Schemathesis against a real `thresher serve`, generated from the service's own OpenAPI document.

Every operation, a fixed seed and a bounded number of examples (about 2,000
requests, under a minute here), with the checks "no 5xx" and "the response
conforms to the documented schema". Bodies include the job spec's schema, so
the fuzzer reaches the spec checks, not only the body parser.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from ..serve_process import ServeProcess
from .test_service import ADMIN_TOKEN, READ_TOKEN

SEED = 20261203
EXAMPLES = 30


def test_the_api_answers_generated_requests_without_a_server_error_and_as_documented(tmp_path):
    server = ServeProcess(tmp_path, {ADMIN_TOKEN: "admin", READ_TOKEN: "read"}).start()
    try:
        st = Path(sys.executable).with_name("st")
        p = subprocess.run(
            [str(st), "run", f"{server.url}/openapi.json", "--checks", "not_a_server_error,response_schema_conformance",
             "--phases", "examples,coverage,fuzzing", "--max-examples", str(EXAMPLES), "--seed", str(SEED), "--workers", "1",
             "--generation-database", "none", "--no-color", "-H", f"Authorization: Bearer {ADMIN_TOKEN}"],
            capture_output=True, text=True, timeout=900, cwd=tmp_path,
        )
        assert p.returncode == 0, p.stdout[-6000:] + p.stderr[-2000:]
        assert "passed" in p.stdout and "failures" not in p.stdout.split("SUMMARY")[-1], p.stdout[-3000:]
        assert server.http.get("/healthz").status_code == 200
    finally:
        server.stop()
        server.reap()
