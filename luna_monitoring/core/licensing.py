"""The ``licensing`` point: a licence check that warns or fails."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from orjson import dumps

LICENSE_STATUSES = ("warning", "error")


def license_tags_and_fields(
    status: str,
    *,
    liveness_balance: int,
    warnings: Iterable[str] = (),
    errors: Iterable[str] = (),
) -> tuple[dict[str, str], dict[str, Any]]:
    """Tags and fields of a ``licensing`` point; ``ValueError`` on a bad status or message list.

    >>> tags, fields = license_tags_and_fields("warning", liveness_balance=9, warnings=["low"])
    >>> fields["warnings"]
    '["low"]'
    """
    if status not in LICENSE_STATUSES:
        raise ValueError(
            f"licensing: license_status must be one of {', '.join(LICENSE_STATUSES)}, "
            f"got {status!r}"
        )
    fields = {
        "liveness_balance": liveness_balance,
        "warnings": _json_list("warnings", warnings),
        "errors": _json_list("errors", errors),
    }
    return {"license_status": status}, fields


def _json_list(name: str, messages: Iterable[str]) -> str:
    """``messages`` as a JSON array string; ``ValueError`` unless they are strings."""
    iterable = isinstance(messages, Iterable) and not isinstance(messages, str | bytes)
    items = list(messages) if iterable else None
    if items is None or not all(isinstance(item, str) for item in items):
        raise ValueError(f"licensing: {name} must be a list of strings, got {messages!r}")
    return dumps(items).decode()
