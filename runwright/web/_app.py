"""The web view as one ASGI application over a runtime.

Routes (below wherever the application is mounted)::

    GET  /                          the runs list (filters and keyset paging in the query)
    GET  /runs/{id}                 a run: summary, waterfall, streams, actions
    GET  /api/runs?...              the runs list's rows and pager, as HTML in JSON
    GET  /api/runs/{id}             the run page's summary (HTML) and waterfall data
    GET  /api/runs/{id}/steps/{cid} a step's arguments and its attempts' results or errors
    GET  /runs/{id}/streams/{name}  a stream, live, as Server-Sent Events
    GET  /events[?run=ID]           which runs changed, as Server-Sent Events
    POST /runs/{id}/cancel          cancel the run
    POST /runs/{id}/restart         start a new run of its workflow with the same arguments
    POST /hooks/resume              resume hook ``token`` with the JSON ``payload``
    GET  /static/app.js, app.css    the page's script and style, from the package

Access
------
Reading is open to whoever reaches the server (``runwright ui`` listens on
127.0.0.1 unless told otherwise). Actions need the access token, which the
application makes at random (or is given) and ``runwright ui`` prints as a
URL, as Jupyter does: opening ``/?token=T`` sets an ``HttpOnly``,
``SameSite=Strict`` cookie and redirects to the same page without it. Each
action is a POST that must carry either ``Authorization: Bearer T`` (for
scripts) or the cookie **and** the CSRF value the page holds (in the
``X-Runwright-CSRF`` header, or a ``csrf`` form field), which is derived from
the token and so unknown to other sites; a request whose ``Origin`` is not
this server's, or that the browser marks ``Sec-Fetch-Site: cross-site``, is
refused whatever it carries. With ``read_only=True`` there are no actions at
all. ``allowed_hosts`` refuses requests for other host names (a defence
against DNS rebinding; ``runwright ui`` sets it to the address it binds).
"""

from __future__ import annotations

import datetime as dt
import hashlib
import hmac
import importlib.resources
import json
import secrets
import time
from typing import TYPE_CHECKING, Any
from urllib.parse import urlencode

import anyio

from .._exceptions import HookNotFound, RunNotFound
from .._streaming import check_name
from ..actors._identity import new_run_id
from ..asgi import stream_response
from ..journal._attributes import attributes_of
from ..journal._browse import runs_page
from ..journal._codec import DefaultCodec
from ..journal._events import Kind
from ..journal._json import from_json
from ..journal._states import RunStatus
from ._data import run_page_data, step_detail
from ._http import BadRequest, Receive, Request, Scope, Send, json_bytes, respond
from ._live import ChangeFeed
from ._pages import Page, Paging, message_page, pager, run_page, run_rows, run_summary
from ._pages import runs_page as render_runs

if TYPE_CHECKING:
    from .._runtime import Runtime

__all__ = ["PAGE_SIZE", "WebApp"]

#: Rows on one page of the runs list.
PAGE_SIZE = 50
_STATUSES = frozenset(status.value for status in RunStatus)
_STATIC = {"app.js": "text/javascript; charset=utf-8", "app.css": "text/css; charset=utf-8"}
_KEEPALIVE = 15.0


