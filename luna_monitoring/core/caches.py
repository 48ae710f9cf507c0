"""Bounded memo dicts: a cache that is full is emptied rather than left to grow."""

from __future__ import annotations

from typing import TypeVar

MAX_CACHED = 10_000
"""Default bound on the entries of one cache (tag sets, routes, field keys)."""

_Cache = TypeVar("_Cache", bound=dict)


def with_room(cache: _Cache, limit: int = MAX_CACHED) -> _Cache:
    """``cache``, emptied first if it already holds ``limit`` entries.

    >>> with_room(prefixes)[key] = prefix
    """
    if len(cache) >= limit:
        cache.clear()
    return cache
