"""The OpenAPI document as one plain HTML page (``GET /api/v1/docs``).

Rendered on the server from the same document as ``openapi.json``, so the page cannot say
something the JSON does not. It has no script, no stylesheet and no inline style, and loads
nothing: the Content-Security-Policy refuses everything (``default-src 'none'``), which an
admin page on the operator's network can afford. Every text from the document is escaped.
"""

from __future__ import annotations

import json
import re
from html import escape
from typing import Any

CONTENT_SECURITY_POLICY = (
    "default-src 'none'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'"
)
_SCHEMA_REF = re.compile(r"&quot;#/components/schemas/([A-Za-z0-9_.-]+)&quot;")
_METHODS = ("get", "post", "patch", "put", "delete")


def render(document: dict[str, Any]) -> str:
    """The whole page."""
    info = document["info"]
    title = escape(f"{info['title']} {info['version']}")
    operations = [
        (path, method, op)
        for path, item in document["paths"].items()
        for method, op in item.items()
        if method in _METHODS
    ]
    tags: dict[str, list[tuple[str, str, dict[str, Any]]]] = {}
    for entry in operations:
        tags.setdefault(entry[2].get("tags", ["other"])[0], []).append(entry)
    out = [
        "<!DOCTYPE html>",
        '<html lang="en"><head><meta charset="utf-8">',
        '<meta name="viewport" content="width=device-width, initial-scale=1">',
        f"<title>{title}</title></head><body>",
        f"<h1>{title}</h1>",
        f"<p>{escape(info.get('description', ''))}</p>",
        '<p>The same as JSON: <a href="openapi.json">openapi.json</a> (OpenAPI 3.1).</p>',
        "<h2>Operations</h2>",
    ]
    for tag, entries in tags.items():
        out.append(f"<h3>{escape(tag)}</h3><ul>")
        out += [
            f'<li><a href="#{_anchor(op)}"><code>{method.upper()} {escape(path)}</code></a>'
            f" {escape(op.get('summary', ''))}</li>"
            for path, method, op in entries
        ]
        out.append("</ul>")
    errors = document["components"]["responses"]
    out += [_operation(path, method, op, errors) for path, method, op in operations]
    out.append("<h2>Schemas</h2>")
    for name, schema in document["components"]["schemas"].items():
        out.append(f'<h3 id="schema-{escape(name)}">{escape(name)}</h3>{_json(schema)}')
    out.append("</body></html>")
    return "\n".join(out)


def _anchor(op: dict[str, Any]) -> str:
    return "op-" + escape(op.get("operationId", ""))


def _operation(path: str, method: str, op: dict[str, Any], errors: dict[str, Any]) -> str:
    out = [
        f'<h2 id="{_anchor(op)}"><code>{method.upper()} {escape(path)}</code></h2>',
        f"<p>{escape(op.get('summary', ''))}</p>",
    ]
    if op.get("description"):
        out.append(f"<p>{escape(op['description'])}</p>")
    public = op.get("security") == []
    out.append(
        "<p>Authentication: none (public).</p>"
        if public
        else "<p>Authentication: <code>Authorization: Bearer TOKEN</code>.</p>"
    )
    if op.get("parameters"):
        out.append(
            '<table border="1" cellpadding="4"><caption>Parameters</caption>'
            "<tr><th>name</th><th>in</th><th>schema</th><th>meaning</th></tr>"
        )
        for p in op["parameters"]:
            out.append(
                f"<tr><td><code>{escape(p['name'])}</code></td><td>{escape(p['in'])}</td>"
                f"<td><code>{escape(json.dumps(p.get('schema', {})))}</code></td>"
                f"<td>{escape(p.get('description', ''))}</td></tr>"
            )
        out.append("</table>")
    body = op.get("requestBody")
    if body is not None:
        need = "required" if body.get("required") else "optional; a POST without one is {}"
        schema = body["content"]["application/json"]["schema"]
        out.append(f"<p>JSON body ({need}): {_schema_link(schema)}</p>")
    out.append(
        '<table border="1" cellpadding="4"><caption>Answers</caption>'
        "<tr><th>status</th><th>meaning</th><th>body</th></tr>"
    )
    for status, response in op["responses"].items():
        if "$ref" in response:
            text = errors[response["$ref"].rsplit("/", 1)[-1]]["description"]
            out.append(
                f"<tr><td>{escape(status)}</td><td>{escape(text)}</td>"
                f'<td><a href="#schema-Error">Error</a></td></tr>'
            )
            continue
        bodies = " ".join(
            f"{escape(media)}: <code>{_shape(content.get('schema', {}))}</code>"
            for media, content in response.get("content", {}).items()
        )
        out.append(
            f"<tr><td>{escape(status)}</td><td>{escape(response.get('description', ''))}</td>"
            f"<td>{bodies}</td></tr>"
        )
    out.append("</table>")
    return "\n".join(out)


def _schema_link(schema: dict[str, Any]) -> str:
    target = schema.get("$ref", "")
    if target.startswith("#/components/schemas/"):
        name = escape(target.rsplit("/", 1)[-1])
        return f'<a href="#schema-{name}">{name}</a>'
    return _json(schema)


def _shape(schema: dict[str, Any]) -> str:
    """A schema as the JSON it describes, briefly: ``{"data": {"items": [Event, ...]}}``."""
    if "$ref" in schema:
        return _schema_link(schema)
    kind = schema.get("type")
    if kind == "object" and "properties" in schema:
        fields = ", ".join(
            f"&quot;{escape(name)}&quot;: {_shape(value)}"
            for name, value in schema["properties"].items()
        )
        return "{" + fields + "}"
    if kind == "array":
        return f"[{_shape(schema.get('items', {}))}, ...]"
    return escape(kind if isinstance(kind, str) else json.dumps(schema))


def _json(schema: Any) -> str:
    """Indented JSON with each schema reference a link to that schema's section."""
    text = escape(json.dumps(schema, indent=2, ensure_ascii=False))
    linked = _SCHEMA_REF.sub(
        lambda m: (
            f'&quot;<a href="#schema-{m.group(1)}">#/components/schemas/{m.group(1)}</a>&quot;'
        ),
        text,
    )
    return f"<pre>{linked}</pre>"
