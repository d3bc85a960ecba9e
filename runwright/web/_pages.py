"""The web view's HTML, rendered on the server; every value from the journal is escaped.

Pages load one stylesheet and one script from the package (``static/``);
nothing comes from another origin, so the view works offline. The script
draws the run page's waterfall from the JSON the page embeds, and refreshes
what a page shows when the server says a run changed.
"""

from __future__ import annotations

import datetime as dt
from html import escape
from typing import Any
from urllib.parse import urlencode

import attrs

from .._cli._format import iso
from ..journal._browse import RunListRow
from ..journal._states import RunStatus
from ._http import json_bytes

__all__ = ["Page", "Paging", "cursor_of", "page", "pager", "run_rows", "run_summary", "runs_page"]

_LIVE = frozenset({"pending", "running"})


def e(value: object) -> str:
    """Escaped for HTML text and for quoted attribute values."""
    return escape("" if value is None else str(value), quote=True)


class Page:
    """What every page shares: where the application is mounted, and what the viewer may do."""

    def __init__(self, base: str, title: str, *, csrf: str | None, read_only: bool) -> None:
        self.base = base
        self.title = title
        self.csrf = csrf
        self.read_only = read_only


def page(p: Page, kind: str, body: str, data: dict[str, str] | None = None) -> bytes:
    attributes = "".join(f' data-{k}="{e(v)}"' for k, v in (data or {}).items())
    csrf = f'<meta name="rw-csrf" content="{e(p.csrf)}">' if p.csrf else ""
    mode = "read-only" if p.read_only else ("signed in" if p.csrf else "read access")
    return (
        "<!doctype html>\n<html lang=en><head><meta charset=utf-8>"
        '<meta name="viewport" content="width=device-width, initial-scale=1">'
        f"<title>{e(p.title)} · runwright</title>"
        f'<meta name="rw-base" content="{e(p.base)}">{csrf}'
        '<link rel=icon href="data:,">'
        f'<link rel=stylesheet href="{e(p.base)}/static/app.css">'
        f'<script src="{e(p.base)}/static/app.js" defer></script></head>'
        f'<body data-page="{e(kind)}"{attributes}>'
        f'<header><a class=home href="{e(p.base)}/">runwright</a>'
        f"<span class=mode id=mode>{e(mode)}</span><span id=live class=live>live</span></header>"
        f"<main>{body}</main><div id=toast role=status></div></body></html>\n"
    ).encode("utf-8", "surrogatepass")


# -- the runs page --------------------------------------------------------------------


def cursor_of(row: RunListRow) -> str:
    """The keyset of the page after *row*: its creation time (exact) and id."""
    return f"{row.created_at!r}~{row.run_id}"


def _duration(start: float, end: float | None) -> str:
    if end is None:
        return "-"
    seconds = end - start
    if seconds < 1:
        return f"{seconds * 1000:.1f} ms"
    if seconds < 120:
        return f"{seconds:.2f} s"
    return str(dt.timedelta(seconds=round(seconds)))


def run_rows(base: str, rows: list[RunListRow], attributes: dict[str, dict[str, str]]) -> str:
    if not rows:
        return "<tr class=empty><td colspan=8>no runs match</td></tr>"
    out = []
    for row in rows:
        attrs = "".join(
            f"<span class=chip>{e(k)}={e(v)}</span>"
            for k, v in attributes.get(row.run_id, {}).items()
        )
        problem = f' <span class="badge problem">{e(row.problem)}</span>' if row.problem else ""
        out.append(
            f'<tr data-run="{e(row.run_id)}"><td class=id>'
            f'<a href="{e(base)}/runs/{e(row.run_id)}">{e(row.run_id)}</a></td>'
            f'<td><span class="badge {e(row.status)}">{e(row.status)}</span>{problem}</td>'
            f"<td>{e(row.workflow)}</td><td>{e(row.key or '')}</td><td>{attrs}</td>"
            f"<td>{e(iso(row.created_at))}</td><td>{e(iso(row.finished_at))}</td>"
            f"<td>{e(_duration(row.created_at, row.finished_at))}</td></tr>"
        )
    return "".join(out)


