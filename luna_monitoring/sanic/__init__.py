"""The Sanic adapter: :class:`MonitoringExtension` and the request hooks it installs."""

from ..core.request_points import add_request_fields, add_request_tags
from .extension import MonitoringExtension

__all__ = ["MonitoringExtension", "add_request_fields", "add_request_tags"]
