"""The web view without a browser: httpx against the ASGI application (pages, filters,
keyset paging, escaping, token and CSRF checks, actions), and its live feed over a real
hypercorn server on the test's event loop."""

from __future__ import annotations

import contextlib
import json
import re
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import anyio
import httpx
import pytest
import web_flows as flows
from conftest import query_journal, resume_when_live

import runwright as rw
from runwright.web import app

pytestmark = pytest.mark.anyio

TOKEN = "t" * 20 + "-test-token"


@rw.workflow
async def quick(n: int) -> int:
    rw.set_attribute("parity", "even" if n % 2 == 0 else "odd")
    return n


@rw.workflow
async def labelled(text: str) -> None:
    rw.set_attribute(f"<k>{text}", text)


@rw.step
async def big(size: int) -> bytes:
    return b"x" * size


@rw.workflow
async def returns_big(size: int) -> int:
    return len(await big(size))


def client_of(web: Any, **headers: str) -> httpx.AsyncClient:
    return httpx.AsyncClient(
        transport=httpx.ASGITransport(app=web), base_url="http://testserver", headers=headers
    )


async def signed_in(web: Any) -> tuple[httpx.AsyncClient, str]:
    """A client holding the sign-in cookie, and the CSRF value its pages carry."""
    client = client_of(web)
    answer = await client.get(f"/?token={TOKEN}")
    assert answer.status_code == 303
    assert answer.headers["location"] == "/"
    cookie = answer.headers["set-cookie"]
    assert "HttpOnly" in cookie
    assert "SameSite=Strict" in cookie
    page = await client.get("/")
    found = re.search(r'<meta name="rw-csrf" content="([0-9a-f]+)">', page.text)
    assert found is not None
    return client, found.group(1)


def rows_of(html: str) -> list[str]:
    return re.findall(r'<tr data-run="([^"]+)">', html)


async def test_pages_escape_what_runs_hold(make_runtime: Callable[..., rw.Runtime]):
    nasty = "<script>alert('x')</script>"
    async with make_runtime() as runtime:
        run = await runtime.start(flows.fails, nasty)
        with pytest.raises(rw.RunFailed):
            await run.result(timeout=10)
        keyed = await runtime.start(quick, 2, key=f"<b>{nasty}")
        await keyed.result(timeout=10)
        label = await runtime.start(labelled, nasty)
        await label.result(timeout=10)
        async with client_of(app(runtime)) as client:
            listing = await client.get("/")
            page = await client.get(f"/runs/{run.id}")
            summary = await client.get(f"/api/runs/{run.id}")
            step = await client.get(f"/api/runs/{run.id}/steps/0")
            labels = await client.get(f"/runs/{label.id}")
    for html in (listing.text, page.text, json.loads(summary.text)["summary"], labels.text):
        assert "<script>alert" not in html
        assert "<k>" not in html
    chip = "&lt;k&gt;&lt;script&gt;alert(&#x27;x&#x27;)&lt;/script&gt;=&lt;script&gt;"
    assert f"<span class=chip>{chip}" in listing.text
    assert f"<span class=chip>{chip}" in labels.text
    assert "&lt;b&gt;&lt;script&gt;alert(&#x27;x&#x27;)&lt;/script&gt;" in listing.text
    assert "ValueError" in page.text
    assert "&lt;script&gt;alert(&#x27;x&#x27;)&lt;/script&gt;" in page.text
    # The embedded JSON cannot close its <script> element.
    embedded = page.text.split('<script id=run-data type="application/json">', 1)[1]
    assert "</script>" not in embedded.split("</script>", 1)[0]
    assert "\\u003cscript\\u003e" in embedded
    assert page.headers["content-security-policy"].startswith("default-src 'none'")
    detail = step.json()
    assert detail["attempts"][0]["error"]["type"] == "builtins:ValueError"
    assert "Traceback" in detail["attempts"][0]["error"]["traceback"]
    # Every attempt tells when it started, the first one (claimed with its step) too.
    assert all(attempt["started"] for attempt in detail["attempts"])


