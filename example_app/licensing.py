"""A liveness licence: a balance of liveness estimations, per worker in this example.

Below the warning threshold every request that used liveness writes a ``licensing`` point
with status ``warning``; once the balance is spent it writes ``error`` and liveness is no
longer estimated (the rest of the request still succeeds).
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

    def report(self, monitoring: Any) -> None:
        """Write a ``licensing`` point if the balance is low or spent."""
        balance = self.balance
        if balance <= 0:
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
