"""Server-side commands: ``taskd serve``, and the local ``backup``/``token create``.

No logic here beyond reading options; these are the only commands that open the database.
"""

from __future__ import annotations

import dataclasses
import logging
import os
import sqlite3
import sys
from pathlib import Path
from typing import NoReturn

import click

from taskd import log
from taskd.cli.client import record_local_server
from taskd.cli.root import main
from taskd.config import Settings, default_local_user, host_memory_mb, job_user


def configure_logging(fmt: str, level: str) -> None:
    numeric = getattr(logging, level.upper(), logging.INFO)
    log.configure(fmt, level)
    logging.basicConfig(level=max(numeric, logging.WARNING), stream=sys.stderr)


DB_OPTION = click.option(
    "--db", type=click.Path(path_type=Path), default="taskd.db", show_default=True,
    envvar="TASKD_DB", help="The SQLite file that holds all state.",
)  # fmt: skip


@main.command()
@DB_OPTION
@click.option("--host", default="127.0.0.1", show_default=True, envvar="TASKD_HOST")
@click.option("--port", default=7070, show_default=True, type=int, envvar="TASKD_PORT")
@click.option(
    "--admin-token",
    envvar="TASKD_ADMIN_TOKEN",
    help="Admin credential; generated and saved beside the database when absent.",
)
@click.option(
    "--admin-token-file",
    type=click.Path(path_type=Path, dir_okay=False),
    envvar="TASKD_ADMIN_TOKEN_FILE",
    help="Read the admin credential from this file (unlike --admin-token, not shown by ps).",
)
@click.option(
    "--public-url",
    envvar="TASKD_PUBLIC_URL",
    help="The URL jobs use to call taskd back (TASKD_URL), used as given. Default: "
    "127.0.0.1 for local jobs and host-network containers, the network's gateway for "
    "containers on a bridge network.",
)
@click.option(
    "--max-parallel",
    default=16,
    show_default=True,
    type=click.IntRange(1),
    envvar="TASKD_MAX_PARALLEL",
    help="Attempts running at once, at most.",
)
@click.option("--cpus", type=float, envvar="TASKD_CPUS", help="CPUs jobs may reserve [all].")
@click.option(
    "--memory-mb", type=int, envvar="TASKD_MEMORY_MB", help="Memory jobs may reserve [all]."
)
@click.option(
    "--docker-network",
    default="auto",
    show_default=True,
    envvar="TASKD_DOCKER_NETWORK",
    help="Network mode of containers; auto = bridge when the engine has it, else none. On a "
    "bridge network TASKD_URL is the network's gateway (taskd listens there for task callbacks "
    "only); on host it is 127.0.0.1; with none containers cannot call back. Set --public-url "
    "when containers must use another address.",
)
@click.option(
    "--container-runner",
    type=click.Choice(["docker", "swarm"]),
    default="docker",
    show_default=True,
    envvar="TASKD_CONTAINER_RUNNER",
    help="What runs container jobs that name no runner: the local Docker engine, or the Docker "
    "Swarm that engine manages (see docs/scale-out.md).",
)
@click.option(
    "--keep-containers",
    is_flag=True,
    envvar="TASKD_KEEP_CONTAINERS",
    help="Do not remove containers after their output is stored.",
)
@click.option(
    "--kill-grace",
    default=10.0,
    show_default=True,
    type=float,
    envvar="TASKD_KILL_GRACE",
    help="Seconds between the stop signal and a hard kill.",
)
@click.option(
    "--shutdown-grace",
    default=5.0,
    show_default=True,
    type=float,
    envvar="TASKD_SHUTDOWN_GRACE",
    help="On SIGTERM, seconds local processes may finish before they are stopped.",
)
@click.option(
    "--allow-volume",
    multiple=True,
    envvar="TASKD_ALLOW_VOLUMES",
    help="A host path (and what is below it) jobs may mount; repeatable.",
)
@click.option(
    "--local-user",
    envvar="TASKD_LOCAL_USER",
    help="Run local jobs as this user (name or uid) [nobody when taskd runs as root, else "
    "taskd's own user]. Give root to run them as root.",
)
@click.option(
    "--log-head-bytes",
    default=1 << 20,
    show_default=True,
    type=int,
    envvar="TASKD_LOG_HEAD_BYTES",
    help="Output kept from the start of each stream.",
)
@click.option(
    "--log-tail-bytes",
    default=1 << 20,
    show_default=True,
    type=int,
    envvar="TASKD_LOG_TAIL_BYTES",
    help="Output kept from the end of each stream.",
)
@click.option(
    "--log-retention-days",
    default=30.0,
    show_default=True,
    type=float,
    envvar="TASKD_LOG_RETENTION_DAYS",
    help="Captured output older than this goes.",
)
@click.option(
    "--log-retention-runs",
    default=0,
    show_default=True,
    type=int,
    envvar="TASKD_LOG_RETENTION_RUNS",
    help="Keep output of the newest N finished runs of each name (0: no limit).",
)
@click.option(
    "--keep-runs-days",
    default=90.0,
    show_default=True,
    type=click.FloatRange(0),
    envvar="TASKD_KEEP_RUNS_DAYS",
    help="Finished runs (tasks, attempts, history) older than this go (0: no limit).",
)
@click.option(
    "--keep-runs-per-definition",
    default=10_000,
    show_default=True,
    type=click.IntRange(0),
    envvar="TASKD_KEEP_RUNS_PER_DEFINITION",
    help="Keep the newest N finished runs of each name (0: no limit).",
)
@click.option(
    "--retention-interval",
    default=3600.0,
    show_default=True,
    type=click.FloatRange(0.01),
    envvar="TASKD_RETENTION_INTERVAL",
    help="Seconds between passes that delete old output and history.",
)
@click.option(
    "--queue-default-lease",
    default=3600.0,
    show_default=True,
    type=float,
    envvar="TASKD_QUEUE_DEFAULT_LEASE",
    help="Work queue: lease of a task whose max_assign_time is 0 (seconds).",
)
@click.option(
    "--queue-open-registration",
    is_flag=True,
    envvar="TASKD_QUEUE_OPEN_REGISTRATION",
    help="Work queue: let anyone create workers (default: admin only).",
)
@click.option(
    "--daggy-anonymous",
    is_flag=True,
    envvar="TASKD_DAGGY_ANONYMOUS",
    help="DAG runs (Daggy routes): accept callers without credentials, as Daggy does."
    " Loopback binds only: anyone who can reach taskd can then run commands on this host.",
)
@click.option(
    "--max-body-bytes",
    default=10 << 20,
    show_default=True,
    type=int,
    envvar="TASKD_MAX_BODY_BYTES",
    help="Larger request bodies are refused (413).",
)
@click.option(
    "--header-timeout",
    default=10.0,
    show_default=True,
    type=click.FloatRange(0.1),
    envvar="TASKD_HEADER_TIMEOUT",
    help="Seconds a client may take to send a request head (and may stay idle between two).",
)
@click.option(
    "--body-timeout",
    default=30.0,
    show_default=True,
    type=click.FloatRange(0.1),
    envvar="TASKD_BODY_TIMEOUT",
    help="Seconds a client may take to send a request body.",
)
@click.option(
    "--max-connections",
    default=1024,
    show_default=True,
    type=click.IntRange(8),
    envvar="TASKD_MAX_CONNECTIONS",
    help="Open client connections at most (kept below the open-file limit).",
)
@click.option(
    "--max-follows",
    default=256,
    show_default=True,
    type=click.IntRange(1),
    envvar="TASKD_MAX_FOLLOWS",
    help="Log-follow streams open at once, in total.",
)
@click.option(
    "--max-follows-per-credential",
    default=16,
    show_default=True,
    type=click.IntRange(1),
    envvar="TASKD_MAX_FOLLOWS_PER_CREDENTIAL",
    help="Log-follow streams one credential may hold open.",
)
@click.option(
    "--viewer-max-dag-tasks",
    default=10_000,
    show_default=True,
    type=click.IntRange(1),
    envvar="TASKD_VIEWER_MAX_DAG_TASKS",
    help="Tasks a DAG a viewer validates may expand to (admins: 200,000).",
)
@click.option(
    "--idempotency-window",
    default=86400.0,
    show_default=True,
    type=click.FloatRange(60),
    envvar="TASKD_IDEMPOTENCY_WINDOW",
    help="Seconds an Idempotency-Key and its answer are kept.",
)
@click.option(
    "--log-format",
    type=click.Choice(["human", "json"]),
    default="human",
    show_default=True,
    envvar="TASKD_LOG_FORMAT",
)
@click.option("--log-level", default="info", show_default=True, envvar="TASKD_LOG_LEVEL")
@click.option("--smtp-host", envvar="TASKD_SMTP_HOST", help="SMTP server for e-mail notifications.")
@click.option("--smtp-port", default=25, show_default=True, type=int, envvar="TASKD_SMTP_PORT")
@click.option("--smtp-from", default="taskd@localhost", show_default=True, envvar="TASKD_SMTP_FROM")
@click.option("--smtp-user", envvar="TASKD_SMTP_USER")
@click.option("--smtp-password", envvar="TASKD_SMTP_PASSWORD", help="Better given by variable.")
@click.option("--smtp-starttls", is_flag=True, envvar="TASKD_SMTP_STARTTLS")
@click.option(
    "--pagerduty-url", envvar="TASKD_PAGERDUTY_URL",
    help="PagerDuty Events API v2 endpoint [https://events.pagerduty.com/v2/enqueue].",
)  # fmt: skip
@click.option(
    "--secrets-key-file", type=click.Path(path_type=Path), envvar="TASKD_SECRETS_KEY_FILE",
    help="Key that encrypts secrets [<db>.key, made with mode 0600 at first start].",
)  # fmt: skip
def serve(**opts) -> None:
    """Run the server: HTTP API, scheduler, engine and runners, in one process."""
    configure_logging(opts["log_format"], opts["log_level"])
    settings = Settings(
        db=opts["db"], host=opts["host"], port=opts["port"], admin_token=opts["admin_token"],
        public_url=opts["public_url"], max_parallel=opts["max_parallel"],
        cpus=opts["cpus"] or Settings().cpus, memory_mb=opts["memory_mb"] or host_memory_mb(),
        docker_network=opts["docker_network"], docker_keep_containers=opts["keep_containers"],
        container_runner=opts["container_runner"],
        kill_grace=opts["kill_grace"], shutdown_grace=opts["shutdown_grace"],
        allowed_volumes=tuple(opts["allow_volume"]),
        local_user=opts["local_user"] or default_local_user(),
        log_head_bytes=opts["log_head_bytes"], log_tail_bytes=opts["log_tail_bytes"],
        log_retention_days=opts["log_retention_days"],
        log_retention_runs=opts["log_retention_runs"], max_body_bytes=opts["max_body_bytes"],
        keep_runs_days=opts["keep_runs_days"],
        keep_runs_per_definition=opts["keep_runs_per_definition"],
        retention_interval=opts["retention_interval"],
        log_format=opts["log_format"], log_level=opts["log_level"],
        queue_default_lease=opts["queue_default_lease"],
        queue_open_registration=opts["queue_open_registration"],
        daggy_anonymous=opts["daggy_anonymous"],
        header_timeout=opts["header_timeout"], body_timeout=opts["body_timeout"],
        max_connections=opts["max_connections"], max_follows=opts["max_follows"],
        max_follows_per_credential=opts["max_follows_per_credential"],
        viewer_max_dag_tasks=opts["viewer_max_dag_tasks"],
        idempotency_window=opts["idempotency_window"],
        smtp_host=opts["smtp_host"], smtp_port=opts["smtp_port"], smtp_from=opts["smtp_from"],
        smtp_user=opts["smtp_user"], smtp_password=opts["smtp_password"],
        smtp_starttls=opts["smtp_starttls"], pagerduty_url=opts["pagerduty_url"],
        secrets_key_file=opts["secrets_key_file"],
    )  # fmt: skip
    if opts["admin_token_file"] is not None:
        settings = dataclasses.replace(
            settings, admin_token=admin_token_from(opts["admin_token_file"], opts["admin_token"])
        )
    if settings.admin_token and not settings.admin_token.strip():
        raise click.UsageError("the admin token is blank; give a real secret, or none at all")
    if settings.daggy_anonymous and not settings.loopback:
        raise click.UsageError(
            f"refusing --daggy-anonymous on {settings.host}: callers without credentials could "
            "run commands on this host from anywhere. Bind 127.0.0.1, or send the admin token."
        )
    try:
        job_user(settings.local_user)
    except ValueError as exc:
        raise click.UsageError(f"--local-user: {exc}") from None
    if not settings.loopback and not settings.admin_token:
        raise click.UsageError(
            f"refusing to listen on {settings.host} without credentials: anyone who can reach "
            "taskd can run containers as root. Set --admin-token-file (or TASKD_ADMIN_TOKEN), or "
            "bind 127.0.0.1."
        )
    from taskd.app import create_app
    from taskd.errors import TaskdError
    from taskd.http.serving import serve as serve_app
    from taskd.startup import StartupError, prepare
    from taskd.store.db import check_location

    try:
        # Everything that can refuse a start is checked before a file is made or a token shown.
        check_location(settings.db)
        prepared = prepare(settings)
    except StartupError as exc:
        fail(str(exc))
    except TaskdError as exc:
        fail(exc.message)

    def started() -> None:  # once the app has started and listens
        log.get_logger("taskd").info("taskd serving", url=settings.url, db=str(settings.db))
        if not opts["admin_token"]:
            # Lets `taskd trigger ...` in another terminal find this server and its token file.
            record_local_server(settings.url, opts["admin_token_file"] or settings.token_file)

    try:
        serve_app(create_app(settings, lock=prepared.lock), settings, prepared.sockets, started)
    except (TaskdError, OSError) as exc:  # the store refused to open after the checks passed
        fail(getattr(exc, "message", None) or str(exc))
    finally:
        prepared.close()


