"""The ``doctor`` and ``restore`` commands (added to ``taskd`` by the CLI)."""

from __future__ import annotations

import asyncio
from pathlib import Path

import click

DB = click.option(
    "--db",
    type=click.Path(path_type=Path),
    default="taskd.db",
    show_default=True,
    envvar="TASKD_DB",
    help="The SQLite file that holds all state.",
)


@click.command()
@DB
@click.option(
    "--url",
    envvar="TASKD_URL",
    help="taskd's URL as containers see it [the network's gateway and --port].",
)
@click.option("--port", default=7070, show_default=True, type=int, envvar="TASKD_PORT")
@click.option(
    "--image",
    default="busybox:latest",
    show_default=True,
    help="Image of the callback test container (needs wget).",
)
@click.option(
    "--docker-network", default="bridge", show_default=True, envvar="TASKD_DOCKER_NETWORK"
)
@click.option(
    "--min-free-mb",
    default=1024,
    show_default=True,
    type=click.IntRange(1),
    help="Warn when less disk is free (fail below a tenth of it).",
)
def doctor(
    db: Path, url: str | None, port: int, image: str, docker_network: str, min_free_mb: int
) -> None:
    """Check the database, disk, Docker, container callbacks, clock and file modes."""
    from taskd.ops.doctor import FAIL, Options, run_checks

    opts = Options(
        db=db, url=url, port=port, image=image, network=docker_network, min_free_mb=min_free_mb
    )
    checks = asyncio.run(run_checks(opts))
    for c in checks:
        click.echo(c.line())
    if any(c.status == FAIL for c in checks):
        raise SystemExit(1)


@click.command()
@DB
@click.argument("backup", type=click.Path(path_type=Path))
@click.option("--force", is_flag=True, help="Replace an existing database (kept beside it).")
def restore(db: Path, backup: Path, force: bool) -> None:
    """Replace the database with BACKUP (integrity-checked; never while taskd runs on it)."""
    from taskd.ops.restore import RestoreError, check
    from taskd.ops.restore import restore as do_restore

    try:
        kept = do_restore(backup, db, force=force)
        version = check(db)
    except RestoreError as exc:
        raise click.ClickException(str(exc)) from None
    click.echo(f"restored {backup} to {db} (schema {version}, integrity ok)")
    if kept is not None:
        click.echo(f"the replaced database is kept as {kept}")
    key = db.with_name(db.name + ".key")
    if not key.exists():
        click.echo(f"note: secrets need the key the backup was made with; put it at {key}")
