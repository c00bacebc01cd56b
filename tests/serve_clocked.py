"""The real service app under uvicorn, with the two things a schedule test must control: the clock schedules
fire by (read from a file the test writes; the real time until it does) and the command a job's driver runs.

    python tests/serve_clocked.py --port P --data-dir D --clock-file F [--driver-script S]

Settings come from THRESHER_* and THRESHER_CONFIG as for `thresher serve`.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import uvicorn

from thresher.services.app import create_app
from thresher.services.config import load_service_settings


class FileClock:
    """Unix time as the float in `path`; the real time while there is none."""

    def __init__(self, path: Path):
        self.path = path

    def __call__(self) -> float:
        try:
            return float(self.path.read_text())
        except (FileNotFoundError, ValueError):
            return time.time()


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--data-dir", required=True)
    parser.add_argument("--clock-file", required=True)
    parser.add_argument("--driver-script", help="a Python file run as each job's driver, given the job's directory")
    args = parser.parse_args()
    settings = load_service_settings(None, port=args.port, data_dir=Path(args.data_dir))
    driver = [sys.executable, args.driver_script] if args.driver_script else None
    app = create_app(settings, clock=FileClock(Path(args.clock_file)), driver_command=driver)
    uvicorn.run(app, host="127.0.0.1", port=args.port, log_level="warning")


if __name__ == "__main__":
    main()
