"""The dashboards as the JSON text that is committed in ``luna_monitoring/dashboards/``."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from typing import Any

from grafana_foundation_sdk.builders.dashboard import Dashboard
from grafana_foundation_sdk.cog.encoder import JSONEncoder

from . import licensing, sdk_estimations, service_overview

BUILDERS: dict[str, Callable[[], Dashboard]] = {
    "service-overview": service_overview.build,
    "sdk-estimations": sdk_estimations.build,
    "licensing": licensing.build,
}
"""File name (without ``.json``) -> the function building that dashboard."""


def _panels(panels: list[dict[str, Any]]) -> Iterator[dict[str, Any]]:
    for panel in panels:
        yield panel
        yield from _panels(panel.get("panels", []))


def to_json(board: Dashboard) -> str:
    """The dashboard as indented JSON, its panels (rows included) numbered from 1."""
    data = json.loads(JSONEncoder().encode(board.build()))
    for number, panel in enumerate(_panels(data["panels"]), start=1):
        panel["id"] = number
    return json.dumps(data, indent=2, sort_keys=True, ensure_ascii=False) + "\n"


def render() -> dict[str, str]:
    """``{"<name>.json": text}`` for every dashboard."""
    return {f"{name}.json": to_json(build()) for name, build in BUILDERS.items()}
