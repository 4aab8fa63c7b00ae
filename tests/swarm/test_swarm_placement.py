"""Where swarm jobs go: constraints, capacity from the swarm's nodes, and how jobs choose it."""

from __future__ import annotations

import asyncio
import subprocess
import uuid

import pytest

from taskd.config import Settings
from taskd.http.keys import SERVICES
from taskd.models import AttemptState, JobSpec
from taskd.runners.base import AttemptContext
from taskd.runners.swarm import SwarmRunner
from tests.dagruns.test_dagruns import Api, job
from tests.swarm.conftest import remove_services, services

pytestmark = pytest.mark.swarm


class Sink:
    def __init__(self) -> None:
        self.out: dict[str, bytes] = {"stdout": b"", "stderr": b""}

    def write(self, stream: str, data: bytes) -> None:
        self.out[stream] += data


def context(job: JobSpec) -> AttemptContext:
    return AttemptContext(attempt_uuid=str(uuid.uuid4()), run_id=1, task_id=1, task_name="t",
                          number=1, job=job, env={})  # fmt: skip


@pytest.fixture
async def runner(swarm_ready):
    made = SwarmRunner(Settings(kill_grace=2), f"test-{uuid.uuid4().hex[:12]}")
    await made.open(lambda: None)
    yield made
    await made.close()
    await asyncio.to_thread(remove_services, made.instance)


@pytest.fixture
async def api(make_client, admin_headers, swarm_ready):
    client = await make_client()
    instance = client.app[SERVICES].instance
    yield Api(client, admin_headers)
    await asyncio.to_thread(remove_services, instance)


async def test_constraints_no_node_satisfies_fail_clearly_after_the_timeout(runner, swarm_ready):
    job = JobSpec(runner="swarm", image=swarm_ready, command=("echo", "never"),
                  constraints=("node.labels.gpu==1",), pull_timeout=3)  # fmt: skip
    ctx = context(job)
    started = await runner.start(ctx)
    sink = Sink()
    outcome = await asyncio.wait_for(runner.wait(ctx, started, sink), 30)
    assert outcome.state is AttemptState.START_FAILED
    assert "no swarm node ran the job within 3s" in outcome.reason
    assert "no suitable node" in outcome.reason  # Swarm's own words say why
    assert not await asyncio.to_thread(services, runner.instance)  # not left pending


async def test_resources_and_placement_reach_the_service(runner, swarm_ready):
    job = JobSpec(runner="swarm", image=swarm_ready, command=("sh", "-c", "echo $WHO"),
                  env=(("WHO", "placed"),), cpus=0.25, memory_mb=32,
                  constraints=("node.role==manager",),
                  preferences=("node.labels.zone",))  # fmt: skip
    ctx = context(job)
    started = await runner.start(ctx)
    spec = await runner._query_json(f"services/{started.container_id}")
    template = spec["Spec"]["TaskTemplate"]
    assert template["Resources"]["Limits"] == {"NanoCPUs": 250_000_000, "MemoryBytes": 32 << 20}
    assert template["Resources"]["Reservations"] == template["Resources"]["Limits"]
    assert template["Placement"]["Constraints"] == ["node.role==manager"]
    assert spec["Spec"]["Labels"]["taskd.attempt"] == ctx.attempt_uuid
    sink = Sink()
    outcome = await asyncio.wait_for(runner.wait(ctx, started, sink), 60)
    assert (outcome.state, outcome.exit_code) == (AttemptState.EXITED, 0)
    assert sink.out["stdout"] == b"placed\n"
    await runner.cleanup(ctx, started)
    assert not await asyncio.to_thread(services, runner.instance)


async def test_a_dag_job_chooses_the_swarm_runner(api, swarm_ready):
    dag = {"tasks": {
        "onswarm": {"job": job("sh", "-c", "echo from swarm", image=swarm_ready,
                               runner="swarm", constraints=["node.role==manager"])},
        "here": {"job": job("sh", "-c", "echo from docker", image=swarm_ready)},
    }}  # fmt: skip
    run_id = await api.submit(dag)
    core = api.engine.runs[await api.core_id(run_id)]
    assert {n: t.job.runner for n, t in core.by_name.items()} == {"onswarm": "swarm",
                                                                "here": "docker"}  # fmt: skip
    run = await api.finished(run_id, within=90)
    assert run["taskStates"] == {"onswarm": "COMPLETED", "here": "COMPLETED"}
    assert run["taskAttempts"]["onswarm"][0]["outputLog"] == "from swarm\n"


async def test_bad_runner_choices_are_refused(api, swarm_ready):
    dag = {"tasks": {"x": {"job": job("true", runner="swarm")}}}
    body = await api.call("POST", "/v1/dagrun", dag, status=400)
    assert "runner needs an image" in str(body)
    dag = {"tasks": {"x": {"job": job("true", image=swarm_ready, runner="k8s")}}}
    body = await api.call("POST", "/v1/dagrun", dag, status=400)
    assert "runner must be one of docker, swarm" in str(body)


async def test_capacity_comes_from_the_swarm_nodes(api, swarm_ready):
    huge = {"tasks": {"x": {"job": job("true", image=swarm_ready, runner="swarm",
                                       memoryMB=str(1 << 30))}}}  # fmt: skip
    body = await api.call("POST", "/v1/dagrun", huge, status=400)
    assert "the largest swarm node offers" in str(body)


async def test_capacity_follows_nodes_leaving_and_coming_back(api, swarm_ready):
    node = subprocess.run(["docker", "info", "--format", "{{.Swarm.NodeID}}"],
                          capture_output=True, text=True, timeout=30, check=True).stdout.strip()  # fmt: skip
    small = {"tasks": {"x": {"job": job("true", image=swarm_ready, runner="swarm")}}}

    def availability(value: str) -> None:
        subprocess.run(["docker", "node", "update", "--availability", value, node],
                       capture_output=True, timeout=30, check=True)  # fmt: skip

    async def refused_with(text: str) -> bool:
        for _ in range(100):
            resp = await api.client.post("/v1/dagrun", json=small, headers=api.headers)
            body = await resp.text()
            if (resp.status == 400) == bool(text) and text in body:
                return True
            await asyncio.sleep(0.1)
        return False

    availability("drain")
    try:
        assert await refused_with("the swarm has no ready and active node")
    finally:
        availability("active")
    assert await refused_with("")  # accepted again once the node is back
    run = api.engine.runs
    assert run
    await asyncio.gather(*(r.done.wait() for r in list(run.values())))
