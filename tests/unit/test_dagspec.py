"""Daggy DAG specs: validation, parameter expansion, templates, generator output. Pure."""

from __future__ import annotations

import contextlib
import itertools
import random
import time

import orjson
import pytest

from taskd.dagruns import spec as dagspec
from taskd.errors import BadRequest
from taskd.models import RetryPolicy


def job(*argv: str, **more) -> dict:
    return {"command": list(argv), **more}


def by_name(spec: dagspec.DagSpec) -> dict:
    return {t.name: t for t in spec.tasks}


def refused(body) -> list[str]:
    with pytest.raises(BadRequest) as caught:
        dagspec.parse_spec(body)
    assert caught.value.details, caught.value.message
    return caught.value.details


def test_seed_example_expands_to_one_task_per_value():
    spec = dagspec.parse_spec(
        {
            "tag": "mediumtest",
            "parameters": {"JOBNO": ["1", "2"]},
            "tasks": {
                "simple": {
                    "job": job(
                        "/usr/bin/python3", "script.py", "{{JOBNO}}", cores="1", memoryMB="100"
                    )
                }
            },
        }
    )
    assert spec.tag == "mediumtest" and spec.parameters == {"JOBNO": ["1", "2"]}
    assert [t.name for t in spec.tasks] == ["simple_0", "simple_1"]
    first = spec.tasks[0]
    assert first.template == "simple" and first.parents == []
    assert first.job.runner == "local"
    assert first.job.command == ("/usr/bin/python3", "script.py", "1")
    assert first.job.cpus == 1.0 and first.job.memory_mb == 100 and first.job.env == ()
    assert first.retry == RetryPolicy(1, 0.0, 1.0) and first.max_runtime is None
    assert first.extra == {
        "maxRetries": 0,
        "retryIntervalSeconds": 0,
        "job": {"command": ["/usr/bin/python3", "script.py", "1"], "cores": "1",
                "memoryMB": "100", "environment": []},
        "isGenerator": False,
    }  # fmt: skip
    assert spec.tasks[1].job.command[-1] == "2"


def test_cartesian_product_in_declaration_order_and_names():
    spec = dagspec.parse_spec(
        {
            "parameters": {"A": ["a1", "a2"], "B": ["b1", "b2", "b3"], "C": "c", "N": 7},
            "tasks": {
                # mentions B before A: the product still follows the declaration order
                "t": {"job": job("/bin/echo", "{{B}}/{{A}}", environment=["X={{A}}{{A}}"])},
                "one": {"job": job("/bin/echo", "{{C}}", "{{N}}")},
                "plain": {"job": job("/bin/echo", "{{NOPE}}", "{literal}")},
            },
        }
    )
    tasks = by_name(spec)
    combos = list(itertools.product(["a1", "a2"], ["b1", "b2", "b3"]))
    for i, (a, b) in enumerate(combos):
        t = tasks[f"t_{i}"]
        assert t.job.command == ("/bin/echo", f"{b}/{a}")
        assert t.job.env == (("X", a + a),)
        assert t.extra["job"]["environment"] == [f"X={a}{a}"]
    assert tasks["one_0"].job.command == ("/bin/echo", "c", "7")  # one value still gets _0
    assert "one" not in tasks
    assert tasks["plain"].job.command == ("/bin/echo", "{{NOPE}}", "{literal}")
    assert len(spec.tasks) == 8


def test_edges_from_either_side_connect_every_expansion():
    spec = dagspec.parse_spec(
        {
            "parameters": {"A": ["1", "2"], "B": ["x", "y", "z"]},
            "tasks": {
                "parent": {"job": job("/bin/echo", "{{A}}"), "children": ["child"]},
                "child": {"job": job("/bin/echo", "{{B}}"), "parents": ["parent"]},
                "last": {"job": job("/bin/true"), "parents": ["child", "parent"]},
            },
        }
    )
    tasks = by_name(spec)
    parents = [("parent_0", True), ("parent_1", True)]
    for i in range(3):
        assert tasks[f"child_{i}"].parents == parents  # given twice, counted once
    assert tasks["last"].parents == [(f"child_{i}", True) for i in range(3)] + parents
    assert tasks["parent_0"].parents == []


