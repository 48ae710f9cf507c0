"""The compiled hot paths (``_speedups``, a C extension), when they are built.

``pip install`` builds them where a C compiler and the Python headers are found and goes on
without them where not; the pure-Python code then does the same work, a little slower (see
the README's performance section). Set ``LUNA_MONITORING_NO_EXTENSIONS`` to any non-empty
value to use the pure-Python code although they are built.
"""

from __future__ import annotations

import os
from collections.abc import Iterable
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


def compile_methods(cls: type, names: Iterable[str]) -> None:
    """Replace each method of ``cls`` in ``names`` with its compiled twin, which takes the
    common call and hands every other to the Python method (its ``__wrapped__``)."""
    for name in names:
        python = getattr(cls, name)
        setattr(cls, name, speedups.compiled_method(f"{cls.__name__}.{name}", python))
