"""LUNA request ids: ``<unix seconds>,<uuid>``.

For example ``1700000000,1b4e28ba-2fa1-41d2-883f-0016d3cca427``. A well-formed incoming
``LUNA-Request-Id`` is kept, so one id follows a request through every LUNA service;
otherwise a new one is made.

New ids carry a random version-4 UUID. ``str(uuid.uuid4())`` costs about 2.5 µs; formatting
one UUID from random bits in Python still costs about 0.6 µs, and over 1.5 µs on a busy
server whose caches are cold. So UUIDs are made 256 at a time, by C code only: one
``os.urandom`` read turned into hex digits, which extended-slice assignments place into a
template of dashes and commas, one digit column at a time; the version digit is set to
``4`` and the variant digit mapped into ``8``-``b`` by a translate table. About 0.16 µs per
UUID, handed out one by one. A forked child starts with an empty batch.
"""

from __future__ import annotations

import os
import re
from binascii import hexlify

from .speedups import speedups

REQUEST_ID_HEADER = "LUNA-Request-Id"

_ID = re.compile(r"[0-9]{1,10},[0-9a-fA-F]{8}(?:-[0-9a-fA-F]{4}){3}-[0-9a-fA-F]{12}")

_BATCH = 256
# The 36 characters of a UUID, then a comma: where each of its 32 hex digits goes.
_DIGIT_MOVES = [
    (slice(position, None, 37), slice(digit, None, 32))
    for digit, position in enumerate(p for p in range(36) if p not in (8, 13, 18, 23))
]
_TEMPLATE = (b"-" * 36 + b",") * _BATCH
_VERSION = slice(14, None, 37), b"4" * _BATCH
_VARIANT = slice(19, None, 37), bytes.maketrans(b"0123456789abcdef", b"89ab89ab89ab89ab")
_uuids: list[str] = []
os.register_at_fork(after_in_child=_uuids.clear)
if speedups is not None:  # the compiled ids' UUIDs, likewise
    os.register_at_fork(after_in_child=speedups.forget_uuids)


def is_request_id(value: str) -> bool:
    """Whether ``value`` is ``<unix seconds>,<uuid>`` (1 to 10 digits, any UUID version).

    >>> is_request_id("1700000000,1b4e28ba-2fa1-41d2-883f-0016d3cca427")
    True
    """
    return _ID.fullmatch(value) is not None


def python_new_request_id(unix_seconds: int) -> str:
    """A new id for a request that started at ``unix_seconds``: :data:`new_request_id` in
    Python. The compiled one (``core/_speedups.c``) formats its UUIDs straight from one
    ``os.urandom()`` call per 256, and starts afresh in a forked child too.

    >>> new_request_id(1700000000)  # doctest: +SKIP
    '1700000000,5acbf75c-81f7-4b2a-99df-fcf2a2b2a99c'
    """
    try:
        uuid = _uuids.pop()
    except IndexError:
        _uuids.extend(_uuid4_batch())
        uuid = _uuids.pop()
    return f"{unix_seconds},{uuid}"


new_request_id = python_new_request_id if speedups is None else speedups.new_request_id
"""A new id for a request that started at ``unix_seconds`` (compiled when built)."""


def request_id_for(incoming: str | None, unix_seconds: int) -> str:
    """``incoming`` when it is a well-formed id, else a new one.

    >>> request_id_for("1700000000,1b4e28ba-2fa1-41d2-883f-0016d3cca427", 1800000000)
    '1700000000,1b4e28ba-2fa1-41d2-883f-0016d3cca427'
    """
    if incoming is not None and _ID.fullmatch(incoming) is not None:
        return incoming
    return new_request_id(unix_seconds)


def _uuid4_batch() -> list[str]:
    """``_BATCH`` random version-4 UUIDs in canonical form."""
    digits = hexlify(os.urandom(16 * _BATCH))
    text = bytearray(_TEMPLATE)
    for to, source in _DIGIT_MOVES:
        text[to] = digits[source]
    text[_VERSION[0]] = _VERSION[1]
    text[_VARIANT[0]] = text[_VARIANT[0]].translate(_VARIANT[1])
    return text[:-1].decode().split(",")
