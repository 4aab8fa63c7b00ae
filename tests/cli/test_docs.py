"""docs/cli.md and the definition schema cannot drift from the code."""

from __future__ import annotations

import json
import re
from pathlib import Path

import jsonschema
from ruamel.yaml import YAML

from taskd.cli.docgen import render, walk
from taskd.processes.fileschema import DEFINITION

ROOT = Path(__file__).resolve().parents[2]


def test_cli_md_is_generated_from_the_commands():
    assert (ROOT / "docs" / "cli.md").read_text() == render(), (
        "docs/cli.md is stale: run python -m taskd.cli.docgen > docs/cli.md"
    )


def test_every_command_has_help_and_a_section():
    from taskd.cli import main

    text = (ROOT / "docs" / "cli.md").read_text()
    for path, cmd, _ in walk(main, ["taskd"]):
        assert f"## {' '.join(path)}\n" in text
        assert cmd.help, f"{' '.join(path)} has no help"


def test_the_schema_file_is_the_served_schema():
    assert json.loads((ROOT / "docs" / "definitions.schema.json").read_text()) == DEFINITION
    jsonschema.Draft202012Validator.check_schema(DEFINITION)


def definition_documents():
    yaml = YAML(typ="safe")
    for path in sorted((ROOT / "examples").glob("*.yaml")):
        doc = yaml.load(path.read_text())
        if isinstance(doc.get("tasks"), list):  # definitions, not DAG runs or container tasks
            yield path.name, doc
    blocks = re.findall(r"```yaml\n(.*?)```", (ROOT / "docs" / "definitions.md").read_text(), re.S)
    for i, block in enumerate(blocks):
        doc = yaml.load(block)
        if doc and "tasks" in doc:
            yield f"definitions.md block {i}", doc


def test_examples_and_documented_definitions_follow_the_schema():
    validator = jsonschema.Draft202012Validator(DEFINITION)
    seen = []
    for where, doc in definition_documents():
        errors = [e.message for e in validator.iter_errors(doc)]
        assert not errors, f"{where}: {errors}"
        seen.append(where)
    assert len(seen) >= 5
    bad = {"name": "x", "tasks": [{"name": "a", "shel": "ls"}]}
    assert list(validator.iter_errors(bad))
