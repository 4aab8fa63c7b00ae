"""A DAG's size is known before it is expanded, and never under-counted."""

from __future__ import annotations

import pytest

from taskd.dagruns import spec as dagspec
from taskd.dagruns.budget import expanded_size

P = {"A": ["1", "2", "3"], "B": ["x", "y"], "UNUSED": ["u"] * 50}


def task(command: list[str], **rest) -> dict:
    return {"job": {"command": command}, **rest}


@pytest.mark.parametrize(
    "tasks",
    [
        {"a": task(["echo"])},
        {"a": task(["echo", "{{A}}"]), "b": task(["echo", "{{A}}{{B}}"], parents=["a"])},
        {"a": task(["echo", "{{B}}", "{{NOT_A_PARAMETER}}"]), "b": task(["true"], children=["a"])},
        {"a": {"job": {"command": ["sh"], "environment": ["X={{A}}", "Y={{B}}"]}}},
    ],
)
def test_the_count_matches_the_expansion(tasks):
    body = {"parameters": P, "tasks": tasks}
    count, edges = expanded_size(body)
    spec = dagspec.parse_spec(body)
    assert count == len(spec.tasks)
    assert edges >= sum(len(t.parents) for t in spec.tasks)


@pytest.mark.parametrize(
    "body",
    [None, [], {"tasks": []}, {"tasks": {"a": 1}}, {"parameters": 3, "tasks": {"a": {}}},
     {"parameters": {"A": "abc"}, "tasks": {"a": task(["{{A}}"], parents=[1, None])}}],
)  # fmt: skip
def test_malformed_bodies_are_counted_without_failing(body):
    count, edges = expanded_size(body)
    assert count >= 0 and edges >= 0


def test_a_small_body_can_name_a_huge_dag():
    params = {k: [str(i) for i in range(60)] for k in "ABC"}
    body = {"parameters": params, "tasks": {"t": task(["echo", "{{A}}{{B}}{{C}}"])}}
    assert expanded_size(body) == (216_000, 0)