@attrs.frozen
class Paging:
    """Which of the runs list's other pages there are."""

    newest: bool
    newer: bool
    older: bool


def pager(base: str, query: dict[str, str], rows: list[RunListRow], links: Paging) -> str:
    """Links to the newest page, the newer one and the older one, where there are such."""
    kept = {k: v for k, v in query.items() if k not in ("before", "after", "fragment") and v}

    def link(name: str, text: str, cursor: tuple[str, str] | None) -> str:
        target = dict(kept)
        if cursor is not None:
            target[cursor[0]] = cursor[1]
        return f'<a id={name} href="{e(base)}/?{e(urlencode(target))}">{text}</a>'

    shown = []
    if links.newest:
        shown.append(link("first", "newest", None))
    if links.newer and rows:
        shown.append(link("previous", "newer runs", ("after", cursor_of(rows[0]))))
    if links.older and rows:
        shown.append(link("next", "older runs", ("before", cursor_of(rows[-1]))))
    return " ".join(shown)


def runs_page(
    p: Page,
    query: dict[str, str],
    rows: list[RunListRow],
    attributes: dict[str, dict[str, str]],
    links: Paging,
    error: str | None,
) -> bytes:
    status = query.get("status", "")
    options = "".join(
        f'<option value="{e(s.value)}"{" selected" if s.value == status else ""}>{e(s.value)}'
        "</option>"
        for s in RunStatus
    )

    def field(name: str, label: str, kind: str = "text", hint: str = "") -> str:
        return (
            f'<label>{e(label)}<input name={name} type={kind} value="{e(query.get(name, ""))}"'
            f' placeholder="{e(hint)}"></label>'
        )

    problem = f"<p class=error id=filter-error>{e(error)}</p>" if error else ""
    body = (
        f'<form class=filters id=filters method=get action="{e(p.base)}/">'
        f'<label>status<select name=status><option value="">any</option>{options}</select></label>'
        + field("workflow", "workflow", hint="module.workflow")
        + field("attr", "attribute", hint="key=value")
        + field("from", "created from", "datetime-local")
        + field("to", "created before", "datetime-local")
        + field("q", "run id or key", "search")
        + "<button type=submit>filter</button>"
        f'<a class=clear href="{e(p.base)}/">clear</a></form>{problem}'
        "<table class=runs><thead><tr><th>run</th><th>status</th><th>workflow</th><th>key</th>"
        "<th>attributes</th><th>created (UTC)</th><th>finished</th><th>duration</th></tr></thead>"
        f"<tbody id=runs-body>{run_rows(p.base, rows, attributes)}</tbody></table>"
        f"<nav class=pager id=pager>{pager(p.base, query, rows, links)}</nav>"
    )
    return page(p, "runs", body)


# -- the run page ---------------------------------------------------------------------


def _pre(text: str | None, cls: str = "value") -> str:
    return f"<pre class={cls}>{e(text)}</pre>" if text is not None else ""


