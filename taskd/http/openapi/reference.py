"""The API reference page: one self-contained HTML document rendered from the OpenAPI document.

Pure: a function of the document. No scripts, no external assets (taskd often runs where no
CDN is reachable); schemas are shown as nested field lists with links to named schemas.
"""

from __future__ import annotations

import html
import re
from typing import Any

STYLE = """
body{font:15px/1.5 system-ui,sans-serif;margin:0;color:#1d1d1f;background:#fafafa}
header,main,nav{max-width:1100px;margin:0 auto;padding:0 1.2em}
header{padding-top:1em}h1{margin:.2em 0}h2{border-bottom:2px solid #ddd;margin-top:2em}
nav ul{columns:2;font-size:.9em}nav li{list-style:none}
article{background:#fff;border:1px solid #e3e3e3;border-radius:6px;padding:.4em 1em;
margin:1em 0}article h3{font-size:1.05em;font-family:ui-monospace,monospace}
.m{display:inline-block;min-width:4.2em;text-align:center;border-radius:4px;color:#fff;
font-size:.8em;padding:.1em .3em;margin-right:.5em;font-family:ui-monospace,monospace}
.get{background:#2f7ed8}.post{background:#2a9d48}.put{background:#c77c02}
.delete{background:#c0392b}.patch{background:#7b52ab}
code{background:#f1f1f1;padding:0 .25em;border-radius:3px}
table{border-collapse:collapse;font-size:.92em}td,th{border:1px solid #e3e3e3;
padding:.2em .5em;text-align:left;vertical-align:top}
ul.f{margin:.2em 0;padding-left:1.2em}.t{color:#6b4fa0}.req{color:#b03a2e;font-size:.85em}
.ext{color:#777;font-size:.85em}.access{font-size:.88em;color:#444}
"""
REF = re.compile(r"#/components/schemas/(.+)")
TICKS = re.compile(r"`([^`]+)`")
EXTENSION = ' <span class="ext">(taskd extension)</span>'


def esc(text: Any) -> str:
    return html.escape(str(text), quote=True)


def prose(text: str) -> str:
    """Plain text with `code` spans."""
    return TICKS.sub(lambda m: f"<code>{m[1]}</code>", esc(text))


def type_of(schema: Any, depth: int = 0) -> str:
    """A schema as HTML: its type in words, with the fields of an object listed below."""
    if not isinstance(schema, dict) or not schema:
        return '<span class="t">any</span>'
    if "$ref" in schema:
        name = REF.match(schema["$ref"])
        label = name[1] if name else schema["$ref"]
        return f'<a class="t" href="#schema-{esc(label)}">{esc(label)}</a>'
    if narrowed := narrowing(schema):
        return narrowed
    for key, word in (("oneOf", "one of"), ("anyOf", "any of"), ("allOf", "all of")):
        if key in schema:
            parts = [
                f"<li>{type_of(s, depth + 1)}</li>" for s in schema[key] if s != {"type": "null"}
            ]
            nullable = {"type": "null"} in schema[key]
            head = f"{word}{' (or null)' if nullable else ''}:"
            if len(parts) == 1:
                return parts[0][4:-5] + (" or null" if nullable else "")
            return f'<span class="t">{head}</span><ul class="f">{"".join(parts)}</ul>'
    text = words(schema)
    if "properties" in schema and depth < 6:
        text += fields(schema, depth)
    elif "prefixItems" in schema:
        parts = "".join(f"<li>{type_of(s, depth + 1)}</li>" for s in schema["prefixItems"])
        text = f'<span class="t">array of, in order:</span><ul class="f">{parts}</ul>'
    elif "array" in kinds(schema) and isinstance(schema.get("items"), dict):
        tail = " or null" if "null" in kinds(schema) else ""
        text = f'<span class="t">array{tail} of</span> {type_of(schema["items"], depth + 1)}'
    elif isinstance(schema.get("additionalProperties"), dict):
        inner = type_of(schema["additionalProperties"], depth + 1)
        text = f'<span class="t">map of</span> {inner}'
    return text


