"""User plugins: the base class, loading, and per-worker delivery of points.

Every point the writer drains (all series; filter on ``point.series``) is handed to each
plugin in order, in the background. Each plugin has its own bounded queue and task, so a
plugin that raises, hangs or falls behind is logged (rate-limited) and counted, and changes
nothing for responses, InfluxDB writes or other plugins.
"""

from __future__ import annotations

import asyncio
import importlib
import inspect
import time
from abc import ABC, abstractmethod
from collections import deque
from collections.abc import Awaitable, Callable, Iterable
from typing import Any

from .logs import worker_logger
from .point import Point
from .settings import MonitoringConfigError, Settings
from .throttle import LogThrottle, held_back

logger = worker_logger(__name__)
PluginSpec = type["BaseRequestMonitoringPlugin"] | str


class BaseRequestMonitoringPlugin(ABC):
    """Receives every monitoring point of its worker; one instance per worker.

    >>> class AuditPlugin(BaseRequestMonitoringPlugin):
    ...     async def flush_point_to_monitoring(self, point):
    ...         if point.series == "errors":
    ...             await send_somewhere(point.tags["route"], point.fields["request_id"])

    Calls are bounded by ``plugin_timeout_s``; blocking work belongs in
    ``asyncio.to_thread``, since a blocking call stalls the whole worker.
    """

    def __init__(self, app: Any) -> None:
        self.app = app
        """The web application: a ``Sanic`` app or an ``aiohttp.web.Application``."""

    async def initialize(self) -> None:  # noqa: B027 - optional hook
        """Called once after the worker's server has started."""

    @abstractmethod
    async def flush_point_to_monitoring(self, point: Point) -> None:
        """Handle one point (``series``, ``time_ns``, ``tags``, ``fields``)."""

    async def close(self) -> None:  # noqa: B027 - optional hook
        """Called once on shutdown, after the remaining points were delivered."""


def load_plugins(specs: Iterable[PluginSpec]) -> tuple[type[BaseRequestMonitoringPlugin], ...]:
    """Resolve plugin classes and ``"package.module:ClassName"`` paths.

    Raises :class:`MonitoringConfigError` naming the plugin when its module or class is
    missing, or the class is not a concrete ``BaseRequestMonitoringPlugin`` subclass. A class
    given twice (say in the config and to the adapter) is loaded once.
    """
    return tuple(dict.fromkeys(_load(spec) for spec in specs))


def _load(spec: PluginSpec) -> type[BaseRequestMonitoringPlugin]:
    if isinstance(spec, str):
        if ":" not in spec:
            module_hint, _, class_hint = spec.rpartition(".")
            raise _bad(
                spec,
                'expected "package.module:ClassName", a colon before the class name '
                f"(e.g. {module_hint or 'my_package.plugins'}:{class_hint or 'MyPlugin'})",
            )
        module_name, _, class_name = spec.partition(":")
        try:
            module = importlib.import_module(module_name)
        except Exception as exc:
            raise _bad(spec, f"cannot import module {module_name!r} ({exc!r})") from exc
        if not hasattr(module, class_name):
            raise _bad(spec, f"module {module_name!r} has no attribute {class_name!r}")
        cls = getattr(module, class_name)
    else:
        cls = spec
    if isinstance(cls, BaseRequestMonitoringPlugin):
        raise _bad(spec, "an instance; pass the class (each worker creates its own)")
    if not (isinstance(cls, type) and issubclass(cls, BaseRequestMonitoringPlugin)):
        raise _bad(spec, "not a subclass of BaseRequestMonitoringPlugin")
    if inspect.isabstract(cls):
        raise _bad(spec, "does not implement flush_point_to_monitoring")
    for hook in ("initialize", "flush_point_to_monitoring", "close"):
        if not inspect.iscoroutinefunction(getattr(cls, hook)):
            raise _bad(spec, f"{hook} must be an async def")
    return cls