async def test_the_runs_list_pages_by_keyset_and_filters(
    make_runtime: Callable[..., rw.Runtime], db_path: Path | str
):
    async with make_runtime() as runtime:
        runs = [await runtime.start(quick, n, key=f"k-{n}") for n in range(120)]
        for run in runs:
            await run.result(timeout=10)
        failing = await runtime.start(flows.fails, "no")
        with pytest.raises(rw.RunFailed):
            await failing.result(timeout=10)
        async with client_of(app(runtime)) as client:

            def link(html: str, name: str) -> str | None:
                found = re.search(rf'<a id={name} href="([^"]+)"', html)
                return None if found is None else found.group(1).replace("&amp;", "&")

            pages: list[list[str]] = []
            url: str | None = "/?workflow=" + quick.name
            while url is not None and len(pages) < 5:
                page = await client.get(url)
                assert page.status_code == 200
                assert "server-timing" in page.headers
                pages.append(rows_of(page.text))
                url = link(page.text, "next")
            assert [len(rows) for rows in pages] == [50, 50, 20]
            seen = [run_id for rows in pages for run_id in rows]
            # Back again, newer page by newer page, to the newest.
            back = [pages[-1]]
            url = link(page.text, "previous")
            while url is not None:
                page = await client.get(url)
                back.append(rows_of(page.text))
                url = link(page.text, "previous")
            assert back == pages[::-1]
            assert link(page.text, "first") is not None
            newest_first = [
                run_id
                for (run_id,) in query_journal(
                    db_path,
                    "SELECT run_id FROM runs WHERE workflow = ? "
                    "ORDER BY created_at DESC, run_id DESC",
                    (quick.name,),
                )
            ]
            assert seen == newest_first
            assert len(seen) == 120

            async def ids(query: str) -> list[str]:
                answer = await client.get(f"/api/runs?{query}")
                assert answer.status_code == 200, answer.text
                return rows_of(answer.json()["rows"])

            assert await ids("status=failed") == [failing.id]
            odd = await ids("attr=parity%3Dodd")
            assert len(odd) == 50
            assert set(odd) <= {r.id for n, r in enumerate(runs) if n % 2}
            assert await ids("attr=parity%3Dodd&q=k-7") == [runs[7].id]
            assert await ids(f"q={runs[3].id}") == [runs[3].id]
            assert await ids("q=k-4") == [runs[4].id]
            assert await ids("q=nothing") == []
            assert await ids("to=2000-01-01T00:00") == []
            assert len(await ids("from=2000-01-01T00:00")) == 50
            bad = await client.get("/api/runs?status=sleeping")
            assert bad.status_code == 400
            assert "unknown status 'sleeping'" in bad.json()["error"]
            bad = await client.get("/api/runs?attr=nokey")
            assert "an attribute filter is key=value" in bad.json()["error"]
            shown = await client.get("/?from=yesterday")
            assert shown.status_code == 200
            assert "from: not a date and time" in shown.text


async def test_actions_need_the_token_and_a_csrf_value(make_runtime: Callable[..., rw.Runtime]):
    async with make_runtime() as runtime:
        run = await runtime.start(flows.waits, "hook-a")
        web = app(runtime, token=TOKEN)
        cancel = f"/runs/{run.id}/cancel"
        async with client_of(web) as anonymous:
            refused = await anonymous.post(cancel)
            assert refused.status_code == 403
            assert "actions need the access token" in refused.json()["error"]
            assert (await anonymous.get("/?token=wrong-token")).status_code == 403
            page = await anonymous.get(f"/runs/{run.id}")
            assert "Actions need the access token" in page.text
            assert "rw-csrf" not in page.text
        async with client_of(web) as other:
            # Signing in never sends the browser to another site.
            away = await other.get(f"http://testserver//evil.example/?token={TOKEN}&status=running")
            assert away.headers["location"] == "/evil.example/?status=running"
        client, csrf = await signed_in(web)
        async with contextlib.aclosing(client):
            # The cookie alone is what another site's form would carry: refused.
            assert (await client.post(cancel)).status_code == 403
            wrong = await client.post(cancel, headers={"X-Runwright-CSRF": "0" * 64})
            assert wrong.status_code == 403
            assert "no valid CSRF value" in wrong.json()["error"]
            foreign = await client.post(
                cancel, headers={"X-Runwright-CSRF": csrf, "Origin": "http://evil.example"}
            )
            assert foreign.status_code == 403
            assert "another origin" in foreign.json()["error"]
            cross = await client.post(
                cancel, headers={"X-Runwright-CSRF": csrf, "Sec-Fetch-Site": "cross-site"}
            )
            assert cross.status_code == 403
            assert await run.status() == rw.RunStatus.RUNNING
            # A plain form post (no script) carries the value as a field, and is sent back.
            done = await client.post(cancel, data={"csrf": csrf})
            assert done.status_code == 303
            assert done.headers["location"] == f"/runs/{run.id}"
        with pytest.raises(rw.RunCancelled):
            await run.result(timeout=10)


