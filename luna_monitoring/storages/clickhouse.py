"""ClickHouse transport: ``INSERT ... FORMAT JSONEachRow`` over the HTTP interface (aiohttp).

A body holds the lines of :class:`~.clickhouse_rows.RowEncoder`; each table's rows go in one
``POST /?query=INSERT INTO db.table FORMAT JSONEachRow`` (gzip-compressed as for InfluxDB),
several tables at once: each insert makes a part of 15-50 files (one per column stream),
which takes 10-100 ms (seconds on a busy server), too long for 44 inserts one after another.
ClickHouse stores one insert of fewer than ``max_insert_block_size`` (1 048 576) rows all or
nothing, so a table's rows of a batch are stored or refused together.

Errors are mapped to the writer's rules by the ``Code:`` of ClickHouse's exception (version
18.16 answers 500 for most of them): parse and type errors -> 400 (the table's rows are
rejected and counted); unknown table or database -> 404, refused credentials -> 401, readonly
or denied -> 403, anything else as answered (retried). When some tables of a batch were
stored and another failed with an error that is retried, the retry sends only the rows not
yet stored or refused, so nothing is stored twice.

With ``cluster`` set the inserts go to the ``Distributed`` tables with
``insert_distributed_sync=1``: each answers once every shard stored its share (forwarding in
the background stored rows twice in tests).

Before the first write (and after a 404) the tables are created with ``CREATE ... IF NOT
EXISTS`` when ``create_tables`` is true, else checked: a missing one is one clear error.
"""

from __future__ import annotations

import asyncio
import re

import aiohttp

from ..core.settings import Settings
from . import (
    WriteError,
    basic_auth,
    connection_message,
    encode_body,
    server_message,
)
from .clickhouse_tables import literal, quote, schema_statements, table_names

BAD_DATA_CODES = frozenset(
    {6, 8, 16, 25, 26, 27, 32, 33, 36, 38, 41, 43, 49, 53, 69, 70, 72, 117, 131, 190, 349}
)
"""Exception codes of data ClickHouse cannot store (parse, type, size, unknown column; 49
``LOGICAL_ERROR`` is what 18.16 answers for an unknown Enum value)."""
_STATUS_OF_CODE = {60: 404, 81: 404, 192: 401, 193: 401, 194: 401, 516: 401, 164: 403, 497: 403}
PARALLEL_INSERTS = 8
"""Inserts of one batch in flight at once (ClickHouse runs 100 queries at once by default)."""
_ALREADY_EXISTS = frozenset({57, 82})  # a concurrent CREATE ... IF NOT EXISTS won
_CODE = re.compile(rb"^Code: (\d+)")


