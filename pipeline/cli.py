"""`thresher` command line: run a job, make the demo corpus, print the spec reference."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from .spec import JobSpec, SpecError, load_spec


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="thresher", description="Curate LLM pretraining corpora on Ray Data.")
    sub = parser.add_subparsers(dest="command", required=True)
    run_p = sub.add_parser("run", help="run a selection job from a YAML/JSON spec")
    run_p.add_argument("spec", help="path to the job spec")
    run_p.add_argument("--no-progress", action="store_true", help="hide Ray Data progress bars")
    demo_p = sub.add_parser("demo-corpus", help="write the bundled deterministic demo corpus")
    demo_p.add_argument("path", help="output file (.parquet or .jsonl)")
    demo_p.add_argument("--docs", type=int, default=4000)
    demo_p.add_argument("--seed", type=int, default=0)
    sub.add_parser("spec-reference", help="print every spec field with its default as Markdown")
    args = parser.parse_args(argv)
    try:
        if args.command == "run":
            return _run(args.spec, progress=not args.no_progress)
        if args.command == "demo-corpus":
            from .demo_corpus import write

            fmt = "jsonl" if args.path.endswith((".jsonl", ".json")) else "parquet"
            path = write(args.path, n_docs=args.docs, seed=args.seed, fmt=fmt)
            print(f"wrote {args.docs} documents to {path}")
            return 0
        print(spec_reference())
        return 0
    except SpecError as e:
        print(f"thresher: invalid spec: {e}", file=sys.stderr)
        return 2
    except (ValueError, RuntimeError, OSError) as e:
        print(f"thresher: {type(e).__name__}: {e}", file=sys.stderr)
        return 1


def _run(spec_path: str, progress: bool) -> int:
    spec = load_spec(spec_path)  # refuses a bad spec before Ray starts
    from .runner import run

    manifest = run(spec, log=lambda m: print(m, file=sys.stderr), progress=progress)
    print(summary(spec, manifest))
    return 0


def summary(spec: JobSpec, manifest: dict) -> str:
    c = manifest["counts"]
    lines = [
        f"selection written to {Path(spec.output.path).resolve()}",
        f"  shards: {len(manifest['shards'])} under data/, plus manifest.json",
        f"  input {c['input']}  = selected {c['selected_docs']} + not selected {c['not_selected']} + invalid {c['invalid']}",
        f"  copies {c['selected_copies']}, tokens {c['selected_tokens']} ({spec.selection.strategy}, {len(manifest['domains'])} domains)",
        f"  total {manifest['timings']['total']['seconds']:.1f}s",
    ]
    return "\n".join(lines)


def spec_reference() -> str:
    """Markdown tables of every field, generated from the pydantic models themselves."""
    from pydantic import BaseModel

    out = []

    def table(model: type[BaseModel], prefix: str) -> None:
        rows, nested = [], []
        for name, f in model.model_fields.items():
            ann = f.annotation
            if isinstance(ann, type) and issubclass(ann, BaseModel):
                nested.append((ann, f"{prefix}{name}."))
                continue
            default = "required" if f.is_required() else repr(f.get_default(call_default_factory=True))
            rows.append(f"| `{prefix}{name}` | `{default}` | {f.description or ''} |")
        if rows:
            out.append(f"\n**{prefix.rstrip('.') or 'top level'}**\n\n| field | default | meaning |\n|---|---|---|")
            out.extend(rows)
        for m, p in nested:
            table(m, p)

    table(JobSpec, "")
    return "\n".join(out).strip()


if __name__ == "__main__":
    sys.exit(main())