def run_summary(p: Page, data: dict[str, Any]) -> str:
    """The run page's summary, actions, streams, hooks and children (refreshed live)."""
    run = data["run"]
    base = p.base
    parts: list[str] = []
    problem = run["problem"]
    if problem is not None:
        parts.append(
            f"<div class=banner id=problem><strong>this run cannot advance: {e(problem['kind'])}"
            f"</strong><p>{e(problem['message'])}</p><small>recorded {e(problem['since'])}; "
            "it continues once its code can replay it</small></div>"
        )
    attrs = "".join(f"<span class=chip>{e(k)}={e(v)}</span>" for k, v in run["attributes"].items())
    facts = [
        ("status", f'<span class="badge {e(run["status"])}" id=status>{e(run["status"])}</span>'),
        ("workflow", e(run["workflow"])),
        ("key", e(run["key"] or "-")),
        ("attributes", attrs or "-"),
        ("created", e(run["created"])),
        ("finished", e(run["finished"] or "-")),
        ("duration", e(_duration(run["created_at"], run["finished_at"]))),
    ]
    if run["reason"]:
        facts.append(("reason", e(run["reason"])))
    parts.append(
        "<dl class=facts>" + "".join(f"<dt>{k}</dt><dd>{v}</dd>" for k, v in facts) + "</dl>"
    )
    parts.append(f"<details open><summary>arguments</summary>{_pre(run['args'])}</details>")
    if run["result"] is not None:
        parts.append(f"<details open><summary>result</summary>{_pre(run['result'])}</details>")
    if run["error"] is not None:
        error = run["error"]
        parts.append(
            f"<details open class=error><summary>error: {e(error['type'])}</summary>"
            f"{_pre(error['message'])}{_pre(error['traceback'], 'traceback')}</details>"
        )
    if not p.read_only:
        parts.append(_actions(p, data))
    streams = "".join(
        f'<li><button type=button class=watch data-stream="{e(s["name"])}">watch</button> '
        f"{e(s['name'])} <small>{s['chunks']} chunks, {s['bytes']:,} bytes"
        f"{', closed' if s['closed'] else ''}</small></li>"
        for s in data["streams"]
    )
    if streams:
        parts.append(f"<section><h2>streams</h2><ul class=streams>{streams}</ul>"
                     "<pre id=stream-view class=stream hidden></pre></section>")  # fmt: skip
    children = [lane for lane in data["lanes"] if lane["kind"] == "child"]
    if children:
        links = "".join(
            f'<li><a class=child href="{e(base)}/runs/{e(c["child"])}">{e(c["child"])}</a> '
            f'{e(c["label"])} <span class="badge {e(c["status"])}">{e(c["status"])}</span></li>'
            for c in children
        )
        parts.append(f"<section><h2>children</h2><ul>{links}</ul></section>")
    return "".join(parts)


def _actions(p: Page, data: dict[str, Any]) -> str:
    run = data["run"]
    csrf = f'<input type=hidden name=csrf value="{e(p.csrf)}">' if p.csrf else ""
    base = f"{p.base}/runs/{run['id']}"
    forms = []
    if run["status"] in _LIVE:
        forms.append(
            f'<form class=action method=post action="{e(base)}/cancel" '
            f'data-confirm="Cancel this run?">{csrf}<button id=cancel>cancel run</button></form>'
        )
    forms.append(
        f'<form class=action method=post action="{e(base)}/restart">{csrf}'
        "<button id=restart>start a new run with the same arguments</button></form>"
    )
    forms.extend(
        f'<form class="action hook" method=post action="{e(p.base)}/hooks/resume">{csrf}'
        f'<input type=hidden name=token value="{e(hook["token"])}">'
        f'<input type=hidden name=run value="{e(run["id"])}">'
        f"<label>hook <code>{e(hook['token'])}</code> payload (JSON)"
        "<textarea name=payload rows=2>null</textarea></label>"
        "<button>resume hook</button></form>"
        for hook in data["hooks"]
    )
    note = (
        ""
        if p.csrf
        else "<p class=note>Actions need the access token: open the URL with "
        "<code>?token=…</code> printed when the server started.</p>"
    )
    return f"<section class=actions><h2>actions</h2>{note}{''.join(forms)}</section>"


def run_page(p: Page, data: dict[str, Any]) -> bytes:
    run = data["run"]
    body = (
        f"<h1>run <code id=run-id>{e(run['id'])}</code></h1>"
        f"<div id=summary>{run_summary(p, data)}</div>"
        "<section class=timeline><h2>timeline</h2><div class=zoom>"
        '<button type=button id=zoom-out title="zoom out">&minus;</button>'
        "<button type=button id=zoom-reset>fit</button>"
        '<button type=button id=zoom-in title="zoom in">+</button></div>'
        "<div id=waterfall class=waterfall></div></section>"
        "<aside id=detail class=detail hidden></aside>"
        f'<script id=run-data type="application/json">{json_bytes(data).decode("utf-8")}</script>'
    )
    return page(p, "run", body, {"run": run["id"]})


def message_page(p: Page, title: str, message: str) -> bytes:
    return page(p, "message", f"<h1>{e(title)}</h1><p>{e(message)}</p>")
