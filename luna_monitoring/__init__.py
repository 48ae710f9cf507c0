"""LUNA Remote SDK style monitoring for Sanic and aiohttp services.

The framework-neutral core lives in :mod:`luna_monitoring.core`, the storages in
:mod:`luna_monitoring.storages`, the Sanic adapter in :mod:`luna_monitoring.sanic` and the
command line in :mod:`luna_monitoring.cli`. This module re-exports the public names.
"""

from .core.collector import EstimationCollector, current_collector, monitored_estimation
from .core.plugins import BaseRequestMonitoringPlugin
from .core.settings import MonitoringConfigError, Settings
from .core.version import package_version
from .sanic.extension import MonitoringExtension
from .sanic.request_hooks import add_request_fields, add_request_tags

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
