"""Schemathesis over the whole OpenAPI document, against the app served from this process.

The app runs in a thread (its own event loop, a real socket on 127.0.0.1) and Schemathesis
drives it over HTTP: every operation statelessly with the admin credential (and a registered
queue worker's headers) and with no credential at all, then the stateful phase that follows
the document's links (create a definition, then get/trigger/pause it; submit a DAG, then read
and kill it; create a project, then read, lease from and reset it...).

Pass means: no 5xx, every response in its documented schema and status, and every error in
its family's envelope. Jobs the fuzzer submits run on an inert runner that starts nothing (a
fake at the process edge): a fuzzer sending shell scripts and argv to a real runner would run
them on this machine.

The short variant runs with the normal suite; the long one (``-m slow``) with CI's slow run.
The cases run per phase and their time end pytest's summary (``tests/fuzz/conftest.py``);
``FUZZ_OUTCOMES=1`` with ``-s`` also prints how often each operation answered each status in
the stateful phase, to see how deep it got.
"""

from __future__ import annotations

import base64
import collections
import os
import time
from pathlib import Path
from typing import Any

import hypothesis
import orjson
import pytest
import requests
import schemathesis
from hypothesis.errors import Flaky
from schemathesis import GenerationMode
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import use_after_free

from taskd.app import create_app
from taskd.config import Settings
from taskd.http.envelopes import family_of
from taskd.http.openapi import build
from taskd.runners.base import RUNNERS
from tests.fuzz.live import Live, ServerThread, inert

ADMIN = "fuzz-admin-token"
QUICK_EXAMPLES = 10
DEEP_EXAMPLES = 60
CHECKS = [
    "not_a_server_error",
    "status_code_conformance",
    "content_type_conformance",
    "response_schema_conformance",
    "response_headers_conformance",
    "ignored_auth",
    "use_after_free",
    "ensure_resource_availability",
    "unsupported_method",
    "family_envelope",
    "kill_timeout_is_the_only_5xx",
]
# Not run: negative_data_rejection and positive_data_acceptance. taskd is lenient on purpose
# where JSON Schema cannot say so (an empty query value or a null field means "absent"), and
# strict where it cannot either (a definition's name in the body must equal the one in the
# path; a DAG's edges must name its tasks), so they report the document, not the API.


def excluded_for(case) -> list:
    """Built-in checks that do not apply to this operation, and why."""
    if case.path == "/apis/v1/tasks/operations":
        # A KILL whose task has not stopped within opSpec.timeout answers 504 (documented;
        # the kill goes on): kill_timeout_is_the_only_5xx checks this operation instead.
        return [not_a_server_error]
    if case.path.startswith("/v1/"):
        # Daggy's DELETE kills a run or task and keeps it readable (as Daggy does): a read
        # after it is no use after free.
        return [use_after_free]
    return []


# The document, built from the app's router (no server needed for that).
DOC = build(create_app(Settings(db=Path("unused.db"), admin_token=ADMIN)))
COUNTS: collections.Counter[str] = collections.Counter()  # cases run, per phase
OUTCOMES: collections.Counter[str] = collections.Counter()  # "METHOD path status", stateful


LIVE: Live | None = None


@pytest.fixture(scope="module")
def live(tmp_path_factory):
    """The server under fuzz: small capacity, inert runners, a registered queue worker."""
    global LIVE
    settings = Settings(
        db=tmp_path_factory.mktemp("fuzz") / "taskd.db",
        admin_token=ADMIN,
        docker_network="none",
        max_parallel=2,
        kill_grace=0.5,
        shutdown_grace=0.5,
        allowed_volumes=("/",),  # nothing is mounted: the runners are inert
    )
    with pytest.MonkeyPatch.context() as mp:
        mp.setitem(RUNNERS, "local", inert("local"))
        mp.setitem(RUNNERS, "docker", inert("docker"))
        server = ServerThread(create_app(settings))
        server.start()
    try:
        bearer = {"Authorization": f"Bearer {ADMIN}"}
        reply = requests.post(f"{server.url}/worker/create", json={"alias": "fuzz"},
                              headers=bearer, timeout=10).json()  # fmt: skip
        worker = reply["content"]["worker"]
        headers = {**bearer, "X-Worker-ID": str(worker["id"]), "X-Secret": worker["secret"]}
        LIVE = Live(server.url, headers)
        yield LIVE
    finally:
        LIVE = None
        server.stop()
        if os.environ.get("FUZZ_OUTCOMES"):
            for outcome, n in sorted(OUTCOMES.items()):
                print(f"{n:6d} {outcome}")


