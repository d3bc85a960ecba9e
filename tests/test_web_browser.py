"""The web view in a real browser: headless Chromium (Debian's ``chromium``) driven by
Playwright, against ``runwright ui`` serving a real journal from another process.

It clicks through the runs list, a run, a span, a stream and a child run; cancels a
run with the access token, and is refused without it; the cancelled run's page
changes by itself (pushed over SSE); resumes a hook with a JSON payload and starts a
run again with the same arguments. A screenshot of each page is saved in the test's
temporary directory, and any JavaScript error in the console fails the test.

The server is the ``runwright ui`` command as a subprocess, on the same event loop
(``--backend``) as the test, so both loops and both journals are covered; the runs are
driven by a runtime in the test process, so every change the pages see crossed
processes through the journal's watcher.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
from pathlib import Path
from typing import Any

import anyio
import pytest
import web_flows as flows

import runwright as rw
from runwright.testing import FakeClock, skip_time

pytestmark = [
    pytest.mark.anyio,
    pytest.mark.skipif(
        shutil.which("chromium") is None and not os.path.exists("/usr/bin/chromium"),
        reason="needs Debian's chromium (.ci/run installs it)",
    ),
]

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
    "--disable-component-update", "--disable-sync", "--no-first-run",
]  # fmt: skip
#: The console message of a refused action's response (a 403 is what the test expects).
REFUSED = "Failed to load resource: the server responded with a status of 403"


def start_server(db: str, backend: str) -> tuple[subprocess.Popen[str], str, str]:
    """``runwright ui`` on a free port: the process, its base URL and its token URL."""
    server = subprocess.Popen(
        [sys.executable, "-m", "runwright._cli", "ui", "--db", db, "--port", "0",
         "--backend", backend],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )  # fmt: skip
    assert server.stdout is not None
    first = server.stdout.readline()
    second = server.stdout.readline()
    if " at http://" not in first or "?token=" not in second:
        server.kill()
        raise AssertionError(f"runwright ui did not start: {first!r} {server.stderr.read()!r}")
    base = first.rsplit(" at ", 1)[1].strip().rstrip("/")
    token_url = second.split("open ", 1)[1].split(" ", 1)[0]
    return server, base, token_url


def stop_server(server: subprocess.Popen[str]) -> str:
    server.send_signal(signal.SIGINT)
    try:
        _, err = server.communicate(timeout=15)
    except subprocess.TimeoutExpired:
        server.kill()
        raise
    assert server.returncode == 0, err
    return err


def browse(base: str, token_url: str, ids: dict[str, str], shots: Path) -> dict[str, list[str]]:
    """Click through the pages; return each browser context's console errors."""
    from playwright.sync_api import expect, sync_playwright

    errors: dict[str, list[str]] = {"operator": [], "stranger": []}

    def watch(page: Any, who: str) -> None:
        page.on("console", lambda m: errors[who].append(m.text) if m.type == "error" else None)
        page.on("pageerror", lambda exc: errors[who].append(f"uncaught: {exc}"))
        page.on("dialog", lambda dialog: dialog.accept())
        page.set_default_timeout(15_000)

    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        try:
            operator = browser.new_page(viewport={"width": 1280, "height": 900})
            watch(operator, "operator")
            # Sign in: the token URL sets the cookie and leads to the runs list.
            operator.goto(token_url)
            assert operator.url == f"{base}/"
            expect(operator.locator("#mode")).to_have_text("signed in")
            expect(operator.locator("#live")).to_have_class("live on")
            expect(operator.locator(f'tr[data-run="{ids["shop"]}"]')).to_be_visible()
            operator.screenshot(path=shots / "runs.png", full_page=True)
            # Filter by attribute: the one run with customer=c-17 (and its child has none).
            operator.fill("input[name=attr]", "customer=c-17")
            operator.click("button[type=submit]")
            expect(operator.locator("#runs-body tr")).to_have_count(1)
            operator.screenshot(path=shots / "runs-filtered.png", full_page=True)
            # List -> run.
            operator.click(f'a[href="/runs/{ids["shop"]}"]')
            expect(operator.locator("#run-id")).to_have_text(ids["shop"])
            expect(operator.locator(".waterfall .span.step")).to_have_count(3)
            expect(operator.locator(".waterfall .span.sleep")).to_have_count(1)
            expect(operator.locator(".waterfall .mark.patched")).to_have_count(1)
            operator.screenshot(path=shots / "run.png", full_page=True)
            # Run -> span: the failed first attempt of charge, with its traceback.
            operator.click(".waterfall .span.step.retrying")
            detail = operator.locator("#detail")
            expect(detail).to_contain_text("card declined for <b>o-1</b>")
            expect(detail.locator("pre.traceback")).to_contain_text("Traceback")
            expect(detail).to_contain_text('"receipt": "r-o-1"')
            operator.screenshot(path=shots / "span.png", full_page=True)
            operator.click("#detail .close")
            operator.click("#zoom-in")
            operator.click("#zoom-reset")
            # Run -> stream, watched live until its end.
            operator.click('button.watch[data-stream="log"]')
            view = operator.locator("#stream-view")
            expect(view).to_contain_text("line 2 of o-1")
            expect(view).to_have_attribute("data-ended", "closed")
            operator.screenshot(path=shots / "stream.png", full_page=True)
            # Run -> child.
            operator.click("a.child >> nth=0")
            expect(operator.locator("#run-id")).to_have_text(f"{ids['shop']}.4")
            operator.screenshot(path=shots / "child.png", full_page=True)
            # The failed run's page: the error and its traceback, escaped.
            operator.goto(f"{base}/runs/{ids['fails']}")
            expect(operator.locator("details.error pre.traceback")).to_contain_text("ValueError")
            error = operator.locator("details.error")
            expect(error).to_contain_text("<img src=x onerror=alert(1)>")  # text, not markup

            # Without the token, cancelling is refused (the run goes on).
            stranger = browser.new_context().new_page()
            watch(stranger, "stranger")
            stranger.goto(f"{base}/runs/{ids['waits']}")
            expect(stranger.locator("#mode")).to_have_text("read access")
            stranger.click("#cancel")
            expect(stranger.locator("#toast")).to_contain_text("refused")
            expect(stranger.locator("#status")).to_have_text("running")
            stranger.screenshot(path=shots / "refused.png", full_page=True)

            # With it, the run is cancelled, and its page shows so by itself.
            operator.goto(f"{base}/runs/{ids['waits']}")
            expect(operator.locator("#live")).to_have_class("live on")
            expect(operator.locator("#status")).to_have_text("running")
            operator.click("#cancel")
            expect(operator.locator("#toast")).to_contain_text("cancel requested")
            expect(operator.locator("#status")).to_have_text("cancelled")
            # ... and so does the stranger's page, which was not reloaded.
            expect(stranger.locator("#status")).to_have_text("cancelled")
            operator.screenshot(path=shots / "cancelled.png", full_page=True)

            # Resume a hook with a JSON payload; the run completes with it.
            operator.goto(f"{base}/runs/{ids['answers']}")
            operator.fill("form.hook textarea[name=payload]", '{"by": "ana"}')
            operator.click("form.hook button")
            expect(operator.locator("#toast")).to_contain_text("resumed")
            expect(operator.locator("#status")).to_have_text("completed")
            expect(operator.locator("details pre.value >> nth=1")).to_contain_text('"by": "ana"')
            # Start it again with the same arguments: the new run's page.
            operator.click("#restart")
            expect(operator.locator("#run-id")).not_to_have_text(ids["answers"])
            expect(operator.locator("#summary")).to_contain_text("browser-answer")
            errors["restarted"] = [operator.locator("#run-id").inner_text()]
            operator.screenshot(path=shots / "restarted.png", full_page=True)
        finally:
            browser.close()
    return errors


