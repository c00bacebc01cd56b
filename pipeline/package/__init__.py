"""thresher's public Python API (this directory is installed as the `thresher` package itself).

    from thresher import JobSpec, load_spec, run
    manifest = run(load_spec("job.yaml"), on_event=print)

`run` returns the manifest; errors a user can fix are `ThresherError`s
(`SpecError`, `InputError`, `JobError`) with a one-line message. Names are
imported on first use, so `import thresher.operators.x` does not pull in Ray.
"""

from importlib import import_module

_EXPORTS = {
    "JobSpec": "thresher.pipeline.spec",
    "load_spec": "thresher.pipeline.spec",
    "parse_spec": "thresher.pipeline.spec",
    "run": "thresher.pipeline.runner",
    "ThresherError": "thresher.pipeline.errors",
    "SpecError": "thresher.pipeline.errors",
    "InputError": "thresher.pipeline.errors",
    "JobError": "thresher.pipeline.errors",
}
__all__ = sorted(_EXPORTS)


def __getattr__(name: str):
    if name not in _EXPORTS:
        raise AttributeError(f"module 'thresher' has no attribute {name!r}")
    return getattr(import_module(_EXPORTS[name]), name)
