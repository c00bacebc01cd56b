import os

import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TQDM_DISABLE", "1")


@pytest.fixture(scope="session")
def local_ray():
    """One real local Ray for the whole session (starting Ray costs seconds)."""
    import ray

    ray.init(address="local", num_cpus=2, include_dashboard=False, log_to_driver=False, object_store_memory=1024 * 2**20)  # never a cluster `ray start` left here
    yield ray
    ray.shutdown()


@pytest.fixture(scope="session")
def ray_cluster(tmp_path_factory):
    """A real two-node Ray cluster on loopback (tests/integration/cluster.py), started once: tests compare its task
    counts before and after what they run."""
    from tests.integration.cluster import start

    cluster = start(tmp_path_factory.mktemp("ray-cluster"), workers=1, cpus=2)
    yield cluster
    cluster.stop()
