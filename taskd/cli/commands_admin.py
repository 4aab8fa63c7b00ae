"""Connection contexts, API tokens, backup, version and shell completion."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any
from urllib.parse import quote

import click

from taskd import __version__
from taskd.cli.client import Client, CliError, contexts_file, load_contexts, run, write_private
from taskd.cli.output import emit, when
from taskd.cli.root import main, output_option


@main.group("context")
def context() -> None:
    """Named servers (URL and token), kept in the user's config dir (mode 0600)."""


@context.command("add")
@click.argument("name")
@click.option("--url", "ctx_url", required=True, help="The server's URL.")
@click.option("--token", "ctx_token", help="An API token for it.")
@click.option("--use", "use_it", is_flag=True, help="Make it the current context.")
def context_add(name: str, ctx_url: str, ctx_token: str | None, use_it: bool) -> None:
    """Save (or replace) a context."""
    if not ctx_url.startswith(("http://", "https://")):
        raise CliError(f"--url must start with http:// or https://, got {ctx_url!r}")
    data = load_contexts()
    data["contexts"][name] = {"url": ctx_url.rstrip("/"), "token": ctx_token}
    if use_it or data["current"] is None:
        data["current"] = name
    write_private(contexts_file(), data)
    click.echo(f"saved context {name}" + (" (current)" if data["current"] == name else ""))


@context.command("use")
@click.argument("name")
def context_use(name: str) -> None:
    """Make a context the current one."""
    data = load_contexts()
    if name not in data["contexts"]:
        raise CliError(f"no context named {name!r} (see: taskd context list)")
    data["current"] = name
    write_private(contexts_file(), data)
    click.echo(f"using context {name}")


@context.command("list")
@output_option
def context_list(output: str) -> None:
    """Saved contexts (tokens are not shown)."""
    data = load_contexts()
    rows = [
        {"name": n, "url": c["url"], "token": bool(c.get("token")), "current": n == data["current"]}
        for n, c in sorted(data["contexts"].items())
    ]
    emit(rows, output, ["NAME", "URL", "TOKEN", "CURRENT"],
         lambda r: [r["name"], r["url"], "set" if r["token"] else "-",
                    "*" if r["current"] else ""])  # fmt: skip


@context.command("remove")
@click.argument("name")
def context_remove(name: str) -> None:
    """Forget a context."""
    data = load_contexts()
    if data["contexts"].pop(name, None) is None:
        raise CliError(f"no context named {name!r}")
    if data["current"] == name:
        data["current"] = None
    write_private(contexts_file(), data)
    click.echo(f"removed context {name}")


def local_db(db: Path | None) -> Path | None:
    """The database a server-side command works on: ``--db`` or TASKD_DB; else the server."""
    if db is not None:
        return db
    env = os.environ.get("TASKD_DB")
    return Path(env) if env else None


@main.group("token", invoke_without_command=False)
def token() -> None:
    """API tokens (viewer or admin): create, list, revoke."""


@token.command("create")
@click.option(
    "--db",
    type=click.Path(path_type=Path),
    help="Write to this database file directly (server-side) [TASKD_DB].",
)
@click.option("--role", type=click.Choice(["viewer", "admin"]), default="viewer", show_default=True)
@click.option("--name", required=True, help="Who or what the token is for.")
@click.pass_obj
def token_create(obj: dict[str, Any], db: Path | None, role: str, name: str) -> None:
    """Create a token (printed once; only its hash is stored)."""
    path = local_db(db)
    if path is not None:
        from taskd.cli.serve import create_token_in

        click.echo(create_token_in(path, role, name))
        return
    made = run(obj, lambda c: c.call("POST", "/api/tokens", json={"role": role, "name": name}))
    click.echo(made["token"])


@token.command("list")
@output_option
@click.pass_obj
def token_list(obj: dict[str, Any], output: str) -> None:
    """Issued tokens (never the secrets)."""
    found = run(obj, lambda c: c.call("GET", "/api/tokens"))
    emit(
        found,
        output,
        ["ID", "NAME", "ROLE", "CREATED"],
        lambda t: [t["id"], t["name"], t["role"], when(t["created_at"])],
    )


@token.command("revoke")
@click.argument("token_id")
@click.pass_obj
def token_revoke(obj: dict[str, Any], token_id: str) -> None:
    """Revoke a token by its id (see `token list`)."""
    run(obj, lambda c: c.call("DELETE", f"/api/tokens/{quote(token_id, safe='')}",
                              what=f"no token with id {token_id!r}"))  # fmt: skip
    click.echo(f"revoked {token_id}")


@main.command("backup")
@click.option(
    "--db",
    type=click.Path(path_type=Path),
    help="Copy this database file directly (server-side) [TASKD_DB].",
)
@click.argument("dest", type=click.Path(path_type=Path))
@click.pass_obj
def backup(obj: dict[str, Any], db: Path | None, dest: Path) -> None:
    """Write a consistent copy of the (live) database to DEST (from the server, or --db)."""
    if dest.exists():
        raise CliError(f"{dest} exists; refusing to overwrite it")
    path = local_db(db)
    if path is not None:
        from taskd.cli.serve import backup_file

        backup_file(path, dest)
        click.echo(f"backed up {path} to {dest}")
        return

    async def work(client: Client) -> int:
        size = 0
        part = dest.with_name(dest.name + ".part")
        try:
            async with client.open("GET", "/api/backup") as resp:
                # The copy holds what the database holds (queue secrets among it): owner only.
                fd = os.open(part, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
                with os.fdopen(fd, "wb") as fh:
                    async for chunk in resp.content.iter_chunked(1 << 16):
                        fh.write(chunk)
                        size += len(chunk)
            part.rename(dest)
        finally:
            part.unlink(missing_ok=True)
        return size

    size = run(obj, work)
    click.echo(f"backed up the server's database to {dest} ({size} bytes)")


@main.command("version")
@output_option
@click.pass_obj
def version(obj: dict[str, Any], output: str) -> None:
    """The client's version and the server's."""
    server = run(obj, lambda c: c.call("GET", "/api/version"))
    data = {"client": __version__, "server": server["version"]}
    if output == "table":
        click.echo(f"client {data['client']}\nserver {data['server']}")
    else:
        emit(data, output)


@main.command("completion")
@click.argument("shell", type=click.Choice(["bash", "zsh", "fish"]))
def completion(shell: str) -> None:
    """Print the shell completion script (e.g. `eval "$(taskd completion bash)"`)."""
    from click.shell_completion import get_completion_class

    cls = get_completion_class(shell)
    assert cls is not None
    click.echo(cls(main, {}, "taskd", "_TASKD_COMPLETE").source())
