"""PostgreSQL journal addresses: ``postgresql://user:pass@host:port/db?schema=name``.

The ``schema`` query parameter (or the ``schema=`` option) names the schema
that holds the journal's tables, so several applications can share one
database; it is not passed on to the server. A URL is shown only with its
password replaced (:func:`redact`), in messages, logs and ``repr``.
"""

from __future__ import annotations

import re
import urllib.parse

__all__ = [
    "DEFAULT_SCHEMA",
    "PgTarget",
    "hide_password",
    "is_postgres_url",
    "parse",
    "redact",
    "validate_schema",
]

DEFAULT_SCHEMA = "runwright"
_SCHEMA_NAME = re.compile(r"[a-z_][a-z0-9_]{0,47}")
_SCHEMES = ("postgresql://", "postgres://")


def is_postgres_url(target: str) -> bool:
    return target.startswith(_SCHEMES)


def validate_schema(schema: str) -> str:
    """Return *schema* if it is a safe schema name, else raise ValueError."""
    if not isinstance(schema, str) or not _SCHEMA_NAME.fullmatch(schema):
        raise ValueError(
            f"schema must be 1-48 characters of lowercase letters, digits and underscores, "
            f"not starting with a digit; got {schema!r}"
        )
    return schema


def redact(url: str) -> str:
    """*url* with any password replaced by ``***`` (in the user info and in the query)."""
    parts = urllib.parse.urlsplit(url)
    netloc = parts.netloc
    if "@" in netloc:
        userinfo, _, hostport = netloc.rpartition("@")
        user, colon, _password = userinfo.partition(":")
        netloc = f"{user}{':***' if colon else ''}@{hostport}"
    query = [
        (k, "***" if k.lower() == "password" else v)
        for k, v in urllib.parse.parse_qsl(parts.query, keep_blank_values=True)
    ]
    return urllib.parse.urlunsplit(
        (parts.scheme, netloc, parts.path, urllib.parse.urlencode(query, safe="*"), "")
    )


class PgTarget:
    """A parsed journal URL: what to connect to, and which schema to use."""

    def __init__(self, url: str, schema: str | None = None) -> None:
        parts = urllib.parse.urlsplit(url)
        query = urllib.parse.parse_qsl(parts.query, keep_blank_values=True)
        from_url = [v for k, v in query if k == "schema"]
        if schema is not None and from_url and from_url[-1] != schema:
            raise ValueError(
                f"the URL names schema {from_url[-1]!r} and schema= names {schema!r}; name it once"
            )
        self.schema = validate_schema(
            schema if schema is not None else (from_url[-1] if from_url else DEFAULT_SCHEMA)
        )
        rest = [(k, v) for k, v in query if k != "schema"]
        #: What libpq gets: the URL without ``schema``.
        self.conninfo = urllib.parse.urlunsplit(
            (parts.scheme, parts.netloc, parts.path, urllib.parse.urlencode(rest), "")
        )
        #: How the journal is named in messages: no password, the schema shown.
        self.display = redact(self.conninfo) + f" (schema {self.schema})"

    def __repr__(self) -> str:
        return f"PgTarget({self.display!r})"


def parse(url: str, schema: str | None = None) -> PgTarget:
    return PgTarget(url, schema)


def hide_password(text: str, url: str) -> str:
    """*text* with the password of the PostgreSQL *url* replaced by ``***``, as written
    in the URL and decoded: a driver's error may quote the part it could not parse."""
    if not is_postgres_url(url):
        return text
    secrets = {secret for secret in _passwords(url) if secret}
    for secret in sorted(secrets, key=len, reverse=True):
        text = text.replace(secret, "***")
    return text


def _passwords(url: str) -> list[str]:
    parts = urllib.parse.urlsplit(url)
    found: list[str] = []
    if "@" in parts.netloc:
        userinfo = parts.netloc.rpartition("@")[0]
        _user, colon, password = userinfo.partition(":")
        if colon:
            found += [password, urllib.parse.unquote(password)]
    for field in parts.query.split("&"):
        key, _, value = field.partition("=")
        if urllib.parse.unquote_plus(key).lower() == "password":
            found += [value, urllib.parse.unquote_plus(value), urllib.parse.unquote(value)]
    return found