async def test_a_script_acts_with_the_bearer_token(
    make_runtime: Callable[..., rw.Runtime], db_path: Path | str
):
    async with make_runtime() as runtime:
        run = await runtime.start(flows.waits, "hook-b")
        web = app(runtime, token=TOKEN)
        async with client_of(web, authorization=f"Bearer {TOKEN}") as client:
            with anyio.fail_after(10):
                while not await anyio.to_thread.run_sync(  # noqa: ASYNC110
                    query_journal, db_path, "SELECT token FROM hooks"
                ):
                    await anyio.sleep(0.005)
            page = await client.get(f"/runs/{run.id}")
            assert 'name=token value="hook-b"' in page.text
            bad = await client.post("/hooks/resume", json={"token": "hook-b", "payload": "{"})
            assert bad.status_code == 400
            assert "not JSON" in bad.json()["error"]
            missing = await client.post("/hooks/resume", json={"token": "nope", "payload": "1"})
            assert missing.status_code == 404
            answer = await client.post(
                "/hooks/resume",
                json={"token": "hook-b", "payload": '{"by": "ana", "at": {"$t": [1, 2]}}'},
                headers={"accept": "application/json"},
            )
            assert answer.json() == {"ok": True, "message": "hook 'hook-b' resumed"}
            assert await run.result(timeout=10) == {"by": "ana", "at": (1, 2)}
            gone = await client.post("/hooks/resume", data={"token": "hook-b", "run": run.id})
            assert gone.status_code == 404  # the hook was disposed with its run's end
            again = await client.post(
                f"/runs/{run.id}/restart", headers={"accept": "application/json"}
            )
            new_id = again.json()["run"]
            assert new_id != run.id
            unknown = await client.post("/runs/nope/restart")
            assert unknown.status_code == 404
        second = runtime.get_run(new_id)
        await resume_when_live(runtime, "hook-b", "again")
        assert await second.result(timeout=10) == "again"


async def test_read_only_offers_no_actions(make_runtime: Callable[..., rw.Runtime]):
    async with make_runtime() as runtime:
        run = await runtime.start(flows.waits, "hook-c")
        web = app(runtime, read_only=True)
        assert web.token is None
        async with client_of(web) as client:
            page = await client.get(f"/runs/{run.id}")
            assert "<form class=action" not in page.text
            answer = await client.post(f"/runs/{run.id}/cancel")
            assert answer.status_code == 404
            assert "read-only" in answer.json()["error"]
            assert (await client.get(f"/?token={TOKEN}")).status_code == 403
        await run.cancel()


async def test_other_hosts_are_refused(make_runtime: Callable[..., rw.Runtime]):
    async with make_runtime() as runtime:
        web = app(runtime, allowed_hosts=["127.0.0.1", "localhost"])
        async with httpx.AsyncClient(
            transport=httpx.ASGITransport(app=web), base_url="http://localhost:8233"
        ) as client:
            assert (await client.get("/")).status_code == 200
            evil = await client.get("/", headers={"host": "evil.example:8233"})
            assert evil.status_code == 400
            assert "does not answer for host" in evil.text


async def test_large_values_are_shown_by_their_size(make_runtime: Callable[..., rw.Runtime]):
    async with make_runtime() as runtime:
        run = await runtime.start(returns_big, 400_000)
        assert await run.result(timeout=10) == 400_000
        async with client_of(app(runtime, read_only=True)) as client:
            detail = (await client.get(f"/api/runs/{run.id}/steps/0")).json()
            missing = await client.get(f"/api/runs/{run.id}/steps/7")
            nowhere = await client.get("/runs/none")
    result = json.loads(detail["attempts"][0]["result"])
    assert result == {"$omitted": {"type": "bytes", "size": 400_000}}
    assert missing.status_code == 404
    assert nowhere.status_code == 404
    assert "there is no run &#x27;none&#x27;" in nowhere.text


@contextlib.asynccontextmanager
async def listening(web: Any, path: str) -> AsyncIterator[AsyncIterator[dict[str, Any]]]:
    """A GET of *path* (Server-Sent Events) made straight to the ASGI application, as a
    server would make it: yields the ``data`` of each event; leaving disconnects."""
    gone = anyio.Event()
    sent, received = anyio.create_memory_object_stream[bytes](100)
    path, _, query = path.partition("?")
    scope = {
        "type": "http", "method": "GET", "path": path, "root_path": "",
        "query_string": query.encode(), "headers": [(b"host", b"testserver")],
    }  # fmt: skip

    async def receive() -> dict[str, Any]:
        await gone.wait()
        return {"type": "http.disconnect"}

    async def send(message: Any) -> None:
        if message["type"] == "http.response.start":
            assert message["status"] == 200
        elif message.get("body"):
            await sent.send(message["body"])

    async def events() -> AsyncIterator[dict[str, Any]]:
        async for body in received:
            for block in body.decode().split("\n\n"):
                for line in block.splitlines():
                    if line.startswith("data: "):
                        yield json.loads(line[6:])

    with sent, received:
        async with anyio.create_task_group() as tasks:
            tasks.start_soon(web, scope, receive, send)
            reader = events()
            try:
                yield reader
            finally:
                gone.set()
                await reader.aclose()  # type: ignore[attr-defined]


