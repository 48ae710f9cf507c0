"""The compiled hot paths (``_speedups``, a C extension), when they are built.

``pip install`` builds them where a C compiler and the Python headers are found and goes on
without them where not; the pure-Python code then does the same work, a little slower (see
the README's performance section). Set ``LUNA_MONITORING_NO_EXTENSIONS`` to any non-empty
value to use the pure-Python code although they are built.
"""

from __future__ import annotations

import os
from types import ModuleType

NO_EXTENSIONS_ENV = "LUNA_MONITORING_NO_EXTENSIONS"


def _load() -> ModuleType | None:
    if os.environ.get(NO_EXTENSIONS_ENV):
        return None
    try:
        from . import _speedups
    except ImportError:
        return None
    return _speedups


speedups = _load()
"""The ``_speedups`` module, or ``None`` when the pure-Python code runs."""
