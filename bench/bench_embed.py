"""Embedding throughput: the pipeline's streaming embed phase against a bare encode loop.

For each model (minilm, static) this script, in one process and side by side:

  1. writes the deterministic demo corpus (cached in --out, keyed by size);
  2. "bare": in the driver, with no Ray, runs the same work the embed phase
     does, one stage at a time, and times each stage on its own:
       read      pyarrow reads the corpus and cuts it into pipeline-sized batches
       prepare   validate + signals (`prepare_batch`, what the pipeline runs
                 before embedding)
       encode    `Embedder.encode(chunk)` over the valid texts, chunk = the
                 pipeline's batch size: the bare model.encode loop
     The model is loaded exactly as the pipeline loads it
     (`Embedder(resolve_model(name), device="cpu", batch_size=...)`), with
     `torch.set_num_threads(cpus_per_actor)` as `EmbedStage` does; loading is
     timed apart and not in the encode figure.
  3. "pipeline": `thresher.pipeline.runner.run` on the same corpus with a fresh
     work directory, then reads the per-phase timings from the manifest.  The
     embed phase is the whole streaming stage (read -> validate -> signals ->
     embed on the actor pool -> Parquet write, actor start-up and model load
     on the actor included); model extraction/distillation on the driver is
     timings["model"] and is not counted.

  4. "pipeline, head": the same job on the first --head-frac of the corpus.
     The embed phase pays fixed costs (actor start, model load, Ray's
     planning) once per job; the marginal rate between the two runs,
     (N - n) / (t_N - t_n), cancels them and is the pipeline's steady-state
     throughput on a long corpus.

Bare and pipeline alternate --repeats times; the best run of each is kept and
the overhead ratio is pipeline embed docs/s / bare encode docs/s (target:
>= 0.85, i.e. the pipeline within 15% of bare encode), reported both for the
whole embed phase of N documents and for the marginal rate.

Ray CPUs: the embedding actor reserves `cpus_per_actor` logical CPUs.  With a
local Ray of num_cpus == cpus_per_actor nothing is left for the read and write
tasks, which each need one logical CPU, so the stream cannot move.  Ray's
num_cpus is only a scheduling count, so the default here is cpus_per_actor + 2
(one read task and one write task beside the actor) while the machine still
has its real cores; the extra tasks share the cores with the actor, and that
contention is part of the measured pipeline cost.

On a GPU (--device cuda): the bare loop is the same `Embedder.encode` in
--precision (fp16 by default), the pipeline runs --actors actors of
--gpus-per-actor each with the tokenizer in CPU tasks ahead of them, and
the report adds tokens/s (the valid documents' token ids as the model
truncates them) and model FLOP/s as a share of --peak-tflops (the device's
dense bf16/fp16 peak; 989 for an H100/H200 SXM): 2 x the matmul parameters
per token plus attention's 4 x layers x hidden x mean length.

Usage:
    python bench/bench_embed.py                       # both models, defaults
    python bench/bench_embed.py --model minilm --device cuda --docs 200000 --actors 2 --gpus-per-actor 0.5
    python bench/bench_embed.py --model minilm --docs 2000
    python bench/bench_embed.py --model static --static-docs 50000
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import sys
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
os.environ.setdefault("TQDM_DISABLE", "1")

import pyarrow.parquet as pq  # noqa: E402

HERE = Path(__file__).resolve().parent


def corpus_path(out: Path, n_docs: int, seed: int = 0) -> Path:
    return out / f"corpus-{n_docs}-seed{seed}.parquet"


def ensure_corpus(out: Path, n_docs: int, seed: int = 0) -> tuple[Path, float | None]:
    """The demo corpus of n_docs documents, generated once and cached in `out`."""
    from thresher import demo_corpus

    path = corpus_path(out, n_docs, seed)
    if path.exists():
        return path, None
    out.mkdir(parents=True, exist_ok=True)
    t = time.perf_counter()
    tmp = path.with_suffix(".tmp.parquet")
    demo_corpus.write(str(tmp), n_docs=n_docs, seed=seed)
    tmp.rename(path)
    return path, time.perf_counter() - t


def ensure_head(corpus: Path, n_docs: int) -> Path:
    """The first n_docs rows of `corpus`, as their own file (cached beside it)."""
    path = corpus.with_name(f"{corpus.stem}-head{n_docs}.parquet")
    if not path.exists():
        tmp = path.with_suffix(".tmp.parquet")
        pq.write_table(pq.read_table(corpus).slice(0, n_docs), tmp, row_group_size=10_000)
        tmp.rename(path)
    return path


def loadavg() -> str:
    try:
        return "%.2f %.2f %.2f" % os.getloadavg()
    except OSError:
        return "n/a"


# --- other people's load ------------------------------------------------------
# The machine may be shared (other jobs, test suites).  Every timed segment is
# wrapped in CpuWatch, which reports how much CPU the rest of the machine used
# meanwhile ("foreign": busy CPU seconds of the whole machine minus those of
# this process and its descendants, as a share of wall seconds x cores), and
# wait_quiet() holds each segment back until the machine is idle.


def _busy_s() -> float:
    import psutil

    t = psutil.cpu_times()
    return t.user + t.nice + t.system + getattr(t, "irq", 0.0) + getattr(t, "softirq", 0.0)


class CpuWatch:
    """Wall seconds, this process tree's CPU seconds and everyone else's, over a `with` block."""

    def __init__(self, interval: float = 0.5):
        self.interval = interval

    def _sample(self) -> None:
        import psutil

        me = psutil.Process()
        try:
            procs = [me, *me.children(recursive=True)]
        except psutil.Error:
            procs = [me]
        for p in procs:
            try:
                c = p.cpu_times()
                key = (p.pid, p.create_time())
            except psutil.Error:
                continue
            self._own[key] = max(self._own.get(key, 0.0), c.user + c.system)

    def _loop(self) -> None:
        while not self._stop.wait(self.interval):
            self._sample()

    def __enter__(self) -> "CpuWatch":
        import threading

        self._own: dict = {}
        self._sample()
        self._base = dict(self._own)
        self._busy0 = _busy_s()
        self._t0 = time.perf_counter()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, daemon=True)
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join()
        self._sample()
        self.wall_s = time.perf_counter() - self._t0
        busy = _busy_s() - self._busy0
        self.own_s = sum(v - self._base.get(k, 0.0) for k, v in self._own.items())
        self.foreign_s = max(0.0, busy - self.own_s)
        self.foreign_frac = self.foreign_s / max(self.wall_s * (os.cpu_count() or 1), 1e-9)

    def as_dict(self) -> dict:
        return {"wall_s": round(self.wall_s, 2), "own_cpu_s": round(self.own_s, 2), "foreign_cpu_s": round(self.foreign_s, 2), "foreign_frac": round(self.foreign_frac, 3)}


def wait_quiet(max_wait_s: float, threshold: float = 0.20, window_s: float = 3.0) -> float:
    """Wait (at most max_wait_s) until the machine's busy share over window_s is below threshold."""
    import psutil

    t0 = time.perf_counter()
    while True:
        busy = psutil.cpu_percent(interval=window_s) / 100.0
        waited = time.perf_counter() - t0
        if busy < threshold or waited >= max_wait_s:
            if waited > window_s + 0.5:
                print(f"    (waited {waited:.0f} s for a quiet machine; busy {busy:.0%})", flush=True)
            return busy


