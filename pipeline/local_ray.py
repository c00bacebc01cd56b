"""The local Ray a job starts for itself: the GCS, the raylet and its workers, not the processes no job of ours uses.

`ray.init()` without an address starts, beside the GCS and the raylet, the autoscaler monitor, the dashboard's API
server (its minimal form when `include_dashboard=False`) and the log monitor: three more Python processes, each
importing Ray, which on a small machine take about two seconds of the start (bench/RESULTS.md, the demo job's fixed
cost). A job's own local Ray has a fixed size (nothing to autoscale), no dashboard user and no worker logs to forward
(`log_to_driver=False`), so `start` leaves the three out. The raylet's dashboard agent it cannot leave out (the raylet
starts it and waits for its ports), so it starts it in the agent's minimal form, which Ray uses when its dashboard
packages are missing: no metrics exporter, no HTTP server, and no import of those packages in the driver to find out.

The driver then waits for the raylet to register with the GCS, which it does once its agents have started (about
0.65 s here). Ray asks the GCS for the node once, and when it is not there yet sleeps a whole second before asking
again, so every local start paid 1 s for the 0.65: `start` polls the GCS's node table every 20 ms first, and asks
once the node is there (Ray's start 1.58 -> 1.18 s, bench/RESULTS.md).

Ray has no public switch for this: `ray.init` builds its `RayParams` and head `Node` itself. While `ray.init` runs,
`start` sets the two RayParams fields Ray already has for it (`no_monitor`, `include_log_monitor`), skips the
head's API server start, answers Ray's dashboard-packages check with "not for this job" and replaces the node
lookup; where an installed Ray lacks those hooks it starts Ray as `ray.init` alone would and says so. A cluster
from `ray start` keeps all of its processes (the service submits jobs through its Job API there).
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Iterator

import ray

LEFT_OUT = ("autoscaler monitor", "dashboard API server", "log monitor", "full dashboard agent")
NODE_WAIT_S = 30  # Ray's own wait for its raylet (raylet_start_wait_time_s)


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
        from ray._private import services, state, utils
        from ray._private.node import Node
        from ray._private.parameter import RayParams
    except ImportError as e:
        yield f"this Ray has no {e.name}"
        return
    fields = RayParams().__dict__
    missing = [h for h in ("no_monitor", "include_log_monitor") if h not in fields] + [
        h for h in ("__init__", "start_api_server") if h not in vars(Node)
    ] + [h for h in ("get_dashboard_dependency_error",) if not hasattr(utils, h)] + [
        h for h in ("get_node", "_get_gcs_client_options") if not hasattr(services, h)
    ] + [h for h in ("_initialize_global_state", "node_table", "get_node") if not hasattr(state.GlobalState, h)]
    if missing:
        yield f"this Ray's head has no {missing[0]}"
        return
    init, api_server, dashboard_check, get_node = Node.__init__, Node.start_api_server, utils.get_dashboard_dependency_error, services.get_node

    def lean_init(self, ray_params, *args, head: bool = False, **kwargs):
        if head:
            ray_params.no_monitor, ray_params.include_log_monitor = True, False
        init(self, ray_params, *args, head=head, **kwargs)

    Node.__init__ = lean_init
    Node.start_api_server = lambda self, **kwargs: None
    utils.get_dashboard_dependency_error = lambda: "a job's local Ray runs no dashboard"  # the agent starts --minimal
    services.get_node = node_when_registered
    try:
        yield None
    finally:
        Node.__init__, Node.start_api_server, utils.get_dashboard_dependency_error, services.get_node = init, api_server, dashboard_check, get_node


def node_when_registered(gcs_address: str, node_id: str) -> dict:
    """Ray's node lookup (`services.get_node`) asked once the node is alive in the GCS's node table, which is polled
    every 20 ms: Ray's own lookup sleeps a whole second after a miss. After NODE_WAIT_S it asks anyway, for Ray's error."""
    from ray._private import services, state

    gcs = state.GlobalState()
    gcs._initialize_global_state(services._get_gcs_client_options(gcs_address))
    deadline = time.monotonic() + NODE_WAIT_S
    while time.monotonic() < deadline and not any(n["NodeID"] == node_id and n["Alive"] for n in gcs.node_table()):
        time.sleep(0.02)
    return gcs.get_node(node_id)
