"""InfluxQL over HTTP ``/query``: InfluxDB 1.x, and 2.x/3.x through their 1.x compatibility API.

For ``version`` 1 the database is ``database`` (with ``username``/``password`` as Basic
auth); for ``version`` 2 it is ``bucket`` (which InfluxDB 2.x resolves through a DBRP
mapping) with ``Authorization: Token``. Every failure becomes a :class:`QueryError` whose
message is one line naming the fix, without secrets.
"""

from __future__ import annotations

import json
import urllib.error
import urllib.parse
import urllib.request
from base64 import b64encode
from typing import Any, NamedTuple

from ..core.settings import Settings
from ..storages import redactor, server_message

# The writer ignores proxy variables, so the queries do too; HTTPS certificates are verified.
_OPENER = urllib.request.build_opener(urllib.request.ProxyHandler({}))


class QueryError(Exception):
    """A query that failed; the message is the one line to show."""


class Series(NamedTuple):
    """One series of a result: measurement, the GROUP BY tags, rows as dicts by column."""

    name: str
    tags: dict[str, str]
    rows: list[dict[str, Any]]


def quote_ident(name: str) -> str:
    """An InfluxQL identifier in double quotes."""
    return '"' + name.replace("\\", "\\\\").replace('"', '\\"') + '"'


def quote_string(value: str) -> str:
    """An InfluxQL string literal in single quotes."""
    return "'" + value.replace("\\", "\\\\").replace("'", "\\'") + "'"


class InfluxQL:
    """Runs InfluxQL statements against the database of ``settings``; times in ms."""

    def __init__(self, settings: Settings, timeout_s: float) -> None:
        self.url = settings.url
        self.v2 = settings.version == 2
        self.database = settings.bucket if self.v2 else settings.database
        self.retention_policy = "" if self.v2 else settings.retention_policy
        self._timeout_s = timeout_s
        self._headers = {"Accept": "application/json"}
        basic = ""
        if self.v2 and settings.token:
            self._headers["Authorization"] = f"Token {settings.token}"
        elif settings.username or settings.password:
            basic = b64encode(f"{settings.username}:{settings.password}".encode()).decode()
            self._headers["Authorization"] = f"Basic {basic}"
        self._redact = redactor(settings.token, settings.password, basic)

    def measurement(self, name: str) -> str:
        """``name`` quoted, qualified by the retention policy when one is configured."""
        if not self.retention_policy:
            return quote_ident(name)
        return ".".join(map(quote_ident, (self.database, self.retention_policy, name)))

    def query(self, *statements: str) -> list[list[Series]]:
        """The series of each statement, in order (one HTTP request)."""
        form = {"db": self.database, "q": ";\n".join(statements), "epoch": "ms"}
        payload = self._post(urllib.parse.urlencode(form).encode())
        results = payload.get("results") if isinstance(payload, dict) else None
        if not isinstance(results, list):
            raise QueryError(f"the answer of {self.url}/query is not an InfluxQL result")
        errors = [str(r["error"]) for r in results if "error" in r]
        if errors and len(statements) > 1 and set(errors) == {"not executed"}:
            # InfluxDB 1.x says only "not executed" for a batch on a missing database:
            # the first statement alone gives the cause.
            self.query(statements[0])
        if errors:
            raise QueryError(self._statement_error(errors[0]))
        out = []
        for result in results:
            out.append(
                [
                    Series(
                        s["name"],
                        s.get("tags") or {},
                        [dict(zip(s["columns"], row, strict=True)) for row in s["values"]],
                    )
                    for s in result.get("series", [])
                ]
            )
        return out

    def _post(self, body: bytes) -> Any:
        request = urllib.request.Request(
            f"{self.url}/query",
            data=body,
            headers={**self._headers, "Content-Type": "application/x-www-form-urlencoded"},
            method="POST",
        )
        try:
            with _OPENER.open(request, timeout=self._timeout_s) as answer:
                raw = answer.read()
        except urllib.error.HTTPError as exc:
            text = self._redact(server_message(exc.read()))
            exc.close()
            raise QueryError(self._status_error(exc.code, text)) from None
        except (urllib.error.URLError, OSError) as exc:
            reason = getattr(exc, "reason", exc)
            if isinstance(reason, TimeoutError):
                raise QueryError(
                    f"no answer from {self.url} within {self._timeout_s:g} s"
                ) from None
            text = getattr(reason, "strerror", None) or str(reason)
            raise QueryError(
                f"cannot reach {self.url}: {self._redact(text)} (check host, port and use_ssl)"
            ) from None
        try:
            return json.loads(raw)
        except ValueError:
            raise QueryError(
                f"the answer of {self.url}/query is not JSON: is this InfluxDB?"
            ) from None

    def _status_error(self, status: int, text: str) -> str:
        if status == 401:
            what = "the token" if self.v2 else "username/password"
            return f"authentication failed (401) at {self.url}: check {what}"
        if status == 403:
            return f"not allowed to read {self._where()} (403)"
        if status == 404 and self.v2:
            return (
                f"no InfluxQL /query at {self.url} (404): the report needs InfluxDB 1.x or the "
                "1.x compatibility API of InfluxDB 2.x/3.x"
            )
        if status == 404:
            return f"no InfluxQL /query at {self.url} (404): is this InfluxDB 1.x?"
        return f"InfluxDB answered {status}: {text}"

    def _statement_error(self, text: str) -> str:
        text = self._redact(text)
        if text.startswith(("database not found", "retention policy not found")):
            fix = (
                "map the bucket to a database with a DBRP mapping (see the README)"
                if self.v2
                else "check `database` and `retention_policy` in the config"
            )
            return f"{self._where()} not found at {self.url}: {fix}"
        return f"InfluxDB query failed: {text}"

    def _where(self) -> str:
        if self.v2:
            return f"bucket {self.database!r}"
        rp = f", retention policy {self.retention_policy!r}" if self.retention_policy else ""
        return f"database {self.database!r}{rp}"