# --- bare ---------------------------------------------------------------------


def load_embedder(model: str, model_batch_size: int, threads: int, device: str = "cpu", precision: str = "fp16"):
    import torch

    from thresher.operators.embed import Embedder, resolve_model

    torch.set_num_threads(threads)
    ref = resolve_model(model)
    t = time.perf_counter()
    emb = Embedder(ref, device=device, batch_size=model_batch_size, precision=precision)
    return emb, time.perf_counter() - t


def token_count(model: str, chunks: list[list[str]]) -> int | None:
    """Token ids the model sees for these texts (as the tokenizer stage truncates them); None for model2vec."""
    import pyarrow as pa

    from thresher.operators import schema as S
    from thresher.operators.embed import TOKENS, resolve_model, tokenize_batch, tokenizer_for

    tok = tokenizer_for(resolve_model(model))
    if tok is None:
        return None
    texts = [t for c in chunks for t in c]
    batch = pa.table({S.TEXT: texts, S.INVALID_REASON: pa.nulls(len(texts), pa.string())})
    return int(tokenize_batch(batch, tok).column(TOKENS).combine_chunks().value_lengths().to_numpy().sum())


def flops_per_token(model: str, mean_len: float) -> float:
    """Forward FLOPs per token of a BERT-style encoder: 2 x matmul parameters, plus QK^T and AV (4 x hidden x length per layer)."""
    from thresher.operators.embed import resolve_model

    cfg = json.loads((Path(resolve_model(model).path) / "config.json").read_text())
    h, layers, ff = cfg["hidden_size"], cfg["num_hidden_layers"], cfg["intermediate_size"]
    return layers * (2 * (4 * h * h + 2 * h * ff) + 4 * h * mean_len)