def kinds(schema: dict[str, Any]) -> list[str]:
    found = schema.get("type", "any")
    return found if isinstance(found, list) else [found]


def narrowing(schema: dict[str, Any]) -> str | None:
    """``allOf: [$ref, {properties: {x: {const: v}}}]`` as "Ref with x = v" (error forms)."""
    parts = schema.get("allOf")
    if not parts or "$ref" not in parts[0]:
        return None
    fixed = []
    for extra in parts[1:]:
        props = extra.get("properties", {})
        if set(extra) - {"properties", "required"} or any("const" not in p for p in props.values()):
            return None
        fixed += [f"<code>{esc(k)}</code> = <code>{esc(repr_json(p['const']))}</code>"
                  for k, p in props.items()]  # fmt: skip
    return f"{type_of(parts[0])} with {', '.join(fixed)}"


def words(schema: dict[str, Any]) -> str:
    text = " or ".join(kinds(schema))
    notes = []
    if "const" in schema:
        text = f"<code>{esc(repr_json(schema['const']))}</code>"
    if "enum" in schema:
        values = ", ".join(f"<code>{esc(repr_json(v))}</code>" for v in schema["enum"])
        notes.append(f"one of {values}")
    for key, label in (("format", "format"), ("pattern", "pattern"), ("minimum", "min"),
                       ("exclusiveMinimum", "above"), ("maximum", "max"),
                       ("minLength", "min length"),
                       ("maxLength", "max length"), ("minItems", "min items"),
                       ("maxItems", "max items")):  # fmt: skip
        if key in schema:
            notes.append(f"{label} <code>{esc(schema[key])}</code>")
    if schema.get("additionalProperties") is False:
        notes.append("no other fields")
    out = f'<span class="t">{esc(text) if "const" not in schema else text}</span>'
    if notes:
        out += f" ({'; '.join(notes)})"
    if schema.get("description"):
        out += f" — {prose(schema['description'])}"
    return out


def repr_json(value: Any) -> str:
    if value is True:
        return "true"
    if value is False:
        return "false"
    if value is None:
        return "null"
    return f'"{value}"' if isinstance(value, str) else str(value)


def fields(schema: dict[str, Any], depth: int) -> str:
    required = set(schema.get("required", ()))
    items = []
    for name, sub in schema["properties"].items():
        mark = ' <span class="req">required</span>' if name in required else ""
        items.append(f"<li><code>{esc(name)}</code>{mark}: {type_of(sub, depth + 1)}</li>")
    return f'<ul class="f">{"".join(items)}</ul>'


def parameters(op: dict[str, Any]) -> str:
    params = op.get("parameters", [])
    if not params:
        return ""
    rows = "".join(
        f"<tr><td><code>{esc(p['name'])}</code></td><td>{esc(p['in'])}</td>"
        f"<td>{'yes' if p.get('required') else ''}</td><td>{type_of(p.get('schema'))}</td></tr>"
        for p in params
    )
    return (
        "<h4>Parameters</h4><table><tr><th>name</th><th>in</th><th>required</th>"
        f"<th>type</th></tr>{rows}</table>"
    )


def body(op: dict[str, Any]) -> str:
    request = op.get("requestBody")
    if not request:
        return ""
    out = [f"<h4>Request body{'' if request.get('required') else ' (optional)'}</h4>"]
    for media, content in request["content"].items():
        out.append(f"<p><code>{esc(media)}</code>: {type_of(content.get('schema'))}</p>")
    return "".join(out)


def responses(op: dict[str, Any]) -> str:
    out = ["<h4>Responses</h4><ul>"]
    for status, reply in op["responses"].items():
        line = f"<li><b>{esc(status)}</b> {prose(reply.get('description', ''))}"
        for media, content in reply.get("content", {}).items():
            line += f"<br><code>{esc(media)}</code>: {type_of(content.get('schema'))}"
        out.append(line + "</li>")
    out.append("</ul>")
    return "".join(out)


