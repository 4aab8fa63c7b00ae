"""docs/cli.md, generated from the commands themselves (a test keeps the file in step).

python -m taskd.cli.docgen > docs/cli.md
"""

from __future__ import annotations

import click

INTRO = """\
# The `taskd` command

Generated from the commands' own help by `python -m taskd.cli.docgen > docs/cli.md`; a test
fails when this file and the commands differ.

`taskd serve` runs the server. Every other command is a client of a running server over its
HTTP API (it never opens the database), so one command drives a local or a remote taskd:

- **Server and token**, first found wins: `--url`/`--token` (or `TASKD_URL`/`TASKD_TOKEN`);
  `--context NAME` (or `TASKD_CONTEXT`); the current context (`taskd context use`); the
  server `taskd serve` last started on this machine without `--admin-token`, with the token
  file it wrote (`<db>.token`); else `http://127.0.0.1:7070` and `./taskd.db.token`.
- **Contexts** live in the user's config dir (`~/.config/taskd/contexts.json` on Linux, or
  `TASKD_CONFIG_DIR`), mode 0600.
- **Output**: commands that print data take `-o table|json|yaml`; tables fit the terminal and
  are coloured only on a terminal (`NO_COLOR` turns colour off).
- **Errors** are one line on stderr, `taskd: ...`, with a non-zero exit code: no server at
  the URL, a bad token, not found, invalid input (files: `FILE:LINE:COLUMN: ...`).
- **Shell completion**: `eval "$(taskd completion bash)"` (or zsh, fish).
"""


def walk(cmd: click.Command, path: list[str], parent: click.Context | None = None):
    """(path, command, context) of a command and every subcommand below it, as invoked."""
    ctx = click.Context(cmd, info_name=path[-1], parent=parent, **cmd.context_settings)
    yield path, cmd, ctx
    if isinstance(cmd, click.Group):
        for name in sorted(cmd.list_commands(ctx)):
            sub = cmd.get_command(ctx, name)
            if sub is not None and not sub.hidden:
                yield from walk(sub, [*path, name], ctx)


def option_line(param: click.Parameter, ctx: click.Context) -> str | None:
    record = param.get_help_record(ctx)
    if record is None:
        return None
    names, text = record
    return f"| `{names}` | {text.replace('|', '/')} |"


def render() -> str:
    """The whole of docs/cli.md."""
    from taskd.cli import main

    out = [INTRO]
    for path, cmd, ctx in walk(main, ["taskd"]):
        name = " ".join(path)
        out.append(f"## {name}\n")
        out.append(f"```\n{name} {' '.join(cmd.collect_usage_pieces(ctx))}\n```\n")
        if cmd.help:
            out.append(cmd.help.strip() + "\n")
        rows = [r for p in cmd.get_params(ctx) if (r := option_line(p, ctx))]
        if rows:
            out.append("| option | meaning |\n|---|---|\n" + "\n".join(rows) + "\n")
        if isinstance(cmd, click.Group):
            subs = [n for n in sorted(cmd.list_commands(ctx)) if not cmd.get_command(ctx, n).hidden]
            out.append("Commands: " + ", ".join(f"`{n}`" for n in subs) + "\n")
    return "\n".join(out)


if __name__ == "__main__":
    click.echo(render(), nl=False)
