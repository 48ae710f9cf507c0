"""Response header text that Sanic need not sanitise.

Sanic sanitises every response header name and value on its way out:
``text.translate(HEADER_TRANSLATION_TABLE)`` deletes CR, LF and NUL, one character at a time
(about 0.6 µs for ``LUNA-Request-Id``, 0.8 µs for its value), after formatting the value with
``f"{value}"``. The name and the value of ``LUNA-Request-Id`` are known to hold none of
those characters (a request id is digits, hex digits, a comma and dashes), so they are
:class:`HeaderText`: ``translate`` with Sanic's table and plain formatting return the text
itself. Every other use behaves as ``str`` (``istr``: case-insensitive), and when Sanic
sanitises differently the table does not match and the text is translated as usual.
"""

from __future__ import annotations

from multidict import istr

from ..core.speedups import compile_methods, speedups

try:
    from sanic.response.types import HEADER_TRANSLATION_TABLE as _SANITISING
except ImportError:  # a Sanic that sanitises otherwise: nothing is skipped
    _SANITISING = object()


def _translate(self: str, table: object) -> str:
    return self if table is _SANITISING else str.translate(self, table)


def _format(self: str, spec: str) -> str:
    return self if not spec else str.__format__(self, spec)


class HeaderText(str):
    """A header value without CR, LF or NUL (the caller makes sure)."""

    __slots__ = ()
    translate = _translate
    __format__ = _format


class HeaderName(istr):
    """A case-insensitive header name without CR, LF or NUL."""

    __slots__ = ()
    translate = _translate


if speedups is not None:  # the same in C (core/_speedups.c)
    speedups.setup_header_text(_SANITISING)
    compile_methods(HeaderText, ("translate", "__format__"))
    compile_methods(HeaderName, ("translate",))