def access_text(op: dict[str, Any], schemes: dict[str, Any]) -> str:
    security = op.get("security", [])
    if not security:
        return "public: no credentials needed"
    options = []
    for requirement in security:
        if not requirement:
            options.append("none")
        else:
            options.append(" + ".join(esc(name) for name in requirement))
    level = op.get("x-taskd-access", "")
    return f"{esc(level)}: " + " or ".join(options)


def render(doc: dict[str, Any]) -> str:
    """The whole reference page."""
    info = doc["info"]
    schemes = doc["components"].get("securitySchemes", {})
    by_tag: dict[str, list[tuple[str, str, dict[str, Any]]]] = {
        t["name"]: [] for t in doc.get("tags", [])
    }
    for path, methods in doc["paths"].items():
        for method, op in methods.items():
            by_tag.setdefault(op["tags"][0], []).append((path, method, op))
    tags = {t["name"]: t.get("description", "") for t in doc.get("tags", [])}
    nav, sections = [], []
    for tag, ops in by_tag.items():
        anchor = "tag-" + re.sub(r"\W+", "-", tag).strip("-").lower()
        nav.append(f'<li><a href="#{anchor}"><b>{esc(tag)}</b></a></li>')
        parts = [f'<section id="{anchor}"><h2>{esc(tag)}</h2><p>{prose(tags.get(tag, ""))}</p>']
        for path, method, op in ops:
            op_id = esc(op["operationId"])
            nav.append(f'<li><a href="#{op_id}">{esc(method.upper())} {esc(path)}</a></li>')
            ext = EXTENSION if op.get("x-taskd-extension") else ""
            parts.append(
                f'<article id="{op_id}"><h3><span class="m {esc(method)}">{esc(method.upper())}'
                f"</span>{esc(path)}</h3><p><b>{prose(op['summary'])}</b>{ext}</p>"
                + (f"<p>{prose(op['description'])}</p>" if op.get("description") else "")
                + f'<p class="access">Access — {access_text(op, schemes)}</p>'
                + parameters(op)
                + body(op)
                + responses(op)
                + "</article>"
            )
        parts.append("</section>")
        sections.append("".join(parts))
    auth = "".join(
        f"<li><code>{esc(name)}</code>: {esc(s['type'])}"
        f"{' ' + esc(s.get('scheme', '')) if s.get('scheme') else ''}"
        f"{' header ' + esc(s['name']) if s.get('in') == 'header' else ''}"
        f" — {prose(s.get('description', ''))}</li>"
        for name, s in schemes.items()
    )
    schemas = "".join(
        f'<article id="schema-{esc(name)}"><h3>{esc(name)}</h3>{type_of(schema)}</article>'
        for name, schema in doc["components"]["schemas"].items()
    )
    return (
        '<!doctype html><html lang="en"><head><meta charset="utf-8">'
        '<meta name="viewport" content="width=device-width, initial-scale=1">'
        f"<title>{esc(info['title'])} API reference</title><style>{STYLE}</style></head><body>"
        f"<header><h1>{esc(info['title'])} API reference</h1>"
        f"<p>Version {esc(info['version'])}. {prose(info.get('summary', ''))} "
        f"{prose(info.get('description', ''))} The machine-readable document is "
        '<a href="/openapi.json">/openapi.json</a> (OpenAPI 3.1).</p></header>'
        f"<nav><h2>Contents</h2><ul>{''.join(nav)}"
        '<li><a href="#auth"><b>Authentication</b></a></li>'
        '<li><a href="#schemas"><b>Schemas</b></a></li></ul></nav>'
        f'<main>{"".join(sections)}<section id="auth"><h2>Authentication</h2><ul>{auth}</ul>'
        f'</section><section id="schemas"><h2>Schemas</h2>{schemas}</section></main>'
        "</body></html>"
    )
