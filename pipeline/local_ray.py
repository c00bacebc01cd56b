"""The local Ray a job starts for itself: the GCS, the raylet and its workers, not the processes no job of ours uses.

`ray.init()` without an address starts, beside the GCS and the raylet, the autoscaler monitor, the dashboard's API
server (its minimal form when `include_dashboard=False`) and the log monitor: three more Python processes, each
importing Ray, which on a small machine take about two seconds of the start (bench/RESULTS.md, the demo job's fixed
cost). A job's own local Ray has a fixed size (nothing to autoscale), no dashboard user and no worker logs to forward
(`log_to_driver=False`), so `start` leaves the three out. The raylet's dashboard agent it cannot leave out (the raylet
starts it and waits for its ports), so it starts it in the agent's minimal form, which Ray uses when its dashboard
packages are missing: no metrics exporter, no HTTP server, and no import of those packages in the driver to find out.

Ray has no public switch for this: `ray.init` builds its `RayParams` and head `Node` itself. While `ray.init` runs,
`start` sets the two RayParams fields Ray already has for it (`no_monitor`, `include_log_monitor`), skips the
head's API server start and answers Ray's dashboard-packages check with "not for this job"; where an installed Ray
lacks those hooks it starts Ray as `ray.init` alone would and says so. A cluster from `ray start` keeps all of its
processes (the service submits jobs through its Job API there).
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

import ray

LEFT_OUT = ("autoscaler monitor", "dashboard API server", "log monitor", "full dashboard agent")


def start(num_cpus: int | None, object_store_memory: int | None) -> str | None:
    """Start this process's local Ray; returns None, or why the three processes were started after all."""
    with _lean_head() as why_not:
        ray.init(
            address="local",  # a new Ray for this job: without it ray.init() joins any cluster `ray start` left here
            num_cpus=num_cpus,
            object_store_memory=object_store_memory,
            include_dashboard=False,
            log_to_driver=False,
        )
    return why_not


@contextlib.contextmanager
def _lean_head() -> Iterator[str | None]:
    try:
        from ray._private import utils
        from ray._private.node import Node
        from ray._private.parameter import RayParams
    except ImportError as e:
        yield f"this Ray has no {e.name}"
        return
    fields = RayParams().__dict__
    missing = [h for h in ("no_monitor", "include_log_monitor") if h not in fields] + [
        h for h in ("__init__", "start_api_server") if h not in vars(Node)
    ] + [h for h in ("get_dashboard_dependency_error",) if not hasattr(utils, h)]
    if missing:
        yield f"this Ray's head has no {missing[0]}"
        return
    init, api_server, dashboard_check = Node.__init__, Node.start_api_server, utils.get_dashboard_dependency_error

    def lean_init(self, ray_params, *args, head: bool = False, **kwargs):
        if head:
            ray_params.no_monitor, ray_params.include_log_monitor = True, False
        init(self, ray_params, *args, head=head, **kwargs)

    Node.__init__ = lean_init
    Node.start_api_server = lambda self, **kwargs: None
    utils.get_dashboard_dependency_error = lambda: "a job's local Ray runs no dashboard"  # the agent starts --minimal
    try:
        yield None
    finally:
        Node.__init__, Node.start_api_server, utils.get_dashboard_dependency_error = init, api_server, dashboard_check