def fail(message: str) -> NoReturn:
    """One line on stderr and a non-zero exit: no traceback for a refused start."""
    click.echo(f"taskd: {message}", err=True)
    sys.exit(2)


def admin_token_from(path: Path, given: str | None) -> str:
    """The admin token kept in ``path``: one line, readable by its owner only."""
    if given:
        raise click.UsageError("give --admin-token or --admin-token-file, not both")
    try:
        token = path.read_text().strip()
    except OSError as exc:
        raise click.UsageError(f"cannot read the admin token file {path}: {exc}") from None
    if not token:
        raise click.UsageError(f"the admin token file {path} is empty")
    if path.stat().st_mode & 0o077:
        log.get_logger("taskd").warning(
            "the admin token file can be read by other users; chmod 600 it", path=str(path)
        )
    return token


def backup_file(db: Path, dest: Path) -> None:
    """A consistent copy of the (live) database file (``taskd backup --db``)."""
    if not db.exists():
        raise click.ClickException(f"no database at {db}")
    if dest.exists():
        raise click.ClickException(f"{dest} exists; refusing to overwrite it")
    # The copy holds what the database holds (queue secrets among it): its owner's only.
    os.close(os.open(dest, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600))
    src = sqlite3.connect(str(db))
    out = sqlite3.connect(str(dest))
    try:
        src.backup(out)
    finally:
        out.close()
        src.close()


def create_token_in(db: Path, role: str, name: str) -> str:
    """A new token written straight into the database file (``taskd token create --db``)."""
    import asyncio

    from taskd.auth import issue_token
    from taskd.store import Store

    async def run() -> str:
        store = await Store.open(db)
        try:
            return await issue_token(store, role, name)
        finally:
            await store.close()

    return asyncio.run(run())