def test_job_fields_retries_and_docker_image():
    spec = dagspec.parse_spec(
        {
            "tasks": {
                "d": {
                    "job": job(
                        "sh",
                        "-c",
                        "echo",
                        image="busybox",
                        cores=0.5,
                        memoryMB=64,
                        timeoutSeconds="2.5",
                    ),
                    "maxRetries": "2",
                    "retryIntervalSeconds": 0.25,
                    "isGenerator": True,
                },
                "e": {"job": job("true", image="registry:5000/img:v1")},
            }
        }
    )
    d, e = spec.tasks
    assert d.job.runner == "docker" and d.job.image == "busybox:latest"
    assert d.job.cpus == 0.5 and d.job.memory_mb == 64 and d.max_runtime == 2.5
    assert d.retry == RetryPolicy(3, 0.25, 1.0) and d.retry.delay(2) == 0.25
    assert d.generator and d.extra["isGenerator"] is True
    assert d.extra["maxRetries"] == 2 and d.extra["job"]["image"] == "busybox"
    assert e.job.image == "registry:5000/img:v1"


def test_every_problem_is_reported_at_once():
    errors = refused(
        {
            "tag": 1,
            "parameters": {"EMPTY": [], "BAD": [None], "{X}": "1"},
            "tasks": {
                "bad name": {"job": job("/bin/true")},
                "a": {
                    "job": job("/bin/true", cores="many", memoryMB=1.5, extra=1),
                    "maxRetries": -1,
                    "isGenerator": "yes",
                    "parents": ["ghost"],
                },
                "b": {"job": {"command": "not a list", "environment": "A=1"}},
                "c": {},
                "d": "not an object",
            },
            "other": True,
        }
    )
    expected = [
        "other is not a known field of a DAG",
        "tag must be a string",
        "parameters.EMPTY must have at least one value",
        "parameters.BAD[0] must be a string or a number",
        "parameter name '{X}'",
        "task name 'bad name'",
        "tasks.a.job.cores must be a number",
        "tasks.a.job.memoryMB must be an integer",
        "tasks.a.job.extra is not a known field of a job",
        "tasks.a.maxRetries must be an integer from 0 to 1000",
        "tasks.a.isGenerator must be true or false",
        "names parent 'ghost'",
        "tasks.b.job.command must be a non-empty array",
        "tasks.b.job.environment must be an array",
        "tasks.c.job is required",
        "tasks.d must be an object",
    ]
    for text in expected:
        assert any(text in e for e in errors), (text, errors)


def test_cycles_are_found_whatever_the_order():
    errors = refused(
        {
            "tasks": {
                "c": {"job": job("/bin/true"), "parents": ["b"]},
                "a": {"job": job("/bin/true"), "children": ["b"]},
                "b": {"job": job("/bin/true"), "children": ["c", "a"]},
            }
        }
    )
    assert errors == ["the tasks depend on each other in a cycle: b -> a -> b"]
    # Listed children first is fine when there is no cycle.
    spec = dagspec.parse_spec(
        {
            "tasks": {
                "z": {"job": job("/bin/true"), "parents": ["y"]},
                "y": {"job": job("/bin/true"), "parents": ["x"]},
                "x": {"job": job("/bin/true")},
            }
        }
    )
    assert by_name(spec)["z"].parents == [("y", True)]


def test_expanded_names_must_not_collide():
    errors = refused(
        {
            "parameters": {"P": ["1", "2"]},
            "tasks": {"a": {"job": job("/bin/echo", "{{P}}")}, "a_1": {"job": job("/bin/true")}},
        }
    )
    assert any("'a_1' comes from both 'a_1' and 'a'" in e for e in errors), errors


def test_expansion_is_bounded():
    values = [str(i) for i in range(500)]
    errors = refused(
        {
            "parameters": {"A": values, "B": values},
            "tasks": {"t": {"job": job("/bin/echo", "{{A}}{{B}}")}},
        }
    )
    assert any("250000 tasks" in e for e in errors), errors


def test_generated_tasks_go_between_the_generator_and_its_children():
    out = orjson.dumps(
        {
            "g": {"job": job("/bin/echo", "{{N}}"), "parents": ["gen"]},
            "h": {"job": job("/bin/true"), "parents": ["g"], "children": ["after"]},
        }
    ).decode()
    templates, edges = dagspec.generated_tasks(
        out, {"N": ["1", "2"]}, "gen", ["after"], {"gen": 1, "after": 2}
    )
    tasks = {t.name: t for t in templates}
    assert list(tasks) == ["g_0", "g_1", "h"]
    assert tasks["g_1"].job.command == ("/bin/echo", "2")
    assert tasks["g_0"].parents == [("gen", True)]
    assert tasks["h"].parents == [("gen", True), ("g_0", True), ("g_1", True)]
    assert edges == [("g_0", "after", True), ("g_1", "after", True), ("h", "after", True)]


