"""Swarm jobs count against the swarm's nodes, local and docker jobs against the host."""

from __future__ import annotations

from taskd.engine.capacity import Pools
from taskd.models import JobSpec
from taskd.runners.swarmnodes import SwarmCapacity


def node(cpus: float, memory_mb: int, state: str = "ready", availability: str = "active"):
    return {
        "Status": {"State": state},
        "Spec": {"Availability": availability},
        "Description": {"Resources": {"NanoCPUs": int(cpus * 1e9), "MemoryBytes": memory_mb << 20}},
    }


def pools() -> tuple[Pools, SwarmCapacity]:
    host = Pools(slots=1, cpus=1, memory_mb=512)
    swarm = SwarmCapacity(slots=4)
    host.pools["swarm"] = swarm
    swarm.update([node(4, 4096), node(2, 2048), node(8, 8192, state="down"),
                  node(8, 8192, availability="drain")])  # fmt: skip
    return host, swarm


def test_only_ready_active_nodes_count_and_the_largest_bounds_a_job():
    host, swarm = pools()
    assert (swarm.cpus, swarm.memory_mb, swarm.nodes) == (6.0, 6144, 2)
    assert host.refusal(JobSpec("swarm", cpus=4, memory_mb=4096)) is None
    assert "largest swarm node offers 4" in host.refusal(JobSpec("swarm", cpus=5))
    assert "largest swarm node offers 4096 MB" in host.refusal(JobSpec("swarm", memory_mb=5000))
    # The same job on the host is measured against the host.
    assert "this host offers 1" in host.refusal(JobSpec("docker", cpus=4))


def test_a_full_host_does_not_hold_swarm_jobs_back():
    host, swarm = pools()
    host.take(JobSpec("local"))
    assert not host.fits(JobSpec("local"))
    assert not host.full  # the swarm still has room
    job = JobSpec("swarm", cpus=2, memory_mb=1024, pin_cores=True)
    assert host.fits(job)
    assert host.take(job) == ()  # no host cores pinned for a swarm job
    assert (swarm.used_cpus, host.used_cpus) == (2, 0)
    host.give(job, ())
    assert swarm.used_cpus == 0


def test_no_usable_node_refuses_with_a_reason():
    swarm = SwarmCapacity(slots=4)
    assert "not been read" in swarm.refusal(JobSpec("swarm"))
    swarm.update([node(2, 1024, availability="drain")])
    assert swarm.refusal(JobSpec("swarm")) == "the swarm has no ready and active node"
