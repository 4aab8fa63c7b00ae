"""DockerRunner against the real engine: what a user of taskd would see of their containers."""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import AsyncIterator

import aiodocker
import pytest
from aiodocker.containers import DockerContainer

from taskd.models import AttemptState, JobSpec
from taskd.runners import docker as docker_runner
from taskd.runners.base import AttemptContext, Started, StartFailed
from tests.dockerutil import CollectingSink

pytestmark = pytest.mark.docker


def make_ctx(
    image: str,
    script: str | None = None,
    *,
    command: tuple[str, ...] | None = None,
    env: dict[str, str] | None = None,
    job_env: dict[str, str] | None = None,
    labels: dict[str, str] | None = None,
    name: str = "",
    cpuset: tuple[int, ...] = (),
    **job: object,
) -> AttemptContext:
    if command is None:
        command = ("sh", "-c", script) if script is not None else ()
    return AttemptContext(
        attempt_uuid=uuid.uuid4().hex,
        run_id=7,
        task_id=11,
        task_name="task",
        number=1,
        job=JobSpec(
            runner="docker",
            image=image,
            command=command,
            env=tuple((job_env or {}).items()),
            **job,
        ),
        env=env or {},
        labels=labels or {},
        name=name,
        cpuset=cpuset,
    )


@pytest.fixture
async def engine() -> AsyncIterator[aiodocker.Docker]:
    """A client of our own, to look at containers independently of the runner."""
    async with aiodocker.Docker() as client:
        yield client


async def inspect(engine: aiodocker.Docker, container_id: str) -> dict:
    return await engine.containers.container(container_id).show()


async def exists(engine: aiodocker.Docker, container_id: str) -> bool:
    try:
        await inspect(engine, container_id)
    except aiodocker.DockerError as exc:
        if exc.status == 404:
            return False
        raise
    return True


async def until(predicate) -> None:
    """Poll ``predicate`` (the engine has no event for what the tests wait on)."""
    async with asyncio.timeout(10):
        while True:
            if await predicate():
                return
            await asyncio.sleep(0.05)


async def run(runner, ctx: AttemptContext):
    started = await runner.start(ctx)
    sink = CollectingSink()
    outcome = await runner.wait(ctx, started, sink)
    return started, outcome, sink


@pytest.mark.parametrize("code", [0, 3])
async def test_output_goes_to_its_stream_and_exit_code_is_exact(runner, test_image, code):
    ctx = make_ctx(test_image, f"echo out; echo err >&2; printf tail; exit {code}")
    _, outcome, sink = await run(runner(), ctx)
    assert outcome.state is AttemptState.EXITED
    assert outcome.exit_code == code
    assert not outcome.oom
    assert sink.stdout == b"out\ntail"
    assert sink.stderr == b"err\n"


async def test_an_unterminated_last_line_is_not_lost(runner, test_image):
    # The engine's follow stream often ends before such a last fragment is written.
    r = runner()
    ctx = make_ctx(test_image, "seq 1 3; printf end; printf fin >&2")
    results = await asyncio.gather(*(run(r, ctx) for _ in range(10)))
    for _, outcome, sink in results:
        assert outcome.exit_code == 0
        assert (sink.stdout, sink.stderr) == (b"1\n2\n3\nend", b"fin")


async def test_env_from_context_and_job_reaches_the_container(runner, test_image):
    ctx = make_ctx(
        test_image,
        command=("env",),
        env={"TASKD_URL": "http://127.0.0.1:7070", "TASKD_RUN_ID": "7", "SHARED": "ctx"},
        job_env={"SHARED": "job", "EXTRA": "a=b c"},  # job.env wins over the context's
    )
    _, outcome, sink = await run(runner(), ctx)
    assert outcome.exit_code == 0
    seen = dict(line.split("=", 1) for line in sink.stdout.decode().splitlines())
    assert seen["TASKD_URL"] == "http://127.0.0.1:7070"
    assert seen["TASKD_RUN_ID"] == "7"
    assert seen["SHARED"] == "job"
    assert seen["EXTRA"] == "a=b c"


