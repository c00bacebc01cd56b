"""`thresher` command line: run a job, make the demo corpus, print the spec reference, serve and talk to the service.

The entry module above both layers: it may import the pipeline and the
service, which never import it (services -> pipeline -> operators).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from thresher.pipeline.errors import ThresherError
from thresher.pipeline.spec import JobSpec, load_spec


def _version() -> str:
    from importlib import metadata

    return metadata.version("thresher")


def _positive(value: str) -> int:
    n = int(value)
    if n < 1:
        raise argparse.ArgumentTypeError(f"must be a positive integer, got {value}")
    return n


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="thresher", description="Curate LLM pretraining corpora on Ray Data.")
    parser.add_argument("--version", action="version", version=f"thresher {_version()}")
    parser.add_argument("--config", metavar="FILE", help="operator settings (YAML; proxy_commands, ...); default $THRESHER_CONFIG")
    sub = parser.add_subparsers(dest="command", required=True)
    run_p = sub.add_parser("run", help="run a selection job from a YAML/JSON spec")
    run_p.add_argument("spec", help="path to the job spec")
    run_p.add_argument("--no-progress", action="store_true", help="no live progress bars: one plain line per phase")
    run_p.add_argument("--force", action="append", default=[], metavar="PHASE", help="rerun PHASE (and every phase after it) even if complete; repeatable")
    gc_p = sub.add_parser("gc", help="remove phase directories of a work directory that the given specs do not use")
    gc_p.add_argument("work_dir", help="the work directory (OUTPUT.work by default)")
    gc_p.add_argument("specs", nargs="*", help="specs whose phases to keep; none = keep what the last job there used")
    gc_p.add_argument("--dry-run", action="store_true", help="print what would be removed, remove nothing")
    demo_p = sub.add_parser("demo-corpus", help="write the bundled deterministic demo corpus")
    demo_p.add_argument("path", help="output file (.parquet or .jsonl)")
    demo_p.add_argument("--docs", type=int, default=4000)
    demo_p.add_argument("--seed", type=int, default=0)
    cmp_p = sub.add_parser("compare", help="run several strategies on one scored pool and write one table")
    cmp_p.add_argument("spec", help="the job spec (its selection's budget, filters and domain are kept)")
    cmp_p.add_argument("--strategies", nargs="+", default=["uniform", "topk", "kmq", "quadmix"], help="strategy names, each at its default parameters")
    cmp_p.add_argument("--out", required=True, help="directory for one output per strategy, compare.json and compare.md")
    cmp_p.add_argument("--validation", nargs="+", help="files of text to judge each selection on: an n-gram and a transformer proxy LM trained on it")
    cmp_p.add_argument("--judge-seeds", type=_positive, default=3, help="seeds per judge (default 3): each judge's loss is a mean over them")
    cmp_p.add_argument("--judge-steps", type=_positive, default=200, help="training steps of the transformer judge (default 200; about 40 s a seed on one CPU core at realmix's size)")
    explain_p = sub.add_parser("explain", help="a document's scores, domain, copies and why it was or was not selected")
    explain_p.add_argument("output", help="a job's output directory")
    explain_p.add_argument("doc_id")
    versions_p = sub.add_parser("versions", help="the versions of a versioned output, newest first (* = latest)")
    versions_p.add_argument("output", help="the output directory (output.path of a spec with output.versions)")
    sub.add_parser("spec-reference", help="print every spec field with its default as Markdown")
    serve_p = sub.add_parser("serve", help="run the selection service (HTTP API, job store, scheduler)")
    serve_p.add_argument("--host", help="bind address (default 127.0.0.1)")
    serve_p.add_argument("--port", type=int, help="port (default 8000; 0 = any free port)")
    serve_p.add_argument("--data-dir", help="job store and per-job files (default ./thresher-data)")
    for name, text in (("submit", "submit a job spec to the service"), ("status", "a job's state and progress, or every job"), ("cancel", "cancel a job"), ("logs", "a job's log")):
        c = sub.add_parser(name, help=text)
        c.add_argument("--url", help="the service (default $THRESHER_URL or http://127.0.0.1:8000)")
        c.add_argument("--token", help="bearer token (default $THRESHER_TOKEN)")
        if name == "submit":
            c.add_argument("spec", help="path to the job spec (YAML/JSON)")
            c.add_argument("--wait", action="store_true", help="wait until the job ends; exit 0 only if it succeeded")
            c.add_argument("--idempotency-key", help="a retried submission with the same key returns the first job")
        else:
            c.add_argument("id", nargs="?" if name == "status" else None, help="job id")
        if name == "logs":
            c.add_argument("--follow", "-f", action="store_true", help="keep printing until the job ends")
    sched_p = sub.add_parser("schedules", help="the service's schedules: list, add, pause, resume, delete")
    sched_sub = sched_p.add_subparsers(dest="action", required=True)
    for action, text in (("list", "every schedule with its next run"), ("add", "a job spec submitted at each cron fire time"), ("pause", "stop firing"),
                         ("resume", "fire again, from the next fire time on"), ("delete", "remove a schedule (its jobs stay)")):
        a = sched_sub.add_parser(action, help=text)
        a.add_argument("--url", help="the service (default $THRESHER_URL or http://127.0.0.1:8000)")
        a.add_argument("--token", help="bearer token (default $THRESHER_TOKEN)")
        if action != "list":
            a.add_argument("name", help="the schedule's name")
        if action == "add":
            a.add_argument("spec", help="path to the job spec each firing submits (YAML/JSON)")
            a.add_argument("--cron", required=True, help="five-field cron expression, e.g. '0 2 * * *' (02:00 every day)")
            a.add_argument("--timezone", default="UTC", help="IANA zone the expression is read in (default UTC)")
            a.add_argument("--catch-up", choices=("latest", "skip"), default="latest", help="firings missed while no service ran: one job for the latest (default), or none")
            a.add_argument("--paused", action="store_true", help="add it paused")
    for command in [*sub.choices.values(), *sched_sub.choices.values()]:  # `thresher serve --config FILE` as well as `thresher --config FILE serve`
        command.add_argument("--config", metavar="FILE", default=argparse.SUPPRESS, help="operator settings (as before the command)")
    args = parser.parse_args(argv)
    try:
        from thresher.services.config import load_service_settings  # the CLI reads the whole settings file, strictly

        settings = load_service_settings(args.config)
        if args.command == "serve":
            return _serve(args, settings)
        if args.command in ("submit", "status", "cancel", "logs"):
            return _client(args)
        if args.command == "schedules":
            return _schedules(args)
        if args.command == "run":
            return _run(args.spec, progress=not args.no_progress, force=tuple(args.force), settings=settings)
        if args.command == "gc":
            return _gc(Path(args.work_dir), args.specs, args.dry_run)
        if args.command == "compare":
            from thresher.pipeline.compare import compare, table

            rows, verdict = compare(load_spec(args.spec), args.strategies, Path(args.out), args.validation, settings=settings,
                                    judge_seeds=args.judge_seeds, judge_steps=args.judge_steps)
            print(table(rows, verdict), end="")
            return 0
        if args.command == "explain":
            import json

            from thresher.pipeline.explain import explain

            print(json.dumps(explain(Path(args.output), args.doc_id), indent=2, default=str))
            return 0
        if args.command == "versions":
            from thresher.pipeline import versions
            from thresher.pipeline.errors import InputError

            if not versions.is_versioned(Path(args.output)):
                raise InputError(f"{args.output}: not a versioned output (no versions/ in it)")
            print(versions.table(Path(args.output)), end="")
            return 0
        if args.command == "demo-corpus":
            from thresher.demo_corpus import write

            fmt = "jsonl" if args.path.endswith((".jsonl", ".json")) else "parquet"
            path = write(args.path, n_docs=args.docs, seed=args.seed, fmt=fmt)
            print(f"wrote {args.docs} documents to {path}")
            return 0
        print(spec_reference())
        return 0
    except ThresherError as e:
        print(f"thresher: {e.label}: {e}", file=sys.stderr)
        return e.exit_code


def _run(spec_path: str, progress: bool, force: tuple[str, ...], settings) -> int:
    spec = load_spec(spec_path)  # refuses a bad spec before Ray starts
    from thresher.pipeline.console import JobConsole
    from thresher.pipeline.runner import run

    with JobConsole(live=progress) as console:
        manifest = run(spec, log=lambda m: None, progress=False, on_event=console.on_event, force=force, capture_output=True, handle_signals=True, settings=settings)
    print(summary(spec, manifest))
    return 0


def _serve(args, settings) -> int:
    import uvicorn

    from thresher.services.app import create_app

    for flag, field in (("host", "host"), ("port", "port"), ("data_dir", "data_dir")):
        if getattr(args, flag) is not None:
            settings = settings.model_copy(update={field: type(getattr(settings, field))(getattr(args, flag))})
    app = create_app(settings, config_path=args.config)
    if app.state.new_token:
        print(f"first start: admin token {app.state.new_token} (also in {settings.data_dir / 'admin-token'}; export THRESHER_TOKEN=...)", flush=True)
    uvicorn.run(app, host=settings.host, port=settings.port, log_level="info")
    return 0


def _client(args) -> int:
    from thresher.services.client import Client, line

    client = Client(args.url, args.token)
    if args.command == "submit":
        job = client.submit(args.spec, args.idempotency_key)
        print(f"{job['id']}  {job['state']}{'' if job['created'] else '  (an earlier submission with this idempotency key)'}", flush=True)
        if not args.wait:
            return 0
        done = client.wait(job["id"])
        print(line(done))
        return 0 if done["state"] == "succeeded" else 1
    if args.command == "status":
        for job in [client.job(args.id)] if args.id else client.jobs():
            print(line(job))
        return 0
    if args.command == "cancel":
        print(line(client.cancel(args.id)))
        return 0
    client.logs(args.id, args.follow)
    return 0


def _schedules(args) -> int:
    from thresher.services.client import Client, schedule_line

    client = Client(args.url, args.token)
    if args.action == "list":
        for s in client.schedules():
            print(schedule_line(s))
    elif args.action == "add":
        print(schedule_line(client.add_schedule(args.name, args.cron, args.timezone, args.spec, args.catch_up, args.paused)))
    elif args.action in ("pause", "resume"):
        print(schedule_line(client.pause_schedule(args.name, args.action == "pause")))
    else:
        client.delete_schedule(args.name)
        print(f"deleted schedule {args.name}")
    return 0


def _gc(work: Path, spec_paths: list[str], dry_run: bool) -> int:
    """Keep the phases the given specs (or the last job's manifest in status.json) point to."""
    import json

    from thresher.pipeline.errors import InputError
    from thresher.pipeline.plan import gc
    from thresher.pipeline.runner import job_phase_dirs

    if not work.is_dir():
        raise InputError(f"{work}: no such work directory")
    if spec_paths:
        keep = {name for p in spec_paths for name in job_phase_dirs(load_spec(p))}
    else:
        status = work / "status.json"
        if not status.exists():
            raise InputError(f"{work}: no status.json (no job has run there); name the specs whose phases to keep")
        keep = {f"{name}-{p['key']}" for name, p in json.loads(status.read_text())["phases"].items() if p.get("key")}
    removed = gc(work, keep, dry_run)
    verb = "would remove" if dry_run else "removed"
    for d in removed:
        print(f"{verb} {d}")
    print(f"{verb} {len(removed)} phase directories, kept {len(keep)}")
    return 0


def summary(spec: JobSpec, manifest: dict) -> str:
    c = manifest["counts"]
    lines = [
        f"selection written to {Path(spec.output.path).resolve()}",
        f"  shards: {len(manifest['shards'])} under data/, plus manifest.json",
        f"  report: {Path(spec.output.path).resolve() / 'report.html'}",
        f"  input {c['input']}  = selected {c['selected_docs']} + not selected {c['not_selected']} + invalid {c['invalid']}",
        f"  copies {c['selected_copies']}, tokens {c['selected_tokens']} ({spec.selection.strategy}, {len(manifest['domains'])} domains)",
        f"  total {manifest['timings']['total']['seconds']:.1f}s; Ray's log: {Path(spec.output.work_path()).resolve() / 'job.log'}",
    ]
    lines += [f"  warning: {w}" for w in manifest.get("warnings", [])]
    return "\n".join(lines)


def spec_reference() -> str:
    """Markdown tables of every field, generated from the pydantic models themselves.

    Nested models are listed under their dotted path, whether required,
    optional (`scorers.dsir`), in a list (`selection.filters.N`) or in a
    mapping (`selection.domains.KEY`); rule thresholds come from the rule
    families' own configs; each selection strategy's own fields get a table.
    """
    import dataclasses
    import types
    import typing

    from pydantic import BaseModel

    from thresher.operators.heuristic_rules import FAMILY_CONFIGS

    from thresher.pipeline.scorers import RulesSpec, ScorersSpec, by_key
    from thresher.pipeline.spec import STRATEGIES, JobSpec, SelectionBase

    out: list[str] = []
    done: set[tuple[str, type]] = set()

    def models_in(ann) -> list[type[BaseModel]]:
        if isinstance(ann, type) and issubclass(ann, BaseModel):
            return [ann]
        return [m for a in typing.get_args(ann) if a is not types.NoneType for m in models_in(a)]

    def suffix(ann) -> str:
        for a in [ann, *typing.get_args(ann)]:
            origin = typing.get_origin(a)
            if origin in (list, dict):
                return ".N" if origin is list else ".KEY"
        return ""

    def heading(title: str) -> None:
        out.append(f"\n**{title}**\n\n| field | default | meaning |\n|---|---|---|")

    def table(model: type[BaseModel], prefix: str, fields: list[str] | None = None, title: str | None = None, strategy: str | None = None) -> None:
        # a strategy's own sections name it: two strategies may put different models at one path (kmq's and skillit's refine)
        if (prefix, model) in done and fields is None:
            return
        done.add((prefix, model))
        nested: list = []
        start = len(out)
        heading(title or (prefix.rstrip(".") + (f" (strategy: {strategy})" if strategy else "")) or "top level")
        for name in fields if fields is not None else model.model_fields:
            f = model.model_fields[name]
            nested += [(m, f"{prefix}{name}{suffix(f.annotation)}.") for m in models_in(f.annotation)]
            if models_in(f.annotation) and (isinstance(f.annotation, type) or typing.get_origin(f.annotation) is typing.Union and types.NoneType not in typing.get_args(f.annotation)):
                continue  # a model or a union of models (not optional): a section of its own, listed below
            default = "required" if f.is_required() else repr(f.get_default(call_default_factory=True))
            out.append(f"| `{prefix}{name}` | `{default}` | {f.description or ''} |")
        if model is ScorersSpec:  # the registered scorers: keys of their own, each an optional section
            for name, scorer in by_key().items():
                out.append(f"| `{prefix}{name}` | `None` | {scorer.description} |")
                nested.append((scorer, f"{prefix}{name}."))
        if len(out) == start + 1:
            out.pop()  # nothing but sections
        for m, p in nested:
            if m is RulesSpec:
                table(m, p)
                for family, cls in FAMILY_CONFIGS.items():
                    heading(f"{p}{family} thresholds")
                    out.extend(f"| `{p}{family}.{c.name}` | `{c.default!r}` | |" for c in dataclasses.fields(cls))
            elif m in STRATEGIES:
                if m is STRATEGIES[0]:
                    strategies(p)
            else:
                table(m, p, strategy=strategy)

    def strategies(prefix: str) -> None:
        common = ["strategy", *SelectionBase.model_fields]
        table(STRATEGIES[0], prefix, common, title="selection (every strategy)")
        for variant in STRATEGIES:
            own = [n for n in variant.model_fields if n not in SelectionBase.model_fields and n != "strategy"]
            own += [n for n in SelectionBase.model_fields if variant.model_fields[n].is_required()]
            if own:
                name = variant.model_fields["strategy"].annotation.__args__[0]
                table(variant, prefix, own, title=f"selection (strategy: {name})", strategy=name)

    table(JobSpec, "")
    return "\n".join(out).strip()


if __name__ == "__main__":
    sys.exit(main())
