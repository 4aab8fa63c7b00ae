"""The ``taskd`` command: serve, backup, tokens. No logic here beyond reading options."""

from __future__ import annotations

import logging
import sqlite3
import sys
from pathlib import Path
from typing import NoReturn

import click
import structlog

from taskd import __version__
from taskd.config import Settings, default_local_user, host_memory_mb, job_user


def configure_logging(fmt: str, level: str) -> None:
    numeric = getattr(logging, level.upper(), logging.INFO)
    renderer = (
        structlog.processors.JSONRenderer()
        if fmt == "json"
        else structlog.dev.ConsoleRenderer(colors=False)
    )
    structlog.configure(
        processors=[
            structlog.contextvars.merge_contextvars,
            structlog.processors.add_log_level,
            structlog.processors.TimeStamper(fmt="iso", utc=True),
            structlog.processors.format_exc_info,
            renderer,
        ],
        wrapper_class=structlog.make_filtering_bound_logger(numeric),
        logger_factory=structlog.PrintLoggerFactory(file=sys.stderr),
        cache_logger_on_first_use=True,
    )
    logging.basicConfig(level=max(numeric, logging.WARNING), stream=sys.stderr)


@click.group()
@click.version_option(__version__, prog_name="taskd")
def main() -> None:
    """taskd: a self-hosted job scheduler for small teams."""


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
        smtp_host=opts["smtp_host"], smtp_port=opts["smtp_port"], smtp_from=opts["smtp_from"],
        smtp_user=opts["smtp_user"], smtp_password=opts["smtp_password"],
        smtp_starttls=opts["smtp_starttls"], pagerduty_url=opts["pagerduty_url"],
        secrets_key_file=opts["secrets_key_file"],
    )  # fmt: skip
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
            "taskd can run containers as root. Set --admin-token (or TASKD_ADMIN_TOKEN), or "
            "bind 127.0.0.1."
        )
    from aiohttp import web

    from taskd.api import create_app
    from taskd.errors import TaskdError
    from taskd.startup import StartupError, prepare

    try:
        # Everything that can refuse a start is checked before a file is made or a token shown.
        prepared = prepare(settings)
    except StartupError as exc:
        fail(str(exc))

    def started(_: str) -> None:  # aiohttp calls this once the app has started and listens
        structlog.get_logger("taskd").info("taskd serving", url=settings.url, db=str(settings.db))

    try:
        web.run_app(
            create_app(settings, lock=prepared.lock), sock=prepared.sockets, print=started,
            access_log=None, shutdown_timeout=2.0,
        )  # fmt: skip
    except (TaskdError, OSError) as exc:  # the store refused to open after the checks passed
        fail(getattr(exc, "message", None) or str(exc))
    finally:
        prepared.close()


def fail(message: str) -> NoReturn:
    """One line on stderr and a non-zero exit: no traceback for a refused start."""
    click.echo(f"taskd: {message}", err=True)
    sys.exit(2)


@main.command()
@DB_OPTION
@click.argument("dest", type=click.Path(path_type=Path))
def backup(db: Path, dest: Path) -> None:
    """Write a consistent copy of the (live) database to DEST."""
    if not db.exists():
        raise click.ClickException(f"no database at {db}")
    if dest.exists():
        raise click.ClickException(f"{dest} exists; refusing to overwrite it")
    src = sqlite3.connect(str(db))
    out = sqlite3.connect(str(dest))
    try:
        src.backup(out)
    finally:
        out.close()
        src.close()
    click.echo(f"backed up {db} to {dest}")


@main.group()
def token() -> None:
    """Issue API tokens."""


@token.command("create")
@DB_OPTION
@click.option("--role", type=click.Choice(["viewer", "admin"]), default="viewer", show_default=True)
@click.option("--name", required=True, help="Who or what the token is for.")
def token_create(db: Path, role: str, name: str) -> None:
    """Create a token (printed once; only its hash is stored)."""
    import asyncio

    from taskd.auth import issue_token
    from taskd.store import Store

    async def run() -> str:
        store = await Store.open(db)
        try:
            return await issue_token(store, role, name)
        finally:
            await store.close()

    click.echo(asyncio.run(run()))


from taskd.ops.commands import doctor, restore  # noqa: E402 (day-2 commands, own module)

main.add_command(doctor)
main.add_command(restore)

if __name__ == "__main__":
    main()
