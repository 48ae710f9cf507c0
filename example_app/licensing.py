"""A liveness licence: a balance of liveness estimations, per worker in this example.

At or below the warning threshold every request that used liveness writes a ``licensing``
point with status ``warning`` (the request that spends the last estimation too: it got its
answer); a request refused liveness because the balance is spent writes ``error`` (the rest
of the request still succeeds).
"""

from __future__ import annotations

import threading
from typing import Any


class LivenessLicense:
    """The balance; :meth:`take` is thread-safe (estimators run in threads)."""

    def __init__(self, balance: int, warning_threshold: int) -> None:
        self.balance = balance
        self.warning_threshold = warning_threshold
        self._lock = threading.Lock()

    def take(self, count: int) -> int:
        """Spend up to ``count`` estimations; return how many were granted."""
        with self._lock:
            granted = min(count, self.balance)
            self.balance -= granted
            return granted

    def grant(self) -> LivenessGrant:
        """What one request takes from the balance."""
        return LivenessGrant(self)

    def report(self, monitoring: Any, *, refused: bool) -> None:
        """Write a ``licensing`` point: ``error`` if the request was ``refused`` liveness,
        ``warning`` if the balance is at or below the threshold."""
        balance = self.balance
        if refused:
            monitoring.report_license(
                "error",
                liveness_balance=balance,
                errors=["liveness balance is exhausted: liveness is not estimated"],
            )
        elif balance <= self.warning_threshold:
            monitoring.report_license(
                "warning",
                liveness_balance=balance,
                warnings=[f"liveness balance is low: {balance} estimations left"],
            )


class LivenessGrant:
    """The liveness estimations of one request; ``refused`` once the balance fell short."""

    def __init__(self, license: LivenessLicense) -> None:
        self.license = license
        self.refused = False

    def take(self, count: int) -> int:
        """Spend up to ``count`` from the licence; note whether any was refused."""
        granted = self.license.take(count)
        self.refused = self.refused or granted < count
        return granted
