"""LUNA Remote SDK style monitoring for Sanic services."""

from .collector import EstimationCollector, current_collector, monitored_estimation
from .extension import MonitoringExtension
from .plugins import BaseRequestMonitoringPlugin
from .request_hooks import add_request_fields, add_request_tags
from .settings import MonitoringConfigError, Settings

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
