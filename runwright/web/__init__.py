"""A live web view of a journal's runs, as an ASGI application.

``runwright ui --db ...`` serves it; :func:`app` gives it to mount in a
service of your own::

    from runwright.web import app
    service.mount("/runwright", app(runtime, read_only=True))

Pages are HTML rendered here plus one small script and one stylesheet from
this package (no CDN, no build step). See :mod:`runwright.web._app` for the
routes and how actions are protected, and ``docs/decisions/0017-web-view.md``
for the choices.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from ._app import PAGE_SIZE, WebApp

if TYPE_CHECKING:
    from .._runtime import Runtime

__all__ = ["PAGE_SIZE", "WebApp", "app"]


def app(
    runtime: Runtime,
    *,
    read_only: bool = False,
    token: str | None = None,
    allowed_hosts: list[str] | None = None,
) -> WebApp:
    """An ASGI application showing *runtime*'s journal: runs, their timelines and streams.

    *runtime* must be open while the application serves (enter it in your
    service's lifespan). Unless *read_only*, it offers actions (cancel a run,
    resume a hook, start a run again) to whoever holds the access token:
    *token*, or a random one, in ``app(...).token``; open ``/?token=...`` once
    in a browser to act from the pages. *allowed_hosts* (host names, with or
    without a port) refuses requests addressed to any other host.
    """
    from .._runtime import Runtime

    if not isinstance(runtime, Runtime):
        raise TypeError(f"runwright.web.app() needs a rw.Runtime, got {runtime!r}")
    if token is not None and (not isinstance(token, str) or len(token) < 16):
        raise ValueError("an access token must be a str of at least 16 characters")
    return WebApp(runtime, read_only=read_only, token=token, allowed_hosts=allowed_hosts)