# -- the envelope check -------------------------------------------------------------------


def envelope_problem(path: str, status: int, body: Any) -> str | None:
    """Why an error body is not in its family's envelope (None when it is)."""
    family = family_of(path)
    if not isinstance(body, dict):
        return f"the body is not a JSON object: {body!r}"
    if family == "drove":
        ok = body.get("status") == "FAILED" and isinstance(body.get("message"), str)
    elif family == "queue":
        ok = body.get("ok") is False and isinstance(body.get("message"), str)
        if status == 429:
            ok = ok and isinstance(body.get("rate_limit_delay"), int | float)
    elif family == "daggy":
        ok = isinstance(body.get("error"), str)
        ok = ok and all(isinstance(e, str) for e in body.get("errors", []))
    else:
        ok = isinstance(body.get("code"), str) and isinstance(body.get("message"), str)
    return None if ok else f"not in the {family} error envelope: {body!r}"


@schemathesis.check
def family_envelope(ctx, response, case) -> bool | None:
    """Every 4xx/5xx is JSON in the envelope of its path's family."""
    if response.status_code < 400:
        return None
    types = {k.lower(): v for k, v in response.headers.items()}.get("content-type", [""])
    if not types[0].startswith("application/json"):
        raise AssertionError(f"{response.status_code} without a JSON body")
    problem = envelope_problem(case.path, response.status_code, orjson.loads(response.content))
    if problem:
        raise AssertionError(problem)
    return True


@schemathesis.check
def kill_timeout_is_the_only_5xx(ctx, response, case) -> bool | None:
    """Drove operations: no 5xx but the documented KILL timeout (504, FAILED envelope)."""
    if case.path != "/apis/v1/tasks/operations" or response.status_code < 500:
        return None
    body = orjson.loads(response.content)
    if response.status_code == 504 and "had not stopped" in body.get("message", ""):
        return True
    raise AssertionError(f"server error {response.status_code}: {body}")


# -- stateless phase ----------------------------------------------------------------------


def schema_for(examples: int, phases: list[str]):
    """The document as Schemathesis sees it, with this run's bounds and checks.

    Phases of the stateless tests: ``examples`` (from the document), ``coverage`` (boundary
    values, missing and wrong-typed fields, undeclared methods and content types) and
    ``fuzzing`` (random valid and invalid data, ``examples`` cases per operation and mode).
    """
    schema = schemathesis.openapi.from_dict(DOC)
    schema.config.generation.update(
        max_examples=examples, modes=[GenerationMode.POSITIVE, GenerationMode.NEGATIVE]
    )
    schema.config.phases.update(phases=phases)
    schema.config.checks.update(included_check_names=CHECKS)
    return schema


def same_definition_name(context, case):
    """A PUT names its definition twice (path and body); random names never agree."""
    if (
        case.operation.path == "/api/process_definitions/{name}"
        and case.method == "PUT"
        and isinstance(case.body, dict)
        and "process_definition_name" in case.body
        and isinstance((case.path_parameters or {}).get("name"), str)
    ):
        case.body["process_definition_name"] = case.path_parameters["name"]
    return case


QUICK = schema_for(QUICK_EXAMPLES, ["examples", "fuzzing"])
DEEP = schema_for(DEEP_EXAMPLES, ["examples", "coverage", "fuzzing", "stateful"])
for _schema in (QUICK, DEEP):
    _schema.hook("map_case")(same_definition_name)
# No example database: the server's state differs from run to run, so replaying a stored
# example would not draw the same data (Hypothesis then reports a flaky strategy).
NO_DEADLINE = hypothesis.settings(
    deadline=None, database=None, suppress_health_check=list(hypothesis.HealthCheck)
)


def call(case, live: Live, credentials: bool, phase: str) -> None:
    headers = live.admin if credentials else {}
    COUNTS[phase] += 1
    case.call_and_validate(
        base_url=live.url, headers=headers, excluded_checks=excluded_for(case), timeout=30
    )


@QUICK.parametrize()
@NO_DEADLINE
def test_quick_admin(case, live):
    call(case, live, True, "quick admin")