async def test_labels_name_and_limits_are_set_on_the_container(runner, test_image, engine):
    r = runner()
    name = f"taskd-test-{uuid.uuid4().hex[:10]}"
    ctx = make_ctx(
        test_image,
        command=("sleep", "30"),
        labels={"team": "data", "taskd.instance": "forged"},
        name=name,
        cpus=0.5,
        memory_mb=64,
    )
    started = await r.start(ctx)
    info = await inspect(engine, started.container_id)
    assert info["Name"] == f"/{name}"
    assert info["State"]["Running"]
    assert info["Config"]["Labels"] == {
        "team": "data",
        "taskd.instance": r.instance,
        "taskd.run": "7",
        "taskd.task": "11",
        "taskd.attempt": ctx.attempt_uuid,
    }
    host = info["HostConfig"]
    assert host["NanoCpus"] == 500_000_000
    assert host["Memory"] == 64 * 2**20
    assert host["MemorySwap"] == 64 * 2**20
    assert host["NetworkMode"] == "none"
    assert started.host == r.settings.hostname

    pinned = make_ctx(test_image, command=("sleep", "30"), cpus=1.0, cpuset=(0,))
    pinned_started = await r.start(pinned)
    host = (await inspect(engine, pinned_started.container_id))["HostConfig"]
    assert host["CpusetCpus"] == "0"
    assert not host["NanoCpus"]
    assert not host["Memory"]


async def test_out_of_memory_is_reported(runner, test_image):
    ctx = make_ctx(
        test_image,
        "x=$(head -c 50000000 /dev/zero | tr '\\0' a); echo survived",
        memory_mb=8,
    )
    _, outcome, sink = await run(runner(), ctx)
    assert outcome.state is AttemptState.EXITED
    assert outcome.exit_code == 137
    assert outcome.oom
    assert outcome.reason == "out of memory (limit 8 MiB)"
    assert b"survived" not in sink.stdout


async def test_kill_stops_a_sleeping_container_within_grace(runner, test_image):
    r = runner()
    # As PID 1 without a handler, sleep ignores SIGTERM: only the kill after grace ends it.
    ctx = make_ctx(test_image, command=("sleep", "60"))
    started = await r.start(ctx)
    waiting = asyncio.create_task(r.wait(ctx, started, CollectingSink()))
    t0 = time.monotonic()
    await r.kill(ctx, started, grace=1)
    outcome = await asyncio.wait_for(waiting, 10)
    assert time.monotonic() - t0 < 5
    assert outcome.exit_code == 137


async def test_kill_lets_a_term_trap_print_before_exit(runner, test_image):
    r = runner()
    ctx = make_ctx(test_image, "trap 'echo got TERM; exit 143' TERM; echo ready; sleep 60 & wait")
    started = await r.start(ctx)
    sink = CollectingSink()
    waiting = asyncio.create_task(r.wait(ctx, started, sink))

    async def ready() -> bool:
        return b"ready" in sink.stdout

    await until(ready)
    await r.kill(ctx, started, grace=5)
    outcome = await asyncio.wait_for(waiting, 10)
    assert outcome.exit_code == 143
    assert sink.stdout == b"ready\ngot TERM\n"
    # killing what has already ended, or is gone, is not an error
    await r.kill(ctx, started, grace=1)
    await r.cleanup(ctx, started)
    await r.kill(ctx, started, grace=1)


async def test_missing_image_fails_start_within_pull_timeout(runner):
    r = runner()
    image = f"taskd-missing-{uuid.uuid4().hex[:8]}:latest"
    ctx = make_ctx(image, command=("true",), pull_timeout=5)
    t0 = time.monotonic()
    with pytest.raises(StartFailed, match=image):
        await r.start(ctx)
    assert time.monotonic() - t0 < 7