class ClickHouseStorage:
    """Inserts rows into the series' tables, one request per table per batch.

    Credentials go in an ``Authorization: Basic`` header, never in the URL.
    """

    def __init__(self, settings: Settings) -> None:
        self._settings = settings
        self._target = settings.target
        self._url = f"{settings.url}/"
        self._database = settings.database
        self._tables_checked = False
        self._gzip = settings.compress
        self._headers = {"Content-Type": "application/json; charset=utf-8"}
        self._redact = basic_auth(settings, self._headers)
        self._timeout_s = settings.write_timeout_s
        self._session: aiohttp.ClientSession | None = None
        self._inserts: dict[bytes, str] = {}
        self._settled: set[bytes] = set()  # lines stored or refused by an unfinished batch
        self._refused: set[bytes] = set()
        self._refusal = ""
        self._in_flight: set[asyncio.Future] = set()
        self._parallel = asyncio.Semaphore(PARALLEL_INSERTS)

    def __repr__(self) -> str:
        return f"ClickHouseStorage({self._target})"

    async def write(self, body: bytes) -> None:
        """Insert the rows of one body, each table's in one request, up to
        :data:`PARALLEL_INSERTS` at once; raise :class:`WriteError`.

        A batch with refused rows raises a 400 with ``rejected`` = their count once every
        other table of it is stored. Inserts go on when the write is cancelled (shutdown);
        the next write waits for them, so it sends only what they did not store.
        """
        if self._in_flight:
            await asyncio.wait(self._in_flight)
        await self.prepare()
        by_table: dict[bytes, list[bytes]] = {}
        settled = self._settled
        for line in body.split(b"\n"):
            if line and line not in settled:
                by_table.setdefault(line.partition(b"\t")[0], []).append(line)
        inserts = [asyncio.ensure_future(self._insert_rows(*item)) for item in by_table.items()]
        self._in_flight.update(inserts)
        for insert in inserts:
            insert.add_done_callback(self._in_flight.discard)
        outcomes = await asyncio.shield(asyncio.gather(*inserts, return_exceptions=True))
        for outcome in outcomes:
            if isinstance(outcome, BaseException):
                raise outcome
        refused = sum(line in self._refused for line in body.split(b"\n"))
        message = self._refusal
        self._settled, self._refused, self._refusal = set(), set(), ""
        if refused:
            raise WriteError(400, message, rejected=refused)

    async def _insert_rows(self, table: bytes, lines: list[bytes]) -> None:
        """Insert the rows of ``lines`` into ``table``; note them stored or refused."""
        rows = b"\n".join(line.partition(b"\t")[2] for line in lines)
        async with self._parallel:
            try:
                await self._post(self._insert(table), rows, compress=True)
            except WriteError as error:
                if error.status != 400:
                    if error.status == 404:
                        self._tables_checked = False
                    raise
                self._refused.update(lines)
                self._refusal = self._refusal or f"table {table.decode()}: {error.message}"
        self._settled.update(lines)

    async def prepare(self) -> None:
        """Create the tables (``create_tables``) or check that they exist, once."""
        if self._tables_checked:
            return
        settings = self._settings
        if settings.create_tables:
            for statement in schema_statements(
                settings.database, settings.table_prefix, settings.cluster
            ):
                await self._post({"query": statement}, b"", exists_ok=True)
        else:
            await self._check_tables()
        self._tables_checked = True

    async def check(self) -> str:
        """Prepare the tables and make an empty insert; what was checked, for one line."""
        await self.prepare()
        table = next(iter(table_names(self._settings.table_prefix)))
        await self._post(self._insert(table.encode()), b"")
        count = len(table_names(self._settings.table_prefix, self._settings.cluster))
        return f"{count} tables ready and inserts allowed in {self._target}"

    async def close(self) -> None:
        """Close the HTTP session."""
        if self._session is not None:
            await self._session.close()
            self._session = None

    def _insert(self, table: bytes) -> dict[str, str]:
        query = self._inserts.get(table)
        if query is None:
            name = f"{quote(self._database)}.{quote(table.decode())}"
            query = self._inserts[table] = f"INSERT INTO {name} FORMAT JSONEachRow"
        if self._settings.cluster:
            return {"query": query, "insert_distributed_sync": "1"}
        return {"query": query}

    async def _check_tables(self) -> None:
        db = literal(self._database)
        found = await self._post(
            {"query": f"SELECT name FROM system.tables WHERE database = {db} FORMAT TSV"}, b""
        )
        expected = table_names(self._settings.table_prefix, self._settings.cluster)
        missing = sorted(set(expected) - set(found.decode().split("\n")))
        if not missing:
            return
        what = f"no database {self._database!r}"
        if len(missing) < len(expected) or await self._database_exists():
            shown = ", ".join(missing[:5]) + (
                f" and {len(missing) - 5} more" if missing[5:] else ""
            )
            what = f"database {self._database!r} has no table {shown}"
        raise WriteError(
            404,
            f"{what} (create_tables is false): create them with `python -m luna_monitoring "
            "clickhouse-schema | clickhouse-client --multiquery`, or set create_tables",
        )

    async def _database_exists(self) -> bool:
        query = f"SELECT count() FROM system.databases WHERE name = {literal(self._database)}"
        return (await self._post({"query": query}, b"")).strip() == b"1"

    async def _post(
        self,
        params: dict[str, str],
        data: bytes,
        *,
        compress: bool = False,
        exists_ok: bool = False,
    ) -> bytes:
        """One HTTP exchange; the answer's body, or :class:`WriteError`."""
        if self._session is None:
            self._session = aiohttp.ClientSession(
                timeout=aiohttp.ClientTimeout(total=self._timeout_s)
            )
        headers = self._headers
        if compress and self._gzip:
            data = await encode_body(data, True)
            headers = {**headers, "Content-Encoding": "gzip"}
        try:
            async with self._session.post(
                self._url, params=params, data=data, headers=headers
            ) as response:
                answer = await response.read()
        except (aiohttp.ClientError, OSError, TimeoutError) as exc:
            message = self._redact(connection_message(exc, self._timeout_s))
            raise WriteError(None, message) from None
        if response.status < 300:
            return answer
        match = _CODE.match(answer)
        code = int(match[1]) if match else None
        if exists_ok and code in _ALREADY_EXISTS:
            return answer
        status = 400 if code in BAD_DATA_CODES else _STATUS_OF_CODE.get(code, response.status)
        message = server_message(answer).replace("e.displayText() = DB::Exception: ", "")
        raise WriteError(status, self._redact(message.removesuffix(", e.what() = DB::Exception")))
