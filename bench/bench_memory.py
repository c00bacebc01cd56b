"""Peak memory of a whole job (static embedder, QuaDMix with a budget) at several corpus sizes.

Each size runs in its own subprocess (a fresh driver, so a fresh local Ray and
fresh memory); this parent process samples, every --interval seconds, every
process of the job: the driver and all its descendants.  A local Ray started
by the driver (`ray.init()` inside `runner.run`) runs gcs_server and raylet
as children of the driver and every Ray worker and agent as a child of the
raylet, so "descendants of the driver" is the whole job.
The script checks that on every sample: it reads the Ray session name from
the descendants' command lines and counts processes that carry that session
name but are not descendants (reported as `strays`; expected 0).

Figures per size:
  rss_total   peak of the sum of RSS over the job's processes.  RSS counts a
              shared page once in every process that maps it: the plasma
              object store (/dev/shm) and shared libraries are counted several
              times, so this over-states the real footprint;
  pss_total   peak of the sum of PSS (proportional set size: each shared page
              split among the processes mapping it; from /proc/PID/smaps_rollup
              via psutil), the closest single number to "RAM the job uses";
  uss_total   peak of the sum of USS (pages private to one process);
  driver      peak RSS of the driver alone, sampled, and the kernel's own
              high-water mark (ru_maxrss reported by the driver at exit);
  top         the processes with the largest peak RSS, to show which one
              grows when memory grows with corpus size.

Memory must not grow with corpus size: the script prints the ratio of the peaks
of the largest to the smallest size.

Usage:
    python bench/bench_memory.py                          # 100k and 400k documents
    python bench/bench_memory.py --docs 20000,80000       # a quick check
"""

from __future__ import annotations

import argparse
import json
import os
import re
import resource
import shutil
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
MiB = 2**20
SESSION_RE = re.compile(r"session_\d{4}-\d\d-\d\d_\d\d-\d\d-\d\d_\d+_\d+")


def corpus_path(out: Path, n_docs: int, seed: int = 0) -> Path:
    return out / f"corpus-{n_docs}-seed{seed}.parquet"


def ensure_corpus(out: Path, n_docs: int, seed: int = 0) -> Path:
    """The demo corpus, generated once (in a subprocess, so this sampler stays small) and cached."""
    path = corpus_path(out, n_docs, seed)
    if path.exists():
        return path
    out.mkdir(parents=True, exist_ok=True)
    t = time.perf_counter()
    tmp = path.with_suffix(".tmp.parquet")
    code = "import sys; from thresher import demo_corpus; demo_corpus.write(sys.argv[1], n_docs=int(sys.argv[2]), seed=int(sys.argv[3]))"
    subprocess.run([sys.executable, "-c", code, str(tmp), str(n_docs), str(seed)], check=True)
    tmp.rename(path)
    print(f"generated {path} in {time.perf_counter() - t:.1f} s", flush=True)
    return path


def job_spec(corpus: Path, run_dir: Path, n_docs: int, args) -> dict:
    return {
        "input": {"paths": [str(corpus)], "id_column": "id"},
        "output": {"path": str(run_dir / "result"), "work_dir": str(run_dir / "work"), "overwrite": True},
        "embedder": {"model": "static", "device": "cpu"},
        "selection": {"strategy": "quadmix", "budget": {"unit": "docs", "amount": round(args.budget_frac * n_docs)}},
        "ray": {"num_cpus": args.ray_cpus} if args.ray_cpus else {},
        **({"scorers": {"dedup": {}}} if args.dedup else {}),
    }


# --- the job, in the child process ----------------------------------------------


def child(spec_file: str, result_file: str) -> int:
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("TQDM_DISABLE", "1")
    import ray

    from thresher.pipeline import runner
    from thresher.pipeline.spec import parse_spec

    spec = parse_spec(json.loads(Path(spec_file).read_text()))
    manifest = runner.run(spec, log=lambda m: print(m, flush=True), progress=False)
    ray.shutdown()
    self_kib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss  # KiB on Linux
    Path(result_file).write_text(
        json.dumps({"timings": manifest["timings"], "counts": manifest["counts"], "driver_maxrss_mib": self_kib / 1024})
    )
    return 0


# --- sampling, in the parent ------------------------------------------------------


def label(p) -> str:
    try:
        cmd = p.cmdline()
    except Exception:
        return "?"
    if not cmd:
        return p.name()
    if cmd[0].startswith("ray::"):
        return cmd[0].split()[0][:70]
    exe = os.path.basename(cmd[0])
    if exe.startswith("python") and len(cmd) > 1:
        script = next((c for c in cmd[1:] if not c.startswith("-")), "")
        return f"python {os.path.basename(script)}"[:70]
    return exe[:70]