def _bad(spec: Any, problem: str) -> MonitoringConfigError:
    name = spec if isinstance(spec, str) else getattr(spec, "__qualname__", repr(spec))
    return MonitoringConfigError(f"monitoring plugin {name!r}: {problem}")


class _Slot:
    """One plugin of a worker: its instance, queue, task, watchdog and log throttle."""

    __slots__ = (
        "cls",
        "enabled",
        "expired",
        "failures",
        "name",
        "plugin",
        "queue",
        "started",
        "task",
        "throttle",
        "wake",
        "watchdog",
    )

    def __init__(self, cls: type[BaseRequestMonitoringPlugin], max_points: int) -> None:
        self.cls = cls
        self.name = f"{cls.__module__}:{cls.__qualname__}"
        self.plugin: BaseRequestMonitoringPlugin | None = None
        self.enabled = True
        self.queue: deque[Point] = deque(maxlen=max_points)
        self.wake = asyncio.Event()
        self.task: asyncio.Task | None = None
        self.throttle = LogThrottle()
        self.started: float | None = None
        """Loop time the running ``flush_point_to_monitoring`` call began; None between calls."""
        self.watchdog: asyncio.TimerHandle | None = None
        self.expired = False
        self.failures = [0, 0, 0]
        """Calls of this plugin that raised, that timed out, and points it did not get."""


