"""Running a test module with the compiled hot paths and again with the pure-Python code."""

from __future__ import annotations

import contextlib
from collections.abc import Iterable, Iterator
from types import ModuleType

import pytest

from luna_monitoring.core.speedups import speedups

KINDS = ("compiled", "python")


def swapped(kind: str, module: ModuleType | type, name: str, python: object) -> Iterator[str]:
    """For a module-scoped fixture: ``module.name`` (of a module or a class) as built
    (``compiled``) or set to ``python`` for the module's tests, restored afterwards; the
    compiled run is skipped where the extension is not built (``test_speedups.py`` fails that
    under CI)."""
    if kind == "compiled" and speedups is None:
        pytest.skip("the compiled hot paths are not built")
    built = getattr(module, name)
    setattr(module, name, built if kind == "compiled" else python)
    try:
        yield kind
    finally:
        setattr(module, name, built)


def swapped_methods(kind: str, cls: type, names: Iterable[str]) -> Iterator[str]:
    """For a module-scoped fixture: the methods ``names`` of ``cls`` compiled or in Python
    (their ``__wrapped__``), as :func:`swapped` does for one name."""
    with contextlib.ExitStack() as stack:
        for name in names:
            method = getattr(cls, name)
            python = getattr(method, "__wrapped__", method)
            stack.enter_context(contextlib.contextmanager(swapped)(kind, cls, name, python))
        yield kind


def whole_nanoseconds(seconds: float) -> bool:
    """Whether a duration is the float nearest to a whole number of nanoseconds, as both
    implementations measure ``execution_time`` (``core.clock.seconds_since``)."""
    return round(seconds * 1e9) / 1e9 == seconds