@pytest.mark.parametrize(
    ("stdout", "wanted"),
    [
        ("not json", "the output is not JSON"),
        ("[1, 2]", "must be a JSON object of tasks"),
        ('{"gen": {"job": {"command": ["x"]}}}', "'gen' (from 'gen') already exists"),
        ('{"x": {"job": {"command": ["x"]}, "parents": ["elsewhere"]}}', "parent 'elsewhere'"),
        ('{"x": {}}', "output.x.job is required"),
    ],
)
def test_bad_generator_output_is_refused(stdout, wanted):
    with pytest.raises(BadRequest) as caught:
        dagspec.generated_tasks(stdout, {}, "gen", [], {"gen": 1})
    text = " ".join([caught.value.message, *caught.value.details])
    assert wanted in text


def test_generator_output_may_be_empty():
    assert dagspec.generated_tasks("{}\n", {}, "gen", ["after"], {"gen": 1}) == ([], [])


JUNK = [None, True, -1, 1.5, 1e308, float("inf"), "", "x", "{{A}}", [], [None], ["a=b"], {},
        {"a": 1}]  # fmt: skip


def test_junk_anywhere_is_a_bad_request_never_a_crash():
    rng = random.Random(7)
    keys = {
        "top": ["tag", "parameters", "tasks", "junk"],
        "task": ["job", "maxRetries", "retryIntervalSeconds", "parents", "children",
                 "isGenerator", "junk"],
        "job": ["command", "environment", "cores", "memoryMB", "timeoutSeconds", "image"],
    }  # fmt: skip
    for _ in range(2000):
        job_doc = {k: rng.choice(JUNK) for k in rng.sample(keys["job"], rng.randint(0, 6))}
        task = {k: rng.choice(JUNK) for k in rng.sample(keys["task"], rng.randint(0, 7))}
        if rng.random() < 0.7:
            task["job"] = job_doc
        body = {k: rng.choice(JUNK) for k in rng.sample(keys["top"], rng.randint(0, 4))}
        if rng.random() < 0.8:
            body["tasks"] = {rng.choice(["a", "b", "a_0", "bad name"]): task}
        with contextlib.suppress(BadRequest):
            dagspec.parse_spec(body)


def test_ten_thousand_tasks_parse_quickly():
    tasks = {
        f"t{i}": {"job": job("/bin/true", str(i), cores="0.01", memoryMB="1"),
                  "parents": [f"t{i - 1}"] if i else []}
        for i in range(10_000)
    }  # fmt: skip
    body = orjson.loads(orjson.dumps({"tasks": tasks}))
    t0 = time.perf_counter()
    spec = dagspec.parse_spec(body)
    # The benchmark measures the real figure; this only catches a quadratic slip.
    assert time.perf_counter() - t0 < 1.0
    assert len(spec.tasks) == 10_000 and spec.tasks[-1].parents == [("t9998", True)]


def test_the_submitted_document_is_left_as_it_was():
    body = {
        "tasks": {
            "a": {"job": job("/bin/true"), "children": ["b"]},
            "b": {"job": job("/bin/true"), "parents": ["a"]},
            "c": {"job": job("/bin/true"), "parents": ["b", "b"]},
        }
    }
    before = orjson.dumps(body)
    first = [(t.name, t.parents) for t in dagspec.parse_spec(body).tasks]
    assert orjson.dumps(body) == before
    assert [(t.name, t.parents) for t in dagspec.parse_spec(body).tasks] == first
    assert first == [("a", []), ("b", [("a", True)]), ("c", [("b", True)])]


def test_backoff_is_capped_and_never_overflows():
    from taskd.models import MAX_BACKOFF, RetryPolicy

    assert RetryPolicy(1000, 1.0, 3.5).delay(567) == MAX_BACKOFF
    assert RetryPolicy(1000, 0.0, 3.5).delay(567) == 0.0
    assert RetryPolicy(3, 2.0, 2.0).delay(2) == 8.0
