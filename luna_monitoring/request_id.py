"""LUNA request ids: ``<unix seconds>,<uuid>``.

For example ``1700000000,1b4e28ba-2fa1-41d2-883f-0016d3cca427``.

A well-formed incoming ``LUNA-Request-Id`` is kept, so one id follows a request through
every LUNA service; otherwise a new one is made. New ids carry a version-4 UUID built from
128 random bits of the ``random`` module (request ids are identifiers, not secrets): about a
fifth of the cost of ``str(uuid.uuid4())``, which reads ``os.urandom`` on every call.
"""

from __future__ import annotations

import re
from random import getrandbits

REQUEST_ID_HEADER = "LUNA-Request-Id"

_ID = re.compile(r"[0-9]{1,10},[0-9a-fA-F]{8}(?:-[0-9a-fA-F]{4}){3}-[0-9a-fA-F]{12}")
# Clear the version nibble and the two variant bits, then set version 4 and variant 10xx.
_MASK = ~((0xF << 76) | (0x3 << 62)) & (2**128 - 1)
_VERSION_4 = (0x4 << 76) | (0x2 << 62)


def is_request_id(value: str) -> bool:
    """Whether ``value`` is ``<unix seconds>,<uuid>`` (1 to 10 digits, any UUID version).

    >>> is_request_id("1700000000,1b4e28ba-2fa1-41d2-883f-0016d3cca427")
    True
    """
    return _ID.fullmatch(value) is not None


def new_request_id(unix_seconds: int) -> str:
    """A new id for a request that started at ``unix_seconds``.

    >>> new_request_id(1700000000)  # doctest: +SKIP
    '1700000000,5acbf75c-81f7-4b2a-99df-fcf2a2b2a99c'
    """
    raw = (getrandbits(128) & _MASK | _VERSION_4).to_bytes(16)
    return f"{unix_seconds},{raw[:4].hex()}-{raw[4:10].hex('-', 2)}-{raw[10:].hex()}"


def request_id_for(incoming: str | None, unix_seconds: int) -> str:
    """``incoming`` when it is a well-formed id, else a new one.

    >>> request_id_for("1700000000,1b4e28ba-2fa1-41d2-883f-0016d3cca427", 1800000000)
    '1700000000,1b4e28ba-2fa1-41d2-883f-0016d3cca427'
    """
    if incoming is not None and _ID.fullmatch(incoming) is not None:
        return incoming
    return new_request_id(unix_seconds)
