"""The package's loggers: every line names the worker process that wrote it.

With ``app.run(workers=N)`` each worker logs the same kinds of lines; a suffix
``[Sanic-Server-1-0 pid 4242]`` (Sanic's worker name, when there is one, and the process id)
tells them apart. The package only logs through named loggers under ``luna_monitoring``
and never configures logging itself.
"""

from __future__ import annotations

import logging
import os
from collections.abc import MutableMapping
from typing import Any


def worker_label() -> str:
    """This process as a worker: ``Sanic-Server-1-0 pid 4242``, or ``pid 4242``."""
    name = os.environ.get("SANIC_WORKER_NAME", "")
    return f"{name} pid {os.getpid()}" if name else f"pid {os.getpid()}"


class WorkerLogger(logging.LoggerAdapter):
    """A logger whose messages end with ``[<worker label>]``."""

    def process(self, msg: Any, kwargs: MutableMapping[str, Any]) -> tuple[Any, Any]:
        return f"{msg} [{worker_label()}]", kwargs


def worker_logger(name: str) -> WorkerLogger:
    """The logger ``name``, its messages labelled with the worker.

    >>> worker_logger("luna_monitoring.core.writer").warning("monitoring: %d lost", 3)
    """
    return WorkerLogger(logging.getLogger(name))