class PluginRunner:
    """The plugins of one worker; the runner (:meth:`feed`) is the writer sink.

    Each plugin's queue holds at most ``max_buffer_points`` points; beyond that the
    oldest are dropped and counted in ``plugin_points_dropped``. A per-plugin watchdog timer,
    armed at most once per ``plugin_timeout_s`` rather than once per call, cancels a
    ``flush_point_to_monitoring`` call that runs longer (see bench/sinks.py).
    """

    def __init__(
        self,
        app: Any,
        classes: Iterable[type[BaseRequestMonitoringPlugin]],
        settings: Settings,
    ) -> None:
        self.app = app
        self._timeout_s = settings.plugin_timeout_s
        self._shutdown_timeout_s = settings.shutdown_timeout_s
        self._slots = [_Slot(cls, settings.max_buffer_points) for cls in classes]
        self._closing = False
        self.stats = {
            "plugin_points_delivered": 0,
            "plugin_points_dropped": 0,
            "plugin_errors": 0,
            "plugin_timeouts": 0,
        }

    def feed(self, points: list[Point]) -> None:
        """Queue drained points for every plugin (never blocks, never raises)."""
        if not points:
            return
        for slot in self._slots:
            if not slot.enabled:
                continue
            queue = slot.queue
            overflow = len(queue) + len(points) - queue.maxlen
            if overflow > 0:
                self.stats["plugin_points_dropped"] += overflow
                slot.failures[2] += overflow
                if slot.throttle.ready(time.monotonic()):
                    logger.warning(
                        "monitoring plugin %s is behind: %d oldest points dropped%s",
                        slot.name,
                        overflow,
                        held_back(slot.throttle.take() - 1),
                    )
            queue.extend(points)
            slot.wake.set()

    __call__ = feed

    @property
    def failures(self) -> dict[str, tuple[int, int, int]]:
        """Plugin name (``module:Class``) -> calls that raised, calls that timed out, points
        dropped (queue full, or left at shutdown)."""
        return {slot.name: tuple(slot.failures) for slot in self._slots}

    @property
    def plugins(self) -> list[BaseRequestMonitoringPlugin]:
        """The plugin instances created so far (once the server has started)."""
        return [slot.plugin for slot in self._slots if slot.plugin is not None]

    def start(self) -> None:
        """Create and initialize every plugin, each in its own task, then deliver."""
        self._closing = False
        loop = asyncio.get_running_loop()
        for slot in self._slots:
            slot.task = loop.create_task(self._run(slot), name=f"monitoring plugin {slot.name}")

    async def stop(self) -> None:
        """Deliver what is queued within ``shutdown_timeout_s``, then close every plugin."""
        self._closing = True
        tasks = [slot.task for slot in self._slots if slot.task]
        for slot in self._slots:
            slot.wake.set()
        if tasks:
            _, pending = await asyncio.wait(tasks, timeout=self._shutdown_timeout_s)
            for task in pending:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
        for slot in self._slots:
            if slot.watchdog:
                slot.watchdog.cancel()
            if slot.queue:
                self.stats["plugin_points_dropped"] += len(slot.queue)
                slot.failures[2] += len(slot.queue)
                logger.warning(
                    "monitoring plugin %s: %d points not delivered at shutdown",
                    slot.name,
                    len(slot.queue),
                )
                slot.queue.clear()
        await asyncio.gather(
            *(self._call(slot, "close", slot.plugin.close) for slot in self._slots if slot.plugin)
        )

    async def _run(self, slot: _Slot) -> None:
        try:
            slot.plugin = slot.cls(self.app)
        except Exception:
            self.stats["plugin_errors"] += 1
            slot.failures[0] += 1
            logger.exception("monitoring plugin %s: creating it failed", slot.name)
            slot.enabled = False
        else:
            slot.enabled = await self._call(slot, "initialize", slot.plugin.initialize)
        if not slot.enabled:
            logger.error("monitoring plugin %s is disabled in this worker", slot.name)
            slot.queue.clear()
            return
        await self._deliver(slot)

    async def _deliver(self, slot: _Slot) -> None:
        """Hand the queued points to the plugin in order; return once closing and empty."""
        loop = asyncio.get_running_loop()
        task = asyncio.current_task()
        flush = slot.plugin.flush_point_to_monitoring
        queue = slot.queue
        while True:
            if not queue:
                if self._closing:
                    return
                slot.wake.clear()
                await slot.wake.wait()
                continue
            point = queue.popleft()
            slot.started = loop.time()
            if slot.watchdog is None:
                slot.watchdog = loop.call_at(slot.started + self._timeout_s, self._watch, slot)
            try:
                await flush(point)
            except asyncio.CancelledError as exc:
                if task.cancelling() > slot.expired:  # stop() cancels the task
                    raise
                if not slot.expired:  # the plugin's own cancellation
                    self._failed(slot, "flush_point_to_monitoring", exc)
            except Exception as exc:
                self._failed(slot, "flush_point_to_monitoring", exc)
            else:
                self.stats["plugin_points_delivered"] += 1
            finally:
                slot.started = None
            if slot.expired:
                slot.expired = False
                task.uncancel()
                self._failed(slot, "flush_point_to_monitoring", None)

    def _watch(self, slot: _Slot) -> None:
        """Cancel a call running longer than ``plugin_timeout_s``; re-arm for a later one."""
        slot.watchdog = None
        if slot.started is None or slot.expired:
            return
        loop = asyncio.get_running_loop()
        deadline = slot.started + self._timeout_s
        if loop.time() < deadline:
            slot.watchdog = loop.call_at(deadline, self._watch, slot)
        else:
            slot.expired = True
            slot.task.cancel()

    async def _call(
        self, slot: _Slot, hook: str, method: Callable[..., Awaitable[None]], *args: Any
    ) -> bool:
        """Await ``initialize`` or ``close``, bounded by ``plugin_timeout_s``."""
        timeout = asyncio.timeout(self._timeout_s)
        try:
            async with timeout:
                await method(*args)
            return True
        except Exception as exc:
            self._failed(slot, hook, None if timeout.expired() else exc)
            return False

    def _failed(self, slot: _Slot, hook: str, exc: BaseException | None) -> None:
        """Count a call that raised ``exc`` or (``None``) timed out; log it rate-limited."""
        self.stats["plugin_timeouts" if exc is None else "plugin_errors"] += 1
        slot.failures[exc is None] += 1
        if slot.throttle.ready(time.monotonic()):
            logger.error(
                "monitoring plugin %s: %s %s%s",
                slot.name,
                hook,
                f"timed out after {self._timeout_s} s" if exc is None else "raised",
                held_back(slot.throttle.take() - 1),
                exc_info=exc,
            )