async def test_pages_hear_of_changes_as_they_are_written(
    make_runtime: Callable[..., rw.Runtime],
):
    """The live feed names each run whose events were written, from this process's own
    writes (an app mounted in a service that runs workflows) as from others'; a run's
    page hears of its own run only."""
    async with make_runtime() as runtime:
        web = app(runtime, read_only=True)
        async with listening(web, "/events") as news:
            assert await anext(news) == {"all": True}  # look again: what changed meanwhile
            run = await runtime.start(quick, 3)
            await run.result(timeout=10)
            with anyio.fail_after(10):
                while run.id not in (await anext(news)).get("runs", []):
                    pass
        waiting = await runtime.start(flows.waits, "live-hook")  # it and its hook are written
        async with listening(web, f"/events?run={waiting.id}") as news:
            assert await anext(news) == {"all": True}
            other = await runtime.start(quick, 5)  # another run: not news for this page
            await other.result(timeout=10)
            await waiting.cancel()
            with anyio.fail_after(10):
                assert await anext(news) == {"runs": [waiting.id]}
        with pytest.raises(rw.RunCancelled):
            await waiting.result(timeout=10)
        async with client_of(web) as client:
            page = await client.get(f"/runs/{waiting.id}")
        assert "id=status>cancelled</span>" in page.text


async def test_a_stuck_run_shows_why(make_runtime: Callable[..., rw.Runtime]):
    """A run no process can advance (here: its workflow is not registered) has the
    problem banner on its page and a badge in the list."""
    async with make_runtime() as runtime:
        web = app(runtime, token=TOKEN)
        async with client_of(web, authorization=f"Bearer {TOKEN}") as client:
            run = await runtime.start(quick, 1)
            await run.result(timeout=10)
            # A run of a workflow this process does not know, as another service's would be.
            await runtime.journal.write(
                lambda tx: tx.create_run(
                    "stuck-run", "elsewhere.flow", b"", 0.0, key=None, owner=None,
                    lease_seconds=30.0,
                )
            )  # fmt: skip
            runtime.supervisor.request_scan()
            with anyio.fail_after(10):
                while (await runtime.get_run("stuck-run").summary()).problem is None:  # noqa: ASYNC110
                    await anyio.sleep(0.005)
            page = await client.get("/runs/stuck-run")
            listing = await client.get("/?q=stuck-run")
    assert (
        "<div class=banner id=problem><strong>this run cannot advance: unknown_workflow"
        in page.text
    )
    assert "elsewhere.flow" in page.text
    assert '<span class="badge problem">unknown_workflow</span>' in listing.text


def test_runwright_ui_refuses_what_it_cannot_serve(tmp_path: Path, capsys: Any):
    from runwright._cli import main

    missing = tmp_path / "missing.db"
    assert main(["ui", "--db", str(missing)]) == 1
    assert f"no runwright database at {missing}" in capsys.readouterr().err
    assert not missing.exists()
    assert main(["ui", "--db", str(missing), "--port", "70000"]) == 1


def test_runwright_ui_says_what_to_install(tmp_path: Path, capsys: Any, monkeypatch: Any):
    import sys

    from runwright._cli import main

    monkeypatch.setitem(sys.modules, "hypercorn.config", None)  # as if not installed
    assert main(["ui", "--db", str(tmp_path / "j.db")]) == 1
    assert "pip install 'runwright[ui]'" in capsys.readouterr().err


def test_runwright_ui_read_only_serves_pages_and_no_actions(db_path: Path | str):
    import signal
    import subprocess
    import sys
    import urllib.error
    import urllib.request

    assert main_db_migrate(db_path) == 0
    server = subprocess.Popen(
        [sys.executable, "-m", "runwright._cli", "ui", "--db", str(db_path), "--port", "0",
         "--read-only"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    try:
        assert server.stdout is not None
        line = server.stdout.readline()
        assert ", read-only, at http://127.0.0.1:" in line, line
        url = line.rsplit(" at ", 1)[1].strip()
        with urllib.request.urlopen(url, timeout=10) as page:
            assert "no runs match" in page.read().decode()
        post = urllib.request.Request(f"{url}runs/x/cancel", data=b"", method="POST")
        with pytest.raises(urllib.error.HTTPError) as refused:
            urllib.request.urlopen(post, timeout=10)
        refused.value.close()
        assert refused.value.code == 404
        rebound = urllib.request.Request(url, headers={"Host": "evil.example"})
        with pytest.raises(urllib.error.HTTPError) as wrong_host:
            urllib.request.urlopen(rebound, timeout=10)
        wrong_host.value.close()
        assert wrong_host.value.code == 400
    finally:
        server.send_signal(signal.SIGINT)
        _, err = server.communicate(timeout=15)
    assert server.returncode == 0, err
    assert "runwright ui: stopped" in err


def main_db_migrate(db: Path | str) -> int:
    from runwright._cli import main

    return main(["db", "migrate", "--db", str(db)])
