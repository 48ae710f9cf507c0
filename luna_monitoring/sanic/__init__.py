"""The Sanic adapter: :class:`MonitoringExtension` and the request hooks it installs."""

from .extension import MonitoringExtension
from .request_hooks import add_request_fields, add_request_tags

__all__ = ["MonitoringExtension", "add_request_fields", "add_request_tags"]