async def test_the_web_view_in_a_browser(
    db_path: Path | str, tmp_path: Path, anyio_backend: str
) -> None:
    async with rw.Runtime(db_path, clock=FakeClock(), synchronous="NORMAL") as runtime:
        flows.ATTEMPTS.clear()
        async with skip_time(runtime):
            shop = await runtime.start(flows.shop, "o-1")
            assert await shop.result(timeout=10, raise_on_problem=True) == "done"
        fails = await runtime.start(flows.fails, "<img src=x onerror=alert(1)>")
        with pytest.raises(rw.RunFailed):
            await fails.result(timeout=10)
        waits = await runtime.start(flows.waits, "browser-hook")
        answers = await runtime.start(flows.waits, "browser-answer")
        ids = {"shop": shop.id, "fails": fails.id, "waits": waits.id, "answers": answers.id}
        server, base, token_url = await anyio.to_thread.run_sync(
            start_server, str(db_path), anyio_backend
        )
        try:
            errors = await anyio.to_thread.run_sync(browse, base, token_url, ids, tmp_path)
        finally:
            stopped = await anyio.to_thread.run_sync(stop_server, server)
        with pytest.raises(rw.RunCancelled):
            await waits.result(timeout=10)
        assert await answers.result(timeout=10) == {"by": "ana"}
        (restarted,) = errors.pop("restarted")
        again = runtime.get_run(restarted)
        await runtime.resume_hook("browser-answer", "second")
        assert await again.result(timeout=10) == "second"
    assert "runwright ui: stopped" in stopped
    assert errors["operator"] == []
    assert [e for e in errors["stranger"] if not e.startswith(REFUSED)] == []
    assert len(errors["stranger"]) == 1  # the refused cancel's response, and nothing else
    shown = ("runs", "runs-filtered", "run", "span", "stream", "child", "refused", "cancelled")
    for name in (*shown, "restarted"):
        assert (tmp_path / f"{name}.png").stat().st_size > 1000, name