def bare_run(corpus: Path, embedder, batch_size: int, model: str) -> dict:
    from thresher.operators import schema as S
    from thresher.pipeline.phases import prepare_batch
    from thresher.operators.validate import ValidateConfig

    cfg = ValidateConfig(text_column="text", id_column="id")

    t = time.perf_counter()
    table = pq.read_table(corpus)
    batches = [table.slice(i, batch_size) for i in range(0, table.num_rows, batch_size)]
    t_read = time.perf_counter() - t
    n = table.num_rows

    with CpuWatch() as w_prep:
        prepared = [prepare_batch(b, cfg) for b in batches]
    t_prepare = w_prep.wall_s

    chunks = []
    for b in prepared:
        valid = b.column(S.INVALID_REASON).is_null().to_pylist()
        texts = b.column(S.TEXT).to_pylist()
        chunks.append([x for x, ok in zip(texts, valid) if ok])
    n_valid = sum(len(c) for c in chunks)
    tokens = token_count(model, chunks)
    del prepared, batches, table

    with CpuWatch() as w_enc:
        for c in chunks:
            embedder.encode(c)
    t_encode = w_enc.wall_s
    return {
        "docs": n,
        "valid": n_valid,
        "tokens": tokens,
        "read_s": t_read,
        "prepare_s": t_prepare,
        "encode_s": t_encode,
        "prepare_cpu": w_prep.as_dict(),
        "encode_cpu": w_enc.as_dict(),
        "read_docs_per_s": n / t_read,
        "prepare_docs_per_s": n / t_prepare,
        "encode_docs_per_s": n_valid / t_encode,
        # the same stages run one after the other in one process
        "sequential_docs_per_s": n / (t_read + t_prepare + t_encode),
    }


# --- pipeline -----------------------------------------------------------------


def pipeline_run(corpus: Path, run_dir: Path, model: str, args) -> dict:
    import ray

    from thresher.pipeline import runner
    from thresher.pipeline.spec import parse_spec

    shutil.rmtree(run_dir, ignore_errors=True)
    run_dir.mkdir(parents=True)
    spec = parse_spec(
        {
            "input": {"paths": [str(corpus)], "id_column": "id"},
            "output": {"path": str(run_dir / "result"), "work_dir": str(run_dir / "work"), "overwrite": True},
            "embedder": {
                "model": model,
                "device": args.device,
                "actors": args.actors,
                "cpus_per_actor": args.cpus_per_actor,
                "gpus_per_actor": args.gpus_per_actor,
                "precision": args.precision,
                "batch_size": args.batch_size,
                "model_batch_size": args.model_batch_size,
            },
            "ray": {"num_cpus": args.ray_cpus},
        }
    )
    logs: list[str] = []
    try:
        with CpuWatch() as w:
            manifest = runner.run(spec, log=logs.append, progress=False)
    finally:
        if ray.is_initialized():
            ray.shutdown()  # nothing of Ray lingers while the next bare run is timed
    if not args.keep:
        shutil.rmtree(run_dir, ignore_errors=True)
    # foreign_frac covers the whole run() (all phases); the embed phase is most of it
    return {"wall_s": w.wall_s, "cpu": w.as_dict(), "timings": manifest["timings"], "counts": manifest["counts"]}