class WebApp:
    """The ASGI application :func:`runwright.web.app` returns."""

    def __init__(
        self,
        runtime: Runtime,
        *,
        read_only: bool,
        token: str | None,
        allowed_hosts: list[str] | None,
    ) -> None:
        self.runtime = runtime
        self.read_only = read_only
        #: The access token actions need (None when read-only).
        self.token: str | None = None if read_only else (token or secrets.token_urlsafe(32))
        self.allowed_hosts = None if allowed_hosts is None else {h.lower() for h in allowed_hosts}
        self._codec = DefaultCodec()
        self._feed: ChangeFeed | None = None
        self._static: dict[str, bytes] = {}
        digest = hashlib.sha256((self.token or "").encode()).hexdigest()
        self._cookie = f"runwright_{digest[:10]}"
        self._csrf = (
            None
            if self.token is None
            else hmac.new(self.token.encode(), b"runwright-csrf", hashlib.sha256).hexdigest()
        )

    def __repr__(self) -> str:
        return f"<runwright web app on {self.runtime.path}{' read-only' if self.read_only else ''}>"

    # -- ASGI ---------------------------------------------------------------------

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "lifespan":
            await _lifespan(receive, send)
            return
        if scope["type"] != "http":
            raise TypeError(f"the runwright web view answers HTTP requests, not {scope['type']!r}")
        request = Request(scope, receive)
        try:
            await self._route(request, send)
        except BadRequest as exc:
            await self._error(request, send, exc.status, str(exc))

    async def _error(self, request: Request, send: Send, status: int, message: str) -> None:
        if request.path.startswith("/api/") or request.method == "POST":
            body = json_bytes({"ok": False, "error": message})
            await respond(send, status, body, "application/json")
            return
        html = message_page(self._page(request, "error"), f"{status}", message)
        await respond(send, status, html, "text/html; charset=utf-8")

    def _page(self, request: Request, title: str) -> Page:
        csrf = self._csrf if self._signed_in(request) else None
        return Page(request.root, title, csrf=csrf, read_only=self.read_only)

    async def _route(self, request: Request, send: Send) -> None:
        self._check_host(request)
        path, method = request.path, request.method
        parts = [part for part in path.split("/") if part]
        if method == "POST":
            await self._action(request, send, parts)
            return
        if method not in ("GET", "HEAD"):
            raise BadRequest(f"{method} is not answered here", 405)
        if "token" in request.query:
            await self._sign_in(request, send)
            return
        if parts == []:
            await self._runs(request, send)
        elif parts[:1] == ["static"] and len(parts) == 2 and parts[1] in _STATIC:
            body = self._static.get(parts[1])
            if body is None:
                files = importlib.resources.files(__package__).joinpath("static", parts[1])
                body = self._static[parts[1]] = await anyio.to_thread.run_sync(files.read_bytes)
            await respond(send, 200, body, _STATIC[parts[1]])
        elif parts == ["events"]:
            await self._events(request, send)
        elif parts == ["api", "runs"]:
            await self._runs(request, send, fragment=True)
        elif len(parts) == 2 and parts[0] == "runs":
            await self._run(request, send, parts[1])
        elif len(parts) == 3 and parts[:2] == ["api", "runs"]:
            await self._run(request, send, parts[2], fragment=True)
        elif len(parts) == 5 and parts[:2] == ["api", "runs"] and parts[3] == "steps":
            await self._step(send, parts[2], parts[4])
        elif len(parts) >= 4 and parts[0] == "runs" and parts[2] == "streams":
            # The path arrives decoded: a name with "/" in it spans the rest.
            name = request.path.split("/streams/", 1)[1]
            await self._stream(request, send, parts[1], name)
        else:
            raise BadRequest(f"nothing at {path}", 404)

    # -- access ---------------------------------------------------------------------

    def _check_host(self, request: Request) -> None:
        if self.allowed_hosts is None:
            return
        host = request.headers.get("host", "").lower()
        name = host.rsplit(":", 1)[0] if not host.endswith("]") else host
        if host not in self.allowed_hosts and name not in self.allowed_hosts:
            raise BadRequest(f"this server does not answer for host {host!r}", 400)

    def _signed_in(self, request: Request) -> bool:
        cookie = request.cookies.get(self._cookie)
        return self.token is not None and cookie is not None and _same(cookie, self.token)

    async def _sign_in(self, request: Request, send: Send) -> None:
        given = request.query["token"]
        if self.token is None or not _same(given, self.token):
            raise BadRequest("that is not this server's access token", 403)
        rest = {k: v for k, v in request.query.items() if k != "token"}
        # One leading slash: "//host" would send the browser to another site.
        path = "/" + request.path.lstrip("/")
        location = request.root + path + (f"?{urlencode(rest)}" if rest else "")
        cookie = (
            f"{self._cookie}={self.token}; HttpOnly; SameSite=Strict; Path={request.root or '/'}"
        )
        headers = [(b"location", location.encode("utf-8")), (b"set-cookie", cookie.encode())]
        await respond(send, 303, b"", "text/plain", headers)

    def _authorize(self, request: Request, form: dict[str, str]) -> None:
        """Refuse an action unless it carries the token (and, from a page, the CSRF value)."""
        if self.read_only or self.token is None:
            raise BadRequest("this server is read-only: it takes no actions", 404)
        origin = request.headers.get("origin")
        if origin is not None:
            scheme = request.scope.get("scheme", "http")
            if origin.lower() != f"{scheme}://{request.headers.get('host', '')}".lower():
                raise BadRequest(f"refused: a request from another origin ({origin})", 403)
        if request.headers.get("sec-fetch-site", "same-origin") not in ("same-origin", "none"):
            raise BadRequest("refused: a request from another site", 403)
        bearer = request.headers.get("authorization", "")
        if bearer.lower().startswith("bearer ") and _same(bearer[7:].strip(), self.token):
            return
        if not self._signed_in(request):
            raise BadRequest(
                "refused: actions need the access token (open the URL with ?token=... that "
                "the server printed when it started)",
                403,
            )
        assert self._csrf is not None
        csrf = request.headers.get("x-runwright-csrf") or form.get("csrf", "")
        if not _same(csrf, self._csrf):
            raise BadRequest("refused: the request carries no valid CSRF value", 403)

    # -- pages ------------------------------------------------------------------------

    async def _runs(self, request: Request, send: Send, *, fragment: bool = False) -> None:
        started = time.perf_counter()
        query = request.query
        error = None
        try:
            filters = _filters(query)
        except BadRequest as exc:
            if fragment:
                raise
            error, filters = str(exc), {}

        def read(conn: Any) -> tuple[list[Any], bool, dict[str, dict[str, str]]]:
            # One row more than a page says whether there is another page that way.
            rows = runs_page(conn, limit=PAGE_SIZE + 1, **filters)
            more = len(rows) > PAGE_SIZE
            rows = rows[-PAGE_SIZE:] if "after" in filters else rows[:PAGE_SIZE]
            return rows, more, attributes_of(conn, [row.run_id for row in rows])

        rows, more, attributes = await self.runtime.journal.read(read)
        after = "after" in filters
        links = Paging(
            newest="before" in filters or after,
            newer="before" in filters or (after and more),
            older=(more and not after) or (after and bool(rows)),
        )
        p = self._page(request, "runs")
        timing = [
            (b"server-timing", f"app;dur={(time.perf_counter() - started) * 1000:.1f}".encode())
        ]
        if fragment:
            body = json_bytes(
                {
                    "rows": run_rows(p.base, rows, attributes),
                    "pager": pager(p.base, query, rows, links),
                }
            )
            await respond(send, 200, body, "application/json", timing)
            return
        html = render_runs(p, query, rows, attributes, links, error)
        await respond(send, 200, html, "text/html; charset=utf-8", timing)

    async def _run(
        self, request: Request, send: Send, run_id: str, *, fragment: bool = False
    ) -> None:
        data = await self.runtime.journal.read(lambda c: run_page_data(c, run_id, self._codec))
        if data is None:
            raise BadRequest(f"there is no run {run_id!r} in this journal", 404)
        p = self._page(request, f"run {run_id}")
        if fragment:
            body = json_bytes({"summary": run_summary(p, data), "data": data})
            await respond(send, 200, body, "application/json")
            return
        await respond(send, 200, run_page(p, data), "text/html; charset=utf-8")

    async def _step(self, send: Send, run_id: str, position: str) -> None:
        if not position.isdigit():
            raise BadRequest(f"a step's position is a number, got {position!r}", 404)
        cid = int(position)
        detail = await self.runtime.journal.read(lambda c: step_detail(c, run_id, cid, self._codec))
        if detail is None:
            raise BadRequest(f"run {run_id!r} has no step at position {cid}", 404)
        await respond(send, 200, json_bytes(detail), "application/json")

    async def _stream(self, request: Request, send: Send, run_id: str, name: str) -> None:
        try:
            check_name(name)
        except (TypeError, ValueError) as exc:
            raise BadRequest(str(exc), 400) from None
        await stream_response(self.runtime.get_run(run_id), name)(
            request.scope, request.receive, send
        )

    async def _events(self, request: Request, send: Send) -> None:
        """Which runs changed, as Server-Sent Events, until the client goes away."""
        if self._feed is None:
            self._feed = ChangeFeed(self.runtime.journal, watch=True)
        feed = self._feed
        # What was written before this read is covered by the first event ("look again");
        # what is written after it is news for this listener.
        await feed.read()
        listener = feed.add(request.query.get("run") or None)
        headers = [
            (b"content-type", b"text/event-stream"),
            (b"cache-control", b"no-cache"),
            (b"x-accel-buffering", b"no"),
        ]
        gone = False
        try:
            await send({"type": "http.response.start", "status": 200, "headers": headers})
            # Whatever changed between the page's read and this connection: look again.
            await _event(send, b"change", {"all": True})
            async with anyio.create_task_group() as tasks:

                async def until_gone() -> None:
                    nonlocal gone
                    while (await request.receive())["type"] != "http.disconnect":
                        pass
                    gone = True
                    tasks.cancel_scope.cancel()

                tasks.start_soon(until_gone)
                tasks.start_soon(feed.follow, lambda: gone)
                while True:
                    with anyio.move_on_after(_KEEPALIVE) as idle:
                        await listener.ready.wait()
                    if idle.cancelled_caught:
                        await send({"type": "http.response.body", "body": b": keepalive\n\n",
                                    "more_body": True})  # fmt: skip
                        continue
                    runs, everything = listener.take()
                    news = {"all": True} if everything else {"runs": sorted(runs)}
                    await _event(send, b"change", news)
        except OSError:
            pass  # the client went away while we wrote
        finally:
            feed.remove(listener)

    # -- actions --------------------------------------------------------------------

    async def _action(self, request: Request, send: Send, parts: list[str]) -> None:
        form = await request.form()
        self._authorize(request, form)
        runtime = self.runtime
        if len(parts) == 3 and parts[0] == "runs" and parts[2] == "cancel":
            handle = runtime.get_run(parts[1])
            try:
                await handle.cancel()
            except RunNotFound as exc:
                raise BadRequest(str(exc), 404) from None
            result: dict[str, Any] = {"ok": True, "message": "cancel requested", "run": parts[1]}
            back = f"/runs/{parts[1]}"
        elif len(parts) == 3 and parts[0] == "runs" and parts[2] == "restart":
            new_id = await self._restart(parts[1])
            result = {"ok": True, "message": f"started run {new_id}", "run": new_id}
            back = f"/runs/{new_id}"
        elif parts == ["hooks", "resume"]:
            token = form.get("token", "")
            payload = _payload(form.get("payload", "null"))
            try:
                await runtime.resume_hook(token, payload)
            except HookNotFound as exc:
                raise BadRequest(str(exc), 404) from None
            result = {"ok": True, "message": f"hook {token!r} resumed"}
            run_id = form.get("run", "")
            back = f"/runs/{run_id}" if run_id and "/" not in run_id else "/"
        else:
            raise BadRequest(f"no action at {request.path}", 404)
        if self._feed is not None:
            self._feed.poke()
        wants_json = "application/json" in request.headers.get("accept", "") or bool(
            request.headers.get("x-runwright-csrf")
        )
        if wants_json:
            await respond(send, 200, json_bytes(result), "application/json")
            return
        location = request.root + back
        await respond(send, 303, b"", "text/plain", [(b"location", location.encode("utf-8"))])

    async def _restart(self, run_id: str) -> str:
        """A new run of *run_id*'s workflow with the arguments it was started with, left
        pending for whichever process runs that workflow (this one, if it does)."""
        runtime = self.runtime

        def read(conn: Any) -> tuple[str, bytes] | None:
            row = conn.execute(
                "SELECT name, payload FROM events WHERE run_id = ? AND kind = ? "
                "ORDER BY seq LIMIT 1",
                (run_id, Kind.RUN_CREATED),
            ).fetchone()
            return None if row is None else (str(row[0]), bytes(row[1]))

        found = await runtime.journal.read(read)
        if found is None:
            raise BadRequest(f"there is no run {run_id!r} in this journal", 404)
        workflow, args = found
        new_id = new_run_id()
        lease = runtime.supervisor.lease_seconds
        at = runtime.clock.now()
        await runtime.journal.write(
            lambda tx: tx.create_run(
                new_id, workflow, args, at, key=None, owner=None, lease_seconds=lease
            )
        )
        runtime.supervisor.request_scan()
        return new_id