def sample_job(proc, psutil, interval: float, with_pss: bool, log_path: Path) -> dict:
    """Sample until `proc` exits; returns peaks and per-process peaks."""
    root = psutil.Process(proc.pid)
    peak = {"rss": 0, "pss": 0, "uss": 0, "driver_rss": 0, "n_procs": 0, "strays": 0, "shm_used": 0}
    at_peak: dict = {}
    per_pid: dict[int, dict] = {}
    session = None
    shm0 = _shm_used()
    n_samples = 0
    t0 = time.perf_counter()
    with open(log_path, "w") as trace:
        trace.write("t_s,n_procs,rss_mib,pss_mib,uss_mib,driver_rss_mib,shm_used_mib\n")
        while proc.poll() is None:
            try:
                procs = [root, *root.children(recursive=True)]
            except psutil.NoSuchProcess:
                break
            pids = {p.pid for p in procs}
            if session is None:
                session = _find_session(procs)
            strays = _strays(psutil, session, pids) if session and n_samples % 25 == 0 else []
            if strays:
                procs += strays
            rss = pss = uss = 0
            driver = 0
            for p in procs:
                try:
                    if with_pss:
                        m = p.memory_full_info()
                        pss += m.pss
                        uss += m.uss
                    else:
                        m = p.memory_info()
                except (psutil.NoSuchProcess, psutil.AccessDenied, psutil.ZombieProcess):
                    continue
                rss += m.rss
                if p.pid == root.pid:
                    driver = m.rss
                rec = per_pid.setdefault(p.pid, {"peak_rss": 0, "label": None})
                if m.rss > rec["peak_rss"]:
                    rec["peak_rss"] = m.rss
                    rec["label"] = label(p)
                    if with_pss:
                        rec["pss_at_peak"] = m.pss
            shm = _shm_used() - shm0
            t = time.perf_counter() - t0
            trace.write(f"{t:.2f},{len(procs)},{rss / MiB:.1f},{pss / MiB:.1f},{uss / MiB:.1f},{driver / MiB:.1f},{shm / MiB:.1f}\n")
            if rss > peak["rss"]:
                at_peak = {"t_s": round(t, 2), "n_procs": len(procs)}
            for k, v in (("rss", rss), ("pss", pss), ("uss", uss), ("driver_rss", driver), ("n_procs", len(procs)), ("strays", len(strays)), ("shm_used", shm)):
                peak[k] = max(peak[k], v)
            n_samples += 1
            time.sleep(interval)
    top = sorted(per_pid.items(), key=lambda kv: -kv[1]["peak_rss"])
    return {
        "samples": n_samples,
        "session": session,
        "peak_mib": {k: (round(v / MiB, 1) if k not in ("n_procs", "strays") else v) for k, v in peak.items()},
        "rss_peak_at": at_peak,
        "top": [
            {"pid": pid, "label": r["label"], "peak_rss_mib": round(r["peak_rss"] / MiB, 1), **({"pss_at_peak_mib": round(r["pss_at_peak"] / MiB, 1)} if "pss_at_peak" in r else {})}
            for pid, r in top[:8]
        ],
    }


def _shm_used() -> int:
    try:
        st = os.statvfs("/dev/shm")
        return (st.f_blocks - st.f_bfree) * st.f_frsize
    except OSError:
        return 0


def _find_session(procs) -> str | None:
    for p in procs:
        try:
            m = SESSION_RE.search(" ".join(p.cmdline()))
        except Exception:
            continue
        if m:
            return m.group(0)
    return None


def _strays(psutil, session: str, pids: set[int]) -> list:
    """Processes of this job's Ray session that are not descendants of the driver."""
    found = []
    for p in psutil.process_iter(["pid", "cmdline"]):
        if p.info["pid"] in pids:
            continue
        if session in " ".join(p.info["cmdline"] or []):
            found.append(p)
    return found