# --- report -------------------------------------------------------------------


def fmt_rate(x: float | None) -> str:
    return "-" if x is None else f"{x:,.1f}"


def report(model: str, n_docs: int, load_s: float, cold_s: float, bares: list[dict], pipes: list[dict], heads: list[dict], peak_tflops: float | None = None) -> dict:
    best_bare = max(bares, key=lambda b: b["encode_docs_per_s"])
    best_pipe = max(pipes, key=lambda p: p["timings"]["embed"]["docs_per_s"])
    emb = best_pipe["timings"]["embed"]
    ratio = emb["docs_per_s"] / best_bare["encode_docs_per_s"]
    ratio_seq = emb["docs_per_s"] / best_bare["sequential_docs_per_s"]
    ratios_paired = [p["timings"]["embed"]["docs_per_s"] / b["encode_docs_per_s"] for b, p in zip(bares, pipes)]
    marginals = [marginal(p, h) for p, h in zip(pipes, heads)]
    best_marginal = max(marginals)
    ratio_marginal = best_marginal / best_bare["encode_docs_per_s"]

    print(f"\n=== {model}: {n_docs:,} docs, best of {len(bares)} alternating runs ===")
    print(f"model load (Embedder(...), bare, not in any figure below): {load_s:.2f} s")
    print(f"cold start (new process: imports + model load; an actor pays it inside the embed phase): {cold_s:.2f} s")
    print(f"{'stage':<44}{'docs':>9}{'seconds':>10}{'docs/s':>12}")

    def row(name, docs, secs):
        print(f"{name:<44}{docs:>9,}{secs:>10.2f}{fmt_rate(docs / secs if secs else None):>12}")

    row("bare read (pyarrow, batches)", best_bare["docs"], best_bare["read_s"])
    row("bare prepare (validate + signals)", best_bare["docs"], best_bare["prepare_s"])
    row("bare encode (Embedder.encode loop)", best_bare["valid"], best_bare["encode_s"])
    row("bare read+prepare+encode, sequential", best_bare["docs"], best_bare["read_s"] + best_bare["prepare_s"] + best_bare["encode_s"])
    row("pipeline embed phase (whole stream)", emb["rows"], emb["seconds"])
    head = heads[marginals.index(best_marginal)]["timings"]["embed"]
    row(f"pipeline embed phase, first {head['rows']:,} docs", head["rows"], head["seconds"])
    print(f"{'pipeline embed, marginal (fixed costs cancel)':<44}{'':>9}{'':>10}{fmt_rate(best_marginal):>12}")
    for phase in ("clusters", "fit", "dedup", "score", "select", "write"):
        tm = best_pipe["timings"].get(phase, {})
        if "seconds" in tm:
            rows = tm.get("rows") or 0
            print(f"{'pipeline ' + phase:<44}{rows:>9,}{tm['seconds']:>10.2f}{fmt_rate(rows / tm['seconds'] if rows and tm['seconds'] else None):>12}")
    tot = best_pipe["timings"]["total"]["seconds"]
    print(f"{'pipeline total (all phases, run())':<44}{best_pipe['counts']['input']:>9,}{tot:>10.2f}{fmt_rate(best_pipe['counts']['input'] / tot):>12}")
    print(f"pipeline model resolve on the driver (timings['model'], not counted): {best_pipe['timings']['model']['seconds']:.2f} s")
    print(f"invalid (quarantined, not encoded): {best_pipe['counts'].get('invalid', 0)}")
    print(f"overhead ratio  pipeline embed / bare encode       = {ratio:.3f}  (target >= 0.85)")
    print(f"                pipeline marginal / bare encode    = {ratio_marginal:.3f}  (target >= 0.85)")
    print(f"                pipeline embed / bare sequential   = {ratio_seq:.3f}")
    job = best_pipe["counts"]["input"] / tot / best_bare["sequential_docs_per_s"]
    print(f"                whole job / bare sequential        = {job:.3f}  (read + prepare + encode, one after the other)")
    print("                per repeat (paired, same order)    = " + ", ".join(f"{r:.3f}" for r in ratios_paired))
    print("                marginal per repeat                = " + ", ".join(f"{m / best_bare['encode_docs_per_s']:.3f} ({fmt_rate(m)} docs/s)" for m in marginals))
    print("bare encode docs/s per repeat:    " + ", ".join(f"{fmt_rate(b['encode_docs_per_s'])} (foreign {b['encode_cpu']['foreign_frac']:.0%})" for b in bares))
    print("pipeline embed docs/s per repeat: " + ", ".join(f"{fmt_rate(p['timings']['embed']['docs_per_s'])} (foreign {p['cpu']['foreign_frac']:.0%})" for p in pipes))
    print("(foreign = CPU used by other processes on the machine during the run, share of all cores)")
    if best_bare["tokens"]:
        per_token = flops_per_token(model, best_bare["tokens"] / best_bare["valid"])
        for name, docs_s in (("bare encode", best_bare["encode_docs_per_s"]), ("pipeline embed phase", emb["docs_per_s"]), ("pipeline marginal", best_marginal)):
            tok_s = docs_s * best_bare["tokens"] / best_bare["valid"]
            share = f", {tok_s * per_token / (peak_tflops * 1e12):.1%} of {peak_tflops:g} TFLOP/s" if peak_tflops else ""
            print(f"{name}: {tok_s:,.0f} tokens/s, {tok_s * per_token / 1e12:.2f} model TFLOP/s{share}")
    return {
        "model": model,
        "docs": n_docs,
        "model_load_s": load_s,
        "cold_start_s": cold_s,
        "bare": bares,
        "pipeline": pipes,
        "ratio_best": ratio,
        "ratio_vs_sequential": ratio_seq,
        "job_vs_sequential": job,
        "ratios_paired": ratios_paired,
        "heads": heads,
        "marginal_docs_per_s": marginals,
        "ratio_marginal": ratio_marginal,
    }


