"""A job's own local Ray starts the GCS, the raylet and its workers, not the monitor, API server or log monitor, and
the raylet's dashboard agent in its minimal form."""

import json
import os
import subprocess
import sys

PROBE = """
import json, psutil, ray
from thresher.pipeline import local_ray
why_not = local_ray.start(2, 256 * 2**20)
ran = ray.get(ray.remote(lambda: 1).remote())
commands = [" ".join(p.cmdline()) for p in psutil.Process().children(recursive=True)]
ray.shutdown()
print(json.dumps({"why_not": why_not, "ran": ran, "commands": commands}))
"""


def test_a_local_ray_starts_without_monitor_api_server_or_log_monitor():
    done = subprocess.run([sys.executable, "-c", PROBE], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    got = json.loads(done.stdout.strip().splitlines()[-1])
    assert got["why_not"] is None and got["ran"] == 1
    commands = got["commands"]
    assert any("raylet" in c for c in commands) and any("gcs_server" in c for c in commands), commands
    for left_out in ("autoscaler/_private/monitor.py", "dashboard/dashboard.py", "log_monitor.py"):
        assert not any(left_out in c for c in commands), (left_out, commands)
    agents = [c for c in commands if "dashboard/agent.py" in c]
    assert agents and all("--minimal" in c for c in agents), commands


def test_the_hooks_are_put_back_after_the_start():
    code = "from thresher.pipeline import local_ray; from ray._private.node import Node; from ray._private import services, utils; import ray\n" \
           "b = (Node.__init__, Node.start_api_server, utils.get_dashboard_dependency_error, services.get_node); local_ray.start(1, None); ray.shutdown()\n" \
           "print((Node.__init__, Node.start_api_server, utils.get_dashboard_dependency_error, services.get_node) == b)"
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0 and done.stdout.strip().splitlines()[-1] == "True", done.stderr


NODE_LOOKUP = """
import json, time, ray
from thresher.pipeline import local_ray
local_ray.start(1, None)
ctx = ray.get_runtime_context()
gcs, node = ctx.gcs_address, ctx.get_node_id()
found = local_ray.node_when_registered(gcs, node)
local_ray.NODE_WAIT_S = 0.2
t = time.monotonic()
try:
    local_ray.node_when_registered(gcs, "ab" * 28)
    error = None
except Exception as e:
    error = type(e).__name__
waited = time.monotonic() - t
ray.shutdown()
print(json.dumps({"same": found["node_id"] == node, "error": error, "waited": waited}))
"""


def test_the_node_lookup_answers_for_a_registered_node_and_gives_rays_error_for_another():
    env = {**os.environ, "RAY_raylet_start_wait_time_s": "2"}  # Ray's own lookup of an unknown node gives up after this
    done = subprocess.run([sys.executable, "-c", NODE_LOOKUP], capture_output=True, text=True, timeout=120, env=env)
    assert done.returncode == 0, done.stderr
    got = json.loads(done.stdout.strip().splitlines()[-1])
    assert got["same"] and got["error"] is not None and got["waited"] >= 0.2, got  # polled until NODE_WAIT_S, then Ray's own lookup failed