def _same(given: str, expected: str) -> bool:
    return hmac.compare_digest(given.encode("utf-8", "replace"), expected.encode("utf-8"))


def _payload(text: str) -> Any:
    try:
        return from_json(json.loads(text))
    except ValueError as exc:
        raise BadRequest(f"the hook payload is not JSON: {exc}") from None


def _filters(query: dict[str, str]) -> dict[str, Any]:
    """The runs list's filters from the page's query; a clear error for a bad one."""
    filters: dict[str, Any] = {}
    status = query.get("status", "").strip()
    if status:
        if status not in _STATUSES:
            raise BadRequest(f"unknown status {status!r}: one of {', '.join(sorted(_STATUSES))}")
        filters["status"] = status
    if query.get("workflow", "").strip():
        filters["workflow"] = query["workflow"].strip()
    attr = query.get("attr", "").strip()
    if attr:
        key, sep, value = attr.partition("=")
        if not sep or not key.strip():
            raise BadRequest(f"an attribute filter is key=value, got {attr!r}")
        filters["attribute"] = (key.strip(), value.strip())
    for name, option in (("from", "since"), ("to", "until")):
        text = query.get(name, "").strip()
        if text:
            filters[option] = _timestamp(text, name)
    if query.get("q", "").strip():
        filters["search"] = query["q"].strip()
    for name in ("before", "after"):
        cursor = query.get(name, "")
        if cursor:
            made, sep, run_id = cursor.partition("~")
            try:
                filters[name] = (float(made), run_id)
            except ValueError:
                raise BadRequest(f"not a page cursor: {cursor!r}") from None
            if not sep:
                raise BadRequest(f"not a page cursor: {cursor!r}")
    if "before" in filters and "after" in filters:
        raise BadRequest("a page is asked for by before= or after=, not both")
    return filters


def _timestamp(text: str, name: str) -> float:
    try:
        moment = dt.datetime.fromisoformat(text)
    except ValueError:
        raise BadRequest(
            f"{name}: not a date and time ({text!r}); use 2026-11-30T13:05 (UTC)"
        ) from None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=dt.UTC)
    return moment.timestamp()


async def _event(send: Send, name: bytes, data: Any) -> None:
    body = b"event: " + name + b"\ndata: " + json_bytes(data) + b"\n\n"
    await send({"type": "http.response.body", "body": body, "more_body": True})


async def _lifespan(receive: Receive, send: Send) -> None:
    """Served on its own (not mounted): nothing to set up; the runtime is the caller's."""
    while True:
        message = await receive()
        if message["type"] == "lifespan.startup":
            await send({"type": "lifespan.startup.complete"})
        elif message["type"] == "lifespan.shutdown":
            await send({"type": "lifespan.shutdown.complete"})
            return