def marginal(full: dict, head: dict) -> float:
    """Docs/s between a run on N documents and one on their first n: what the (N - n) more cost."""
    a, b = full["timings"]["embed"], head["timings"]["embed"]
    return (a["rows"] - b["rows"]) / max(a["seconds"] - b["seconds"], 1e-9)


def cold_start(model: str, model_batch_size: int, threads: int) -> float:
    """Seconds for a fresh Python process to import the embedder and load the model.

    An embedding actor pays about this (plus Ray's own worker start) before its
    first batch; it is part of the pipeline's embed phase and of no bare figure.
    """
    import subprocess

    code = (
        "import time; t = time.perf_counter(); import torch; torch.set_num_threads(%d); "
        "from thresher.operators.embed import Embedder, resolve_model; "
        "Embedder(resolve_model(%r), device='cpu', batch_size=%d); print(time.perf_counter() - t)"
    ) % (threads, model, model_batch_size)
    t = time.perf_counter()
    subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    return time.perf_counter() - t


def bench_model(model: str, n_docs: int, args) -> dict:
    out = Path(args.out)
    corpus, gen_s = ensure_corpus(out, n_docs)
    if gen_s is not None:
        print(f"[{model}] generated {corpus} in {gen_s:.1f} s")
    threads = max(1, int(args.cpus_per_actor))
    embedder, load_s = load_embedder(model, args.model_batch_size, threads, args.device, args.precision)
    # warm-up: first calls pay one-off costs (lazy imports, allocator, kernels)
    embedder.encode(["warm up the model with a short text"] * 8)
    wait_quiet(args.quiet_wait)
    cold_s = cold_start(model, args.model_batch_size, threads)

    head_corpus = ensure_head(corpus, max(1, round(n_docs * args.head_frac)))
    bares, pipes, heads = [], [], []
    for rep in range(args.repeats):
        wait_quiet(args.quiet_wait)
        print(f"[{model}] repeat {rep + 1}/{args.repeats}: bare ... (load avg {loadavg()})", flush=True)
        bares.append(bare_run(corpus, embedder, args.batch_size, model))
        b = bares[-1]
        print(f"[{model}]   bare encode {b['encode_docs_per_s']:,.1f} docs/s (foreign CPU {b['encode_cpu']['foreign_frac']:.0%})", flush=True)
        wait_quiet(args.quiet_wait)
        print(f"[{model}]   pipeline ... (load avg {loadavg()})", flush=True)
        pipes.append(pipeline_run(corpus, out / f"run-{model}-{rep}", model, args))
        pr = pipes[-1]
        print(f"[{model}]   pipeline embed {pr['timings']['embed']['docs_per_s']:,.1f} docs/s (foreign CPU {pr['cpu']['foreign_frac']:.0%})", flush=True)
        wait_quiet(args.quiet_wait)
        heads.append(pipeline_run(head_corpus, out / f"run-{model}-head-{rep}", model, args))
        print(f"[{model}]   pipeline on the first {heads[-1]['counts']['input']:,} docs: embed phase {heads[-1]['timings']['embed']['seconds']:.1f} s; marginal {marginal(pr, heads[-1]):,.1f} "
            f"docs/s", flush=True)
    del embedder
    return report(model, n_docs, load_s, cold_s, bares, pipes, heads, args.peak_tflops)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--model", choices=["minilm", "static", "both"], default="both")
    p.add_argument("--docs", type=int, default=2000, help="documents for minilm (default 2000)")
    p.add_argument("--static-docs", type=int, default=50000, help="documents for static (default 50000)")
    p.add_argument("--batch-size", type=int, default=256, help="embedder.batch_size: documents per actor batch and per bare encode chunk")
    p.add_argument("--model-batch-size", type=int, default=64, help="embedder.model_batch_size")
    p.add_argument("--cpus-per-actor", type=float, default=2.0, help="embedder.cpus_per_actor (also torch threads, as EmbedStage)")
    p.add_argument("--device", choices=["cpu", "cuda"], default="cpu", help="embedder.device, for the bare loop and the pipeline")
    p.add_argument("--precision", choices=["fp16", "bf16", "fp32"], default="fp16", help="embedder.precision (CUDA only)")
    p.add_argument("--actors", type=int, default=1, help="embedder.actors")
    p.add_argument("--gpus-per-actor", type=float, default=1.0, help="embedder.gpus_per_actor (CUDA only)")
    p.add_argument("--peak-tflops", type=float, default=None, help="the device's dense fp16/bf16 peak, for the share of peak (e.g. 989 for an H200)")
    p.add_argument("--ray-cpus", type=int, default=None, help="ray.num_cpus for the local Ray (default cpus_per_actor + 2)")
    p.add_argument("--head-frac", type=float, default=0.25, help="share of the corpus for the second pipeline run (marginal rate)")
    p.add_argument("--repeats", type=int, default=2, help="alternating bare/pipeline runs; the best of each is reported")
    p.add_argument("--out", default=str(HERE / "out"), help="corpus cache, run directories and bench_embed.json")
    p.add_argument("--keep", action="store_true", help="keep each run's output and work directories")
    p.add_argument("--quiet-wait", type=float, default=300.0, help="before each timed run, wait up to this many seconds for the machine to be idle (0: don't)")
    args = p.parse_args(argv)
    if args.ray_cpus is None:
        args.ray_cpus = int(args.cpus_per_actor) + 2

    import ray
    import torch

    print(f"python {platform.python_version()}, ray {ray.__version__}, torch {torch.__version__}, {os.cpu_count()} CPUs")
    print(f"batch_size {args.batch_size}, model_batch_size {args.model_batch_size}, cpus_per_actor {args.cpus_per_actor}, ray num_cpus {args.ray_cpus}")
    models = ["minilm", "static"] if args.model == "both" else [args.model]
    results = []
    for m in models:
        results.append(bench_model(m, args.docs if m == "minilm" else args.static_docs, args))
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    (out / "bench_embed.json").write_text(json.dumps({"argv": sys.argv, "args": vars(args), "results": results}, indent=2, default=str))
    print(f"\nwrote {out / 'bench_embed.json'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