def run_size(n_docs: int, args, psutil) -> dict:
    out = Path(args.out)
    corpus = ensure_corpus(out, n_docs)
    tag = str(n_docs)
    run_dir = out / f"mem-{tag}"
    shutil.rmtree(run_dir, ignore_errors=True)
    run_dir.mkdir(parents=True)
    spec_file = run_dir / "spec.json"
    spec_file.write_text(json.dumps(job_spec(corpus, run_dir, n_docs, args)))
    result_file = run_dir / "result.json"
    child_log = run_dir / "job.log"
    print(f"[{tag}] running the job on {corpus.name} (log {child_log}) ...", flush=True)
    t = time.perf_counter()
    with open(child_log, "w") as logf:
        proc = subprocess.Popen(
            [sys.executable, __file__, "--child", str(spec_file), str(result_file)],
            stdout=logf,
            stderr=subprocess.STDOUT,
        )
        sampled = sample_job(proc, psutil, args.interval, not args.no_pss, out / f"mem-trace-{tag}.csv")
        rc = proc.wait()
    wall = time.perf_counter() - t
    if rc != 0:
        raise SystemExit(f"[{tag}] the job failed (rc {rc}); see {child_log}")
    res = json.loads(result_file.read_text())
    if not args.keep:
        shutil.rmtree(run_dir / "result", ignore_errors=True)
        shutil.rmtree(run_dir / "work", ignore_errors=True)
    r = {"docs": n_docs, "wall_s": round(wall, 1), **sampled, **res}
    pk = r["peak_mib"]
    print(
        f"[{tag}] {wall:.0f} s; peak RSS total {pk['rss']:,.0f} MiB, PSS total {pk['pss']:,.0f} MiB, "
        f"driver RSS {pk['driver_rss']:,.0f} MiB (maxrss {res['driver_maxrss_mib']:,.0f}), {pk['n_procs']} processes, strays {pk['strays']}",
        flush=True,
    )
    return r


def main(argv: list[str] | None = None) -> int:
    if argv is None and len(sys.argv) > 1 and sys.argv[1] == "--child":
        return child(sys.argv[2], sys.argv[3])
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--docs", default="100000,400000", help="comma-separated corpus sizes")
    p.add_argument("--budget-frac", type=float, default=0.25, help="selection budget in docs, as a share of the corpus")
    p.add_argument("--ray-cpus", type=int, default=None, help="ray.num_cpus (default: the spec's default, all cores)")
    p.add_argument("--interval", type=float, default=0.2, help="seconds between samples")
    p.add_argument("--dedup", action="store_true", help="with scorers.dedup (exact and MinHash near duplicates) on")
    p.add_argument("--no-pss", action="store_true", help="sample RSS only (PSS/USS read /proc/PID/smaps_rollup)")
    p.add_argument("--out", default=str(HERE / "out"))
    p.add_argument("--keep", action="store_true", help="keep each job's output and work directories")
    args = p.parse_args(argv)
    import psutil

    sizes = [int(x) for x in args.docs.split(",") if x.strip()]
    results = [run_size(n, args, psutil) for n in sizes]

    print(f"\n{'docs':>9}{'wall s':>8}{'embed s':>9}{'RSS total':>11}{'PSS total':>11}{'USS total':>11}{'driver RSS':>12}{'driver max':>12}{'procs':>7}")
    for r in results:
        pk = r["peak_mib"]
        print(
            f"{r['docs']:>9,}{r['wall_s']:>8.0f}{r['timings']['embed']['seconds']:>9.0f}{pk['rss']:>11,.0f}{pk['pss']:>11,.0f}{pk['uss']:>11,.0f}"
            f"{pk['driver_rss']:>12,.0f}{r['driver_maxrss_mib']:>12,.0f}{pk['n_procs']:>7}"
        )
    print("(MiB; peaks over the run; driver max = the driver's ru_maxrss)")
    for r in results:
        print(f"\nlargest processes at {r['docs']:,} docs (peak RSS, MiB):")
        for t in r["top"]:
            print(f"  {t['peak_rss_mib']:>8,.0f}  pss {t.get('pss_at_peak_mib', float('nan')):>7,.0f}  {t['label']}")
    if len(results) > 1:
        a, b = results[0], results[-1]
        print(f"\npeak ratio {b['docs']:,} / {a['docs']:,} docs ({b['docs'] / a['docs']:.0f}x the documents):")
        for k in ("rss", "pss", "uss", "driver_rss"):
            if a["peak_mib"][k]:
                print(f"  {k:<11} {b['peak_mib'][k] / a['peak_mib'][k]:.2f}")
        print(f"  driver_max  {b['driver_maxrss_mib'] / a['driver_maxrss_mib']:.2f}")
    out = Path(args.out)
    name = "bench_memory.json"
    (out / name).write_text(json.dumps({"argv": sys.argv, "args": vars(args), "results": results}, indent=2))
    print(f"\nwrote {out / name}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
