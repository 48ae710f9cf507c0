"""Rate-limited log messages: one line per period, with the count of what it stood for."""

from __future__ import annotations

WARN_EVERY_S = 10.0
"""Period of every rate-limited monitoring warning."""


class LogThrottle:
    """Lets a message through at most once per ``period_s``, counting the events behind it.

    >>> throttle = LogThrottle(10.0)
    >>> if throttle.ready(loop.time()):
    ...     logger.warning("plugin failed %d time(s)", throttle.take())
    """

    __slots__ = ("_next", "_period_s", "held")

    def __init__(self, period_s: float = WARN_EVERY_S) -> None:
        self._period_s = period_s
        self._next = float("-inf")
        self.held = 0

    def ready(self, now: float, count: int = 1) -> bool:
        """Add ``count`` events at monotonic time ``now``; True when a message is due."""
        self.held += count
        if now < self._next:
            return False
        self._next = now + self._period_s
        return True

    def take(self) -> int:
        """The events since the last message, this one included; resets the count."""
        held, self.held = self.held, 0
        return held


def held_back(count: int) -> str:
    """`` (N similar messages held back)`` for a count of other events, or nothing.

    >>> held_back(0), held_back(2)
    ('', ' (2 similar messages held back)')
    """
    return f" ({count} similar messages held back)" if count else ""
