"""Choosing the swarm runner in process definitions: what is accepted, refused and kept."""

from __future__ import annotations

from tests.processes.sundial import H, definition


def image_task(name: str, **more) -> dict:
    return {
        "task_definition_name": name,
        "dependencies": [],
        "executable": {"docker_image_command": {"image": "taskd-test", "tag": "latest",
                                                "command": ["true"], **more}},
        "max_attempts": 1,
        "backoff_base_seconds": 0,
    }  # fmt: skip


async def test_an_unknown_runner_is_refused_with_the_family_envelope(make_client):
    client = await make_client()
    doc = definition("bad", image_task("t", runner="k8s"))
    resp = await client.put("/api/process_definitions/bad", json=doc, headers=H)
    assert resp.status == 400
    body = await resp.json()
    assert "runner must be one of docker, swarm" in str(body)
    doc = definition("bad", image_task("t", constraints="node.labels.gpu==1"))
    resp = await client.put("/api/process_definitions/bad", json=doc, headers=H)
    assert resp.status == 400, await resp.text()


async def test_runner_and_placement_are_kept_with_the_definition(make_client):
    client = await make_client()
    more = {"runner": "docker", "constraints": ["node.labels.gpu==1"],
            "placement_preferences": ["node.labels.zone"]}  # fmt: skip
    doc = definition("kept", image_task("t", **more))
    resp = await client.put("/api/process_definitions/kept", json=doc, headers=H)
    assert resp.status == 200, await resp.text()
    resp = await client.get("/api/process_definitions/kept", headers=H)
    exe = (await resp.json())["task_definitions"][0]["executable"]["docker_image_command"]
    assert {k: exe[k] for k in more} == more
