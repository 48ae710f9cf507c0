"""Grafana dashboards for the series luna-monitoring writes, shipped as JSON.

Three dashboards (``service-overview``, ``sdk-estimations``, ``licensing``) use Grafana's
InfluxDB data source in InfluxQL mode, every target raw InfluxQL, and pick their data source
through the ``datasource`` template variable. ``provisioning/`` holds a data source and a
dashboard provider file for Grafana. The JSON is generated from the series schema by
:mod:`luna_monitoring.dashboards.generator` (a development tool) and committed.

>>> paths = write_dashboards("/var/lib/grafana/dashboards/luna", datasource_uid="influx-luna")
"""

from __future__ import annotations

import json
import re
from importlib.resources import files
from pathlib import Path
from typing import Any

DATASOURCE_VARIABLE = "datasource"
UID_PATTERN = re.compile(r"[A-Za-z0-9_-]{1,40}")
"""What Grafana accepts as a uid."""


def dashboard_dir() -> Path:
    """The directory holding the shipped ``*.json`` dashboards and ``provisioning/``."""
    return Path(str(files(__name__)))


def dashboard_names() -> list[str]:
    """The shipped dashboards' file names, sorted."""
    return sorted(path.name for path in dashboard_dir().glob("*.json"))


def load_dashboard(name: str) -> dict[str, Any]:
    """The dashboard in file ``name`` (``"licensing.json"``) as a dict."""
    return json.loads((dashboard_dir() / name).read_text(encoding="utf-8"))


def check_uid(uid: str) -> None:
    """``ValueError`` unless ``uid`` is a Grafana uid: 1-40 letters, digits, ``-`` or ``_``."""
    if not UID_PATTERN.fullmatch(uid):
        raise ValueError(
            f"bad data source uid {uid!r}: use 1-40 letters, digits, '-' or '_' "
            "(the last part of the data source's URL in Grafana, /connections/datasources/edit/UID)"
        )


def with_datasource_uid(dashboard: dict[str, Any], uid: str) -> dict[str, Any]:
    """``dashboard`` with its ``datasource`` variable set to the data source ``uid``.

    Panels keep pointing at the variable, so the data source can still be switched in
    Grafana; ``ValueError`` on a bad uid (see :func:`check_uid`).
    """
    check_uid(uid)
    for variable in dashboard["templating"]["list"]:
        if variable["name"] == DATASOURCE_VARIABLE:
            variable["current"] = {"selected": True, "text": uid, "value": uid}
    return dashboard


def write_dashboards(out_dir: str | Path, datasource_uid: str | None = None) -> list[Path]:
    """Write every dashboard into ``out_dir`` (created if needed); return the paths written."""
    if datasource_uid is not None:
        check_uid(datasource_uid)
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    written = []
    for name in dashboard_names():
        dashboard = load_dashboard(name)
        if datasource_uid is not None:
            dashboard = with_datasource_uid(dashboard, datasource_uid)
        path = out / name
        path.write_text(
            json.dumps(dashboard, indent=2, ensure_ascii=False) + "\n", encoding="utf-8"
        )
        written.append(path)
    return written
