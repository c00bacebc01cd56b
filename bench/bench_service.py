"""The selection service's API latency while a job runs, against a real `thresher serve` on loopback.

The API process only reads the job store (SQLite) and the job's status.json;
the job itself runs in a driver process (and the local Ray it starts). This
script starts `thresher serve` as a subprocess (tests/serve_process.py,
which the service tests use; max_concurrent_jobs 1), submits one
long job (the demo corpus, embedder minilm, batch_size 16), waits until it is
in its embed phase, and then measures, while that job keeps running:

  1. status polls: --clients concurrent clients (asyncio, one
     httpx.AsyncClient and so one keep-alive connection each), each calling
     `GET /v1/jobs/{id}` back to back (or --think-ms apart, each client
     starting at a random phase) for --seconds; every request's latency is
     kept. Then the same for
     `GET /v1/jobs` (the list). A one-client run first gives the latency
     without queueing (the service time of one request).
  2. submits: --submits sequential `POST /v1/jobs` (they stay queued behind
     the running job), then --concurrent-submits at once; then the list
     again, now with every queued job on its page.
  3. cancels every job through the API, stops the server and prints a
     Markdown block: machine, load average before and after, the command,
     and the figures (p50, p90, p99, max, requests/s, errors), plus the
     cores the API process, the job (its driver's session: driver and local
     Ray), this client process and the whole machine kept busy in each
     window, to tell where the time went.

Closed loop: with no think time each client sends its next request as soon
as the last one is answered, so the mean latency is clients / throughput
(Little's law); at 50 clients a p99 under 100 ms needs several hundred
answers a second.

Target: p99 of the status poll under 100 ms.

Usage:
    python bench/bench_service.py
    python bench/bench_service.py --clients 50 --seconds 20 --docs 10000 --out /tmp/thresher-bench-service
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import random
import shlex
import shutil
import sys
import time
from collections import Counter
from pathlib import Path

import httpx
import numpy as np
import psutil

from thresher.demo_corpus import write as write_demo_corpus

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # the repo root, for tests/
from tests.serve_process import TERMINAL, ServeProcess  # noqa: E402  (the same server the service tests run)

TOKEN = "bench-admin-token"

TARGET_P99_MS = 100.0


def headers() -> dict:
    return {"Authorization": f"Bearer {TOKEN}"}


def spec(root: Path, name: str, corpus: Path, embedder: dict | None = None) -> dict:
    return {
        "input": {"paths": [str(corpus)], "id_column": "id"},
        "output": {"path": str(root / "out" / name)},
        "embedder": embedder or {"model": "static"},
        "clustering": {"n_clusters": 3},
        "selection": {"strategy": "uniform", "budget": {"unit": "docs", "amount": 100}},
        "ray": {"num_cpus": 2, "object_store_mb": 512},
    }


# Measurement.


def summary(lat_s: list[float], errors: int, wall_s: float) -> dict:
    ms = np.asarray(lat_s, dtype=float) * 1000.0
    n = len(ms)
    pct = (lambda q: float(np.percentile(ms, q))) if n else (lambda q: float("nan"))
    return {
        "requests": n, "errors": errors, "wall_s": wall_s, "rps": n / wall_s if wall_s > 0 else float("nan"),
        "p50": pct(50), "p90": pct(90), "p99": pct(99), "max": float(ms.max()) if n else float("nan"),
        "mean": float(ms.mean()) if n else float("nan"),
    }


class CpuWindow:
    """CPU seconds spent by the API process, the job (its driver's session: the driver and its local Ray),
    this process and the whole machine during a window."""

    def __init__(self, server_pid: int, job_sid: int | None = None):
        self.server = psutil.Process(server_pid)
        self.me = psutil.Process()
        self.job_sid = job_sid

    def _job(self) -> dict[int, float]:
        found = {}
        if self.job_sid is None:
            return found
        for p in psutil.process_iter():
            try:
                if os.getsid(p.pid) == self.job_sid:
                    found[p.pid] = self._busy(p.cpu_times())
            except (ProcessLookupError, PermissionError, psutil.Error):
                pass
        return found

    @staticmethod
    def _busy(t) -> float:
        return t.user + t.system

    def __enter__(self) -> "CpuWindow":
        self.t0 = time.perf_counter()
        self.j0 = self._job()
        self.s0, self.m0 = self._busy(self.server.cpu_times()), self._busy(self.me.cpu_times())
        st = psutil.cpu_times()
        self.all0, self.idle0 = sum(st), st.idle + getattr(st, "iowait", 0.0)
        return self

    def __exit__(self, *exc) -> None:
        self.wall = time.perf_counter() - self.t0
        self.server_cpu = self._busy(self.server.cpu_times()) - self.s0
        self.client_cpu = self._busy(self.me.cpu_times()) - self.m0
        self.job_cpu = sum(cpu - self.j0.get(pid, 0.0) for pid, cpu in self._job().items())  # a process started in the window counts whole
        st = psutil.cpu_times()
        total, idle = sum(st) - self.all0, st.idle + getattr(st, "iowait", 0.0) - self.idle0
        self.machine_busy = (total - idle) / total if total > 0 else float("nan")  # fraction of all cores

    def figures(self, requests: int) -> dict:
        cores = psutil.cpu_count() or 1
        return {
            "server_cpu_s": self.server_cpu, "server_cores": self.server_cpu / self.wall,
            "server_cpu_ms_per_req": 1000.0 * self.server_cpu / requests if requests else float("nan"),
            "client_cpu_s": self.client_cpu, "client_cores": self.client_cpu / self.wall,
            "job_cores": self.job_cpu / self.wall if self.job_sid is not None else float("nan"),
            "machine_busy_cores": self.machine_busy * cores,
        }


async def poll(url: str, path: str, clients: int, seconds: float, think_s: float) -> tuple[list[float], Counter, float]:
    """`clients` clients, each on its own connection, GET `path` in a loop for `seconds`."""
    lat: list[float] = []
    errors: Counter = Counter()  # HTTP status or exception class -> count
    start = asyncio.Event()
    conns = [httpx.AsyncClient(base_url=url, headers=headers(), timeout=30, limits=httpx.Limits(max_connections=1, max_keepalive_connections=1)) for _ in range(clients)]
    try:
        # Open every connection before the clock starts, all at once: one after the other, the first would sit
        # idle past uvicorn's 5 s keep-alive timeout while a slow list answers the others, and be closed.
        for r in await asyncio.gather(*(c.get(path) for c in conns)):
            r.raise_for_status()

        async def client(c: httpx.AsyncClient, deadline_box: list[float]) -> None:
            await start.wait()
            if think_s:  # each client at its own phase, as independent dashboards would be, not all in one burst
                await asyncio.sleep(random.uniform(0, think_s))
            while time.perf_counter() < deadline_box[0]:
                t0 = time.perf_counter()
                try:
                    r = await c.get(path)
                    kind = None if r.status_code == 200 else f"HTTP {r.status_code}"
                except httpx.HTTPError as e:
                    kind = type(e).__name__
                t1 = time.perf_counter()
                if kind is None:
                    lat.append(t1 - t0)
                else:
                    errors[kind] += 1
                if think_s:
                    await asyncio.sleep(think_s)

        box = [0.0]
        tasks = [asyncio.create_task(client(c, box)) for c in conns]
        await asyncio.sleep(0)
        t_start = time.perf_counter()
        box[0] = t_start + seconds
        start.set()
        await asyncio.gather(*tasks)
        wall = time.perf_counter() - t_start  # the last in-flight requests finish after the deadline
    finally:
        await asyncio.gather(*(c.aclose() for c in conns))
    return lat, errors, wall


def measure_poll(server: ServeProcess, path: str, clients: int, seconds: float, think_s: float, job_sid: int | None) -> dict:
    with CpuWindow(server.proc.pid, job_sid) as cpu:
        lat, errors, wall = asyncio.run(poll(server.url, path, clients, seconds, think_s))
    return {**summary(lat, sum(errors.values()), wall), **cpu.figures(len(lat)), "clients": clients, "path": path, "error_kinds": dict(errors)}


async def concurrent_submits(url: str, bodies: list[dict]) -> tuple[list[float], list[str], int]:
    conns = [httpx.AsyncClient(base_url=url, headers=headers(), timeout=60) for _ in bodies]
    try:
        for c in conns:
            (await c.get("/healthz")).raise_for_status()  # connect first

        async def one(c: httpx.AsyncClient, body: dict) -> tuple[float, str | None]:
            t0 = time.perf_counter()
            try:
                r = await c.post("/v1/jobs", json=body)
            except httpx.HTTPError:
                return time.perf_counter() - t0, None
            return time.perf_counter() - t0, r.json()["id"] if r.status_code == 202 else None

        got = await asyncio.gather(*(one(c, b) for c, b in zip(conns, bodies)))
    finally:
        await asyncio.gather(*(c.aclose() for c in conns))
    return [t for t, _ in got], [i for _, i in got if i], sum(1 for _, i in got if i is None)


# Report.


def row(name: str, s: dict) -> str:
    return (
        f"| {name} | {s['requests']} | {s['errors']} | {s['rps']:.0f} | {s['p50']:.1f} | {s['p90']:.1f} | {s['p99']:.1f} | {s['max']:.1f} |"
        + (f" {s['server_cpu_ms_per_req']:.2f} | {s['server_cores']:.2f} | {s['job_cores']:.2f} | {s['client_cores']:.2f} | {s['machine_busy_cores']:.2f} |" if "server_cpu_s" in s else "")
    )


def markdown(m: dict) -> str:
    poll_head = (
        "| endpoint | requests | errors | req/s | p50 ms | p90 ms | p99 ms | max ms | API CPU ms/req | API cores | job cores | client cores | machine busy cores |\n"
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|"
    )
    sub_head = "| submits | requests | errors | req/s | p50 ms | p90 ms | p99 ms | max ms |\n|---|---:|---:|---:|---:|---:|---:|---:|"
    p = m["polls"]
    verdict = "met" if p["job"]["p99"] < TARGET_P99_MS and p["job"]["errors"] == 0 else "NOT met"
    lines = [
        "```markdown",
        "### Service API latency while a job runs (bench/bench_service.py)",
        "",
        f"- machine: {m['node']}, {m['cpus']} CPUs, Python {platform.python_version()}, {platform.platform()}",
        f"- load average (1/5/15 min) before: {' / '.join(f'{x:.2f}' for x in m['load_before'])}; after: {' / '.join(f'{x:.2f}' for x in m['load_after'])}",
        f"- command: `{m['command']}`",
        f"- running job: {m['docs']} demo docs, embedder minilm batch_size 16, in phase embed for every window: {m['embed_throughout']} (rows_done {m['rows_at_start']} -> {m['rows_at_end']} of "
            f"{m['rows_total']})",
        f"- {m['clients']} concurrent clients (one connection each, think time {m['think_ms']:.0f} ms), {m['seconds']:.0f} s per endpoint; one uvicorn process (`thresher serve`), max_concurrent_jobs "
            f"1",
        f"- target: p99 of `GET /v1/jobs/{{id}}` under {TARGET_P99_MS:.0f} ms with {m['clients']} clients: **{verdict}** (p99 {p['job']['p99']:.1f} ms)",
        "- columns: API CPU ms/req = CPU seconds of the `thresher serve` process (API, its threadpool, the scheduler thread) / answered requests; "
        "cores = CPU seconds / wall seconds of the window for the API process, the job (driver + its local Ray), this client, and the whole machine (everything running on it)",
        "",
        poll_head,
        row("`GET /v1/jobs/{id}`, 1 client", p["job_1"]),
        row(f"`GET /v1/jobs/{{id}}`, {m['clients']} clients", p["job"]),
        row(f"`GET /v1/jobs` (1 job), {m['clients']} clients", p["list"]),
        row(f"`GET /v1/jobs` ({p['list_full']['jobs_listed']} jobs), {m['clients']} clients", p["list_full"]),
        "",
        sub_head,
        row(f"`POST /v1/jobs`, {m['submits']['sequential']['requests']} sequential", m["submits"]["sequential"]),
        row(f"`POST /v1/jobs`, {m['submits']['concurrent']['requests']} concurrent", m["submits"]["concurrent"]),
        "",
        *[f"Errors of {name}: {s['error_kinds']}." for name, s in p.items() if s.get("error_kinds")],
        f"Cancelled {m['cancelled']} jobs through the API ({m['cancel_errors']} refused); the running job reached `{m['running_final']}`; total wall {m['total_s']:.0f} s.",
        "```",
    ]
    return "\n".join(lines)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--clients", type=int, default=50)
    ap.add_argument("--seconds", type=float, default=20.0, help="seconds per polled endpoint")
    ap.add_argument("--docs", type=int, default=10_000, help="demo docs of the running job (enough that embed outlasts every window)")
    ap.add_argument("--submits", type=int, default=50, help="sequential submits")
    ap.add_argument("--concurrent-submits", type=int, default=10)
    ap.add_argument("--think-ms", type=float, default=0.0, help="pause between one client's requests (0 = back to back)")
    ap.add_argument("--baseline-seconds", type=float, default=5.0, help="seconds of the one-client run")
    ap.add_argument("--out", default="/tmp/thresher-bench-service")
    args = ap.parse_args()

    t_all = time.perf_counter()
    load_before = os.getloadavg()
    root = Path(args.out).resolve()
    if root.exists():
        shutil.rmtree(root)
    root.mkdir(parents=True)
    corpus = root / "corpus" / "demo.parquet"
    write_demo_corpus(str(corpus), n_docs=args.docs, seed=0)

    server = ServeProcess(root, {TOKEN: "admin"}, env={"THRESHER_MAX_CONCURRENT_JOBS": "1"}).start()
    m: dict = {"node": platform.node(), "cpus": os.cpu_count(), "load_before": load_before, "clients": args.clients,
               "seconds": args.seconds, "think_ms": args.think_ms, "docs": args.docs, "polls": {}}
    m["command"] = " ".join(shlex.quote(a) for a in [Path(sys.executable).name, *sys.argv])
    queued: list[str] = []
    running_id = None
    try:
        r = server.http.post("/v1/jobs", json=spec(root, "running", corpus, {"model": "minilm", "batch_size": 16}))
        r.raise_for_status()
        running_id = r.json()["id"]
        print(f"submitted {running_id}; waiting for its embed phase ...", flush=True)
        job = server.wait(running_id, lambda j: j["progress"]["phase"] == "embed" and j["progress"]["phases"].get("embed", {}).get("rows_done", 0) > 0, timeout=900)
        embed = job["progress"]["phases"]["embed"]
        m["rows_at_start"], m["rows_total"] = embed["rows_done"], embed.get("rows_total")
        phases = [job["progress"]["phase"]]
        sid = int(job["driver"].split(":")[1])  # "pid:PID:START"; the driver leads its own session
        path = f"/v1/jobs/{running_id}"
        think = args.think_ms / 1000.0

        print("1 client ...", flush=True)
        m["polls"]["job_1"] = measure_poll(server, path, 1, args.baseline_seconds, think, sid)
        print(f"{args.clients} clients on {path} ...", flush=True)
        m["polls"]["job"] = measure_poll(server, path, args.clients, args.seconds, think, sid)
        phases.append(server.job(running_id)["progress"]["phase"])
        print(f"{args.clients} clients on /v1/jobs ...", flush=True)
        m["polls"]["list"] = measure_poll(server, "/v1/jobs", args.clients, args.seconds, think, sid)
        phases.append(server.job(running_id)["progress"]["phase"])

        print(f"{args.submits} sequential submits ...", flush=True)
        lat, errors = [], 0
        t0 = time.perf_counter()
        for i in range(args.submits):
            s0 = time.perf_counter()
            r = server.http.post("/v1/jobs", json=spec(root, f"queued-{i}", corpus))
            lat.append(time.perf_counter() - s0)
            if r.status_code == 202:
                queued.append(r.json()["id"])
            else:
                errors += 1
        m["submits"] = {"sequential": summary(lat, errors, time.perf_counter() - t0)}
        print(f"{args.concurrent_submits} concurrent submits ...", flush=True)
        t0 = time.perf_counter()
        lat, ids, errors = asyncio.run(concurrent_submits(server.url, [spec(root, f"concurrent-{i}", corpus) for i in range(args.concurrent_submits)]))
        m["submits"]["concurrent"] = summary(lat, errors, time.perf_counter() - t0)
        queued += ids
        states = {server.job(i)["state"] for i in queued}
        if states != {"queued"}:
            print(f"warning: the submitted jobs are not all queued: {states}", flush=True)

        print(f"{args.clients} clients on /v1/jobs with {len(queued) + 1} jobs ...", flush=True)
        m["polls"]["list_full"] = measure_poll(server, "/v1/jobs", args.clients, args.seconds, think, sid)
        m["polls"]["list_full"]["jobs_listed"] = len(server.http.get("/v1/jobs").json()["jobs"])
        job = server.job(running_id)
        phases.append(job["progress"]["phase"])
        m["rows_at_end"] = job["progress"]["phases"].get("embed", {}).get("rows_done")
        m["embed_throughout"] = "yes" if set(phases) == {"embed"} and job["state"] == "running" else f"NO (phases seen: {phases}, state {job['state']})"
    finally:
        cancelled = cancel_errors = 0
        for i in queued + ([running_id] if running_id else []):
            try:
                r = server.http.post(f"/v1/jobs/{i}/cancel")
                cancelled += r.status_code == 202
                cancel_errors += r.status_code != 202
            except httpx.HTTPError:
                cancel_errors += 1
        m["cancelled"], m["cancel_errors"] = cancelled, cancel_errors
        m["running_final"] = "?"
        if running_id:
            try:
                m["running_final"] = server.wait(running_id, lambda j: j["state"] in TERMINAL, timeout=120)["state"]
            except AssertionError as e:
                m["running_final"] = str(e)[:80]
        server.stop()
        server.reap()

    time.sleep(1)
    m["load_after"] = os.getloadavg()
    m["total_s"] = time.perf_counter() - t_all
    text = markdown(m)
    (root / "result.md").write_text(text + "\n")
    (root / "result.json").write_text(json.dumps(m, indent=1, default=str))
    print(text)


if __name__ == "__main__":
    main()
