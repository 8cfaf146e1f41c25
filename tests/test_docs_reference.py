"""The user docs keep up with the code: every admin API route has its section in docs/api.md,
every event type of the catalog is named in docs/events.md, and no link in docs/ or README.md
leads outside the repository (relative links resolve to files, and their anchors to headings).

Routes are taken from the router of a real running CSMS, so a route added anywhere (a new
table in ``csms/api/app.py`` or ``csms/app.py``) fails here until it is documented. The check
is one way: documenting a route before it is registered passes.
"""

from __future__ import annotations

import re
from pathlib import Path
from urllib.parse import unquote

from csms.app import Csms
from csms.catalog import build_catalog

REPO = Path(__file__).resolve().parent.parent
DOCS = REPO / "docs"
API_DOC = DOCS / "api.md"
EVENTS_DOC = DOCS / "events.md"

# aiohttp adds a HEAD route beside each GET; it is the GET's, documented with it.
_IMPLIED_METHODS = frozenset({"HEAD", "OPTIONS"})
_FENCE = re.compile(r"^[ \t]*(```|~~~).*?^[ \t]*\1[^\n]*$", re.M | re.S)
_CODE_SPAN = re.compile(r"`[^`\n]*`")
_HEADING = re.compile(r"^(#{1,6})\s+(.+?)\s*#*\s*$", re.M)
_INLINE_LINK = re.compile(r"!?\[[^\]]*\]\(\s*(<[^>]*>|[^)\s]*)(?:\s+[\"'(][^)]*)?\)")
_REFERENCE_DEF = re.compile(r"^\s{0,3}\[[^\]]+\]:\s*(<[^>]*>|\S+)", re.M)
_HTML_LINK = re.compile(r"""\b(?:href|src)\s*=\s*["']([^"']*)["']""", re.I)
_SCHEME = re.compile(r"^[A-Za-z][A-Za-z0-9+.-]*:")
_EXTERNAL_SCHEMES = ("http:", "https:", "mailto:")


def _user_docs() -> list[Path]:
    return [REPO / "README.md", *sorted(DOCS.rglob("*.md"))]


def _without_code_blocks(text: str) -> str:
    return _FENCE.sub("", text)


def _headings(text: str) -> list[str]:
    return [m.group(2) for m in _HEADING.finditer(_without_code_blocks(text))]


def _anchors(text: str) -> set[str]:
    """The anchors GitHub gives a file's headings: lower case, punctuation dropped, spaces as
    hyphens, and ``-1``, ``-2``, ... on repeats."""
    seen: dict[str, int] = {}
    anchors = set()
    for heading in _headings(text):
        slug = re.sub(r"[^\w\- ]", "", heading.lower()).replace(" ", "-")
        count = seen.get(slug, 0)
        seen[slug] = count + 1
        anchors.add(slug if count == 0 else f"{slug}-{count}")
    return anchors


def _links(text: str) -> list[str]:
    prose = _CODE_SPAN.sub("", _without_code_blocks(text))
    found = [
        *_INLINE_LINK.findall(prose),
        *_REFERENCE_DEF.findall(prose),
        *_HTML_LINK.findall(prose),
    ]
    return [target.strip("<>") for target in found]


def _link_problem(source: Path, target: str) -> str | None:
    """Why ``target``, linked from ``source``, does not stay in the repository; or None."""
    if _SCHEME.match(target):
        if target.lower().startswith(_EXTERNAL_SCHEMES):
            return None
        return "not a web link (only http, https and mailto may leave the repository)"
    path_part, _, fragment = target.partition("#")
    if not path_part:
        file = source
    elif path_part.startswith("/"):
        return "an absolute path; link relative to the file instead"
    else:
        file = (source.parent / unquote(path_part)).resolve()
        if not file.is_relative_to(REPO):
            return "outside the repository"
        if not file.exists():
            return "no such file in the repository"
    if fragment and file.suffix == ".md" and fragment not in _anchors(file.read_text()):
        return f"no heading in {file.relative_to(REPO)} has the anchor #{fragment}"
    return None


async def test_every_registered_route_has_a_section_in_api_md(csms: Csms) -> None:
    router = csms._runner.app.router  # the admin app as it serves
    routes = {
        (route.method, route.resource.canonical)
        for route in router.routes()
        if route.resource is not None and route.method not in _IMPLIED_METHODS
    }
    assert ("GET", "/api/v1/health") in routes, routes  # the real router, not an empty one
    headings = _headings(API_DOC.read_text())
    missing = sorted(
        f"{method} {path}"
        for method, path in routes
        if not any(f"`{method} {path}`" in heading for heading in headings)
    )
    assert not missing, (
        f"routes without a section (a heading `METHOD /path`) in docs/api.md: {missing}"
    )


def test_every_event_type_of_the_catalog_is_in_events_md() -> None:
    text = EVENTS_DOC.read_text()
    missing = [t.name for t in build_catalog() if f"`{t.name}`" not in text]
    assert not missing, f"event types not named in docs/events.md: {missing}"


def test_no_link_in_the_docs_leaves_the_repository() -> None:
    problems = []
    for doc in _user_docs():
        text = doc.read_text()
        name = doc.relative_to(REPO)
        if "../shared" in text:
            problems.append(f"{name}: mentions ../shared, which users of the repository lack")
        if "DESIGN.md" in text and not (REPO / "DESIGN.md").exists():
            problems.append(f"{name}: mentions DESIGN.md, which is not in the repository")
        for target in _links(text):
            problem = _link_problem(doc, target)
            if problem is not None:
                problems.append(f"{name}: ({target}) {problem}")
    assert not problems, "\n".join(problems)


def test_the_link_checker_tells_inside_from_outside() -> None:
    readme = REPO / "README.md"
    assert _link_problem(readme, "docs/api.md#authentication") is None
    assert _link_problem(readme, "https://www.standardwebhooks.com/") is None
    assert _link_problem(readme, "../shared/DESIGN.md") == "outside the repository"
    assert _link_problem(readme, "docs/nothing-here.md") == "no such file in the repository"
    assert _link_problem(readme, "/etc/passwd") is not None
    assert _link_problem(readme, "file:///etc/passwd") is not None
    assert "no heading" in (_link_problem(readme, "docs/api.md#no-such-section") or "")
    fenced = "```\n[d](q.md)\n```\n- item\n\n  ```\n  [e](r.md)\n  ```\n"
    assert _links('[a](x.md) `[b](y.md)` [c](<z w.md> "t")\n' + fenced) == ["x.md", "z w.md"]
    assert _anchors("# `GET /api/v1/x/{id}`\n## Two words\n## Two words\n") == {
        "get-apiv1xid",
        "two-words",
        "two-words-1",
    }