@QUICK.parametrize()
@NO_DEADLINE
def test_quick_anonymous(case, live):
    call(case, live, False, "quick anonymous")


@pytest.mark.slow
@DEEP.parametrize()
@NO_DEADLINE
def test_deep_admin(case, live):
    call(case, live, True, "deep admin")


@pytest.mark.slow
@DEEP.parametrize()
@NO_DEADLINE
def test_deep_anonymous(case, live):
    call(case, live, False, "deep anonymous")


# -- stateful phase -----------------------------------------------------------------------


STATEFUL_KIND = "quick"  # which stateful test is running, for the counts
FIRST_FAILURES: list[str] = []


class Workflow(DEEP.as_state_machine()):
    """Sequences of linked calls, all with the admin credential (and the worker's headers)."""

    def get_call_kwargs(self, case) -> dict[str, Any]:
        assert LIVE is not None
        return {"base_url": LIVE.url, "headers": LIVE.admin, "timeout": 30}

    def after_call(self, response, case) -> None:
        super().after_call(response, case)
        if case.path == "/project/request_access" and response.status_code == 200:
            # The admin accepts every request at once, so the worker can go on to submit.
            assert LIVE is not None
            project, worker = case.body["project"], LIVE.admin["X-Worker-ID"]
            url = f"{LIVE.url}/project/accept_request/{project}/{worker}"
            requests.post(url, headers=LIVE.admin, timeout=10).raise_for_status()
        COUNTS[f"stateful {STATEFUL_KIND}"] += 1
        OUTCOMES[f"{case.method} {case.path} {response.status_code}"] += 1

    def validate_response(self, response, case, additional_checks=None, **kwargs) -> None:
        try:
            case.validate_response(
                response,
                additional_checks=additional_checks,
                excluded_checks=excluded_for(case),
                transport_kwargs=kwargs or None,
                recorder=self.recorder,
            )
        except Exception as exc:
            # Hypothesis replays a failing sequence to report it; against a live server
            # that replay may go differently, so keep the first failure as it happened.
            FIRST_FAILURES.append(f"{case.method} {case.formatted_path}: {exc}")
            raise


# Generation only: a failing sequence cannot be replayed (let alone shrunk) against a server
# whose state has moved on, so the first failure is reported as it happened.
STATEFUL = hypothesis.settings(NO_DEADLINE, phases=[hypothesis.Phase.generate])


def run_workflow(kind: str, examples: int, steps: int, budget: float) -> None:
    """Run the state machine until ``examples`` scenarios ran or ``budget`` seconds passed.

    A run can end early with Hypothesis's ``Flaky``: it replays choices to explore further,
    and against a live server the replay may draw differently (a link's target exists only
    if an earlier call succeeded). That is no failure of the API, so a fresh run goes on;
    a failed check is kept as it first happened and reported.
    """
    global STATEFUL_KIND
    STATEFUL_KIND = kind
    FIRST_FAILURES.clear()
    settings = hypothesis.settings(STATEFUL, max_examples=examples, stateful_step_count=steps)
    started = time.monotonic()
    while True:
        before = COUNTS[f"stateful {kind}"]
        try:
            Workflow.run(settings=settings)
            return
        except Flaky:
            if FIRST_FAILURES:
                raise AssertionError("stateful failure:\n" + FIRST_FAILURES[0]) from None
            COUNTS[f"stateful {kind} restarts"] += 1
        except BaseException:
            if FIRST_FAILURES:
                print("first stateful failure:\n" + FIRST_FAILURES[0])
            raise
        ran = COUNTS[f"stateful {kind}"] - before
        if time.monotonic() - started > budget or ran >= examples * steps:
            return


def test_stateful_quick(live):
    run_workflow("quick", 10, 6, budget=20)


@pytest.mark.slow
@pytest.mark.timeout(300)
def test_stateful_deep(live):
    run_workflow("deep", 100, 10, budget=120)


def test_basic_auth_is_admin(live):
    """Drove clients send HTTP Basic admin:<token>; the fuzzer's admin runs use Bearer."""
    basic = base64.b64encode(f"admin:{ADMIN}".encode()).decode()
    reply = requests.get(f"{live.url}/apis/v1/tasks", headers={"Authorization": f"Basic {basic}"},
                         timeout=10)  # fmt: skip
    assert reply.status_code == 200, reply.text
