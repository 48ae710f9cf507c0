"""LUNA Remote SDK style monitoring for Sanic services."""

from .extension import MonitoringExtension
from .settings import MonitoringConfigError, Settings

__all__ = ["MonitoringConfigError", "MonitoringExtension", "Settings"]