async def test_a_hanging_registry_fails_start_at_the_pull_timeout(runner):
    # A registry that accepts connections and never answers.
    accepted: list[asyncio.StreamWriter] = []

    async def hang(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        accepted.append(writer)

    server = await asyncio.start_server(hang, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    try:
        ctx = make_ctx(f"127.0.0.1:{port}/taskd/hangs:1", command=("true",), pull_timeout=2)
        t0 = time.monotonic()
        with pytest.raises(StartFailed, match=f"127.0.0.1:{port}/taskd/hangs:1") as failed:
            await runner().start(ctx)
        assert time.monotonic() - t0 < 4
        if accepted:  # the engine shares our network, so it reached the fake registry
            assert "timed out after 2s" in str(failed.value)
    finally:
        for writer in accepted:
            writer.close()
        server.close()
        await server.wait_closed()


async def test_start_failure_leaves_no_container(runner, test_image, engine):
    r = runner()
    ctx = make_ctx(test_image, command=("/no/such/program",))
    with pytest.raises(StartFailed, match="no/such/program"):
        await r.start(ctx)
    left = await engine.containers.list(
        all=True, filters=f'{{"label": ["taskd.instance={r.instance}"]}}'
    )
    assert left == []


async def test_adopt_running_container_delivers_exactly_the_rest(runner, test_image):
    first = runner()
    script = "for i in $(seq 1 30); do echo out $i; echo err $i >&2; sleep 0.05; done; exit 4"
    ctx = make_ctx(test_image, script)
    started = await first.start(ctx)
    before = CollectingSink()
    waiting = asyncio.create_task(first.wait(ctx, started, before))

    async def some_output() -> bool:
        return b"out 5\n" in before.stdout and b"err 5\n" in before.stderr

    await until(some_output)
    # taskd dies: the watcher goes away, the container keeps running.
    waiting.cancel()
    with pytest.raises(asyncio.CancelledError):
        await waiting
    await first.close()
    skip = {"stdout": len(before.stdout), "stderr": len(before.stderr)}
    assert skip["stdout"] < len(b"".join(b"out %d\n" % i for i in range(1, 31)))

    after = CollectingSink()
    outcome = await runner(instance=first.instance).adopt(ctx, started, after, skip)
    assert outcome.state is AttemptState.EXITED
    assert outcome.exit_code == 4
    assert before.stdout + after.stdout == b"".join(b"out %d\n" % i for i in range(1, 31))
    assert before.stderr + after.stderr == b"".join(b"err %d\n" % i for i in range(1, 31))


async def wait_exited(engine: aiodocker.Docker, container_id: str) -> None:
    async def exited() -> bool:
        return (await inspect(engine, container_id))["State"]["Status"] == "exited"

    await until(exited)


async def test_adopt_exited_container_returns_its_outcome_and_output(runner, test_image, engine):
    r = runner()
    ctx = make_ctx(test_image, "echo hello; echo oops >&2; exit 5")
    started = await r.start(ctx)
    await wait_exited(engine, started.container_id)
    sink = CollectingSink()
    outcome = await r.adopt(ctx, started, sink, {"stdout": 2})
    assert outcome.state is AttemptState.EXITED
    assert outcome.exit_code == 5
    assert sink.stdout == b"llo\n"
    assert sink.stderr == b"oops\n"


async def test_adopt_removed_container_is_lost(runner, test_image, engine):
    r = runner()
    ctx = make_ctx(test_image, command=("sleep", "30"))
    started = await r.start(ctx)
    await engine.containers.container(started.container_id).delete(force=True)
    outcome = await r.adopt(ctx, started, CollectingSink(), {})
    assert outcome.state is AttemptState.LOST
    assert "gone" in outcome.reason
    # nothing to find by label either
    outcome = await r.adopt(ctx, Started(), CollectingSink(), {})
    assert outcome.state is AttemptState.LOST


async def test_adopt_by_label_when_the_id_was_never_recorded(runner, test_image, engine):
    r = runner()
    ctx = make_ctx(test_image, "sleep 0.3; echo done; exit 2")
    started = await r.start(ctx)
    sink = CollectingSink()
    outcome = await r.adopt(ctx, Started(container_id=None), sink, {})
    assert outcome.state is AttemptState.EXITED
    assert outcome.exit_code == 2
    assert sink.stdout == b"done\n"
    # the container is found the same way for cleanup
    await r.cleanup(ctx, Started())
    assert not await exists(engine, started.container_id)


async def test_adopt_of_a_never_started_container_removes_it(runner, test_image, engine):
    r = runner()
    ctx = make_ctx(test_image, command=("true",))
    # taskd died between create and start
    created = await engine.containers.create(
        {
            "Image": test_image,
            "Cmd": ["true"],
            "Labels": {"taskd.instance": r.instance, "taskd.attempt": ctx.attempt_uuid},
        }
    )
    outcome = await r.adopt(ctx, Started(), CollectingSink(), {})
    assert outcome.state is AttemptState.LOST
    assert not await exists(engine, created.id)


async def test_sweep_removes_only_unknown_containers_of_its_instance(runner, test_image, engine):
    mine = runner()
    other = runner()
    known = make_ctx(test_image, command=("sleep", "30"))
    unknown = make_ctx(test_image, command=("sleep", "30"))
    unknown_exited = make_ctx(test_image, command=("true",))
    foreign = make_ctx(test_image, command=("sleep", "30"))
    known_id = (await mine.start(known)).container_id
    unknown_id = (await mine.start(unknown)).container_id
    exited_id = (await mine.start(unknown_exited)).container_id
    foreign_id = (await other.start(foreign)).container_id
    unlabelled: DockerContainer = await engine.containers.create(
        {"Image": test_image, "Cmd": ["sleep", "30"]}
    )
    try:
        await wait_exited(engine, exited_id)
        removed = await mine.sweep(mine.instance, {known.attempt_uuid})
        assert sorted(removed) == sorted([unknown_id, exited_id])
        assert not await exists(engine, unknown_id)
        assert not await exists(engine, exited_id)
        assert await exists(engine, known_id)
        assert await exists(engine, foreign_id)
        assert await exists(engine, unlabelled.id)
        assert await mine.sweep(mine.instance, {known.attempt_uuid}) == []
    finally:
        await unlabelled.delete(force=True)


async def test_cleanup_removes_the_container_unless_kept(runner, test_image, engine):
    r = runner()
    ctx = make_ctx(test_image, command=("true",))
    started, outcome, _ = await run(r, ctx)
    assert outcome.exit_code == 0
    await r.cleanup(ctx, started)
    assert not await exists(engine, started.container_id)
    await r.cleanup(ctx, started)  # already gone: fine

    keeper = runner(docker_keep_containers=True)
    started, _, _ = await run(keeper, ctx)
    await keeper.cleanup(ctx, started)
    assert await exists(engine, started.container_id)


async def test_big_output_arrives_whole_and_exact(runner, test_image):
    # Long lines (the engine cuts them into pieces) as well as many short ones.
    ctx = make_ctx(test_image, "seq -s ' ' 1 600000; seq 1 100000 >&2; printf end")
    _, outcome, sink = await run(runner(), ctx)
    assert outcome.exit_code == 0
    assert len(sink.stdout) > 4_000_000
    assert sink.stdout == " ".join(map(str, range(1, 600001))).encode() + b"\nend"
    assert sink.stderr == "".join(f"{i}\n" for i in range(1, 100001)).encode()


async def test_engine_errors_while_waiting_are_retried_then_lost(runner, test_image, monkeypatch):
    # An engine failing in the middle of a wait cannot be produced on demand: inject it.
    monkeypatch.setattr(docker_runner, "RETRY_DELAY", 0.05)
    r = runner()
    real_request = r._request
    failures = {"left": 2}

    def flaky_request(path, method="GET", params=None):
        if path.endswith("/wait") and failures["left"] > 0:
            failures["left"] -= 1
            raise aiodocker.DockerError(500, "engine hiccup")
        return real_request(path, method, params)

    monkeypatch.setattr(r, "_request", flaky_request)
    ctx = make_ctx(test_image, "echo fine; exit 1")
    _, outcome, sink = await run(r, ctx)
    assert outcome.state is AttemptState.EXITED
    assert outcome.exit_code == 1
    assert sink.stdout == b"fine\n"

    failures["left"] = 100
    _, outcome, _ = await run(r, make_ctx(test_image, command=("true",)))
    assert outcome.state is AttemptState.LOST
    assert "engine hiccup" in outcome.reason
