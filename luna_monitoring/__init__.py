"""LUNA Remote SDK style monitoring for Sanic and aiohttp services.

The framework-neutral core lives in :mod:`luna_monitoring.core`, the storages in
:mod:`luna_monitoring.storages`, the adapters in :mod:`luna_monitoring.sanic` and
:mod:`luna_monitoring.aiohttp`, and the command line in :mod:`luna_monitoring.cli`. This module
re-exports the public names; ``MonitoringExtension`` is imported on first use, so an aiohttp
service never imports Sanic.
"""

from typing import TYPE_CHECKING, Any

from .core.collector import EstimationCollector, current_collector, monitored_estimation
from .core.plugins import BaseRequestMonitoringPlugin
from .core.request_points import add_request_fields, add_request_tags
from .core.settings import MonitoringConfigError, Settings
from .core.version import package_version

if TYPE_CHECKING:
    from .sanic.extension import MonitoringExtension

__version__ = package_version()
"""This package's version: ``luna_monitoring.__version__`` -> ``'0.1.0'``."""

__all__ = [
    "BaseRequestMonitoringPlugin",
    "EstimationCollector",
    "MonitoringConfigError",
    "MonitoringExtension",
    "Settings",
    "add_request_fields",
    "add_request_tags",
    "current_collector",
    "monitored_estimation",
]


def __getattr__(name: str) -> Any:
    if name == "MonitoringExtension":
        from .sanic.extension import MonitoringExtension

        return MonitoringExtension
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
