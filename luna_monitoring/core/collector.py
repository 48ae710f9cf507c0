"""SDK estimations: ``monitored_estimation``, ``current_collector`` and the collector.

A decorated handler gets its own :class:`EstimationCollector` in a context variable, so the
handler, the tasks it creates and its ``asyncio.to_thread`` calls record into it and never
into another request's (``loop.run_in_executor`` does not copy the context: there the
collector records nothing). Every call is validated at once (``ValueError``), stamped with
the worker's unique clock at its start and timed in whole nanoseconds (``perf_counter_ns``);
estimator points with the same tags share one read-only mapping of them. When the handler
returns or raises, the request's points are appended to the writer's buffer; a block that
raises records nothing, and what is recorded after the handler has finished is dropped.
"""

from __future__ import annotations

import contextlib
import functools
import inspect
from collections.abc import Callable, Hashable, Mapping
from contextvars import ContextVar
from time import perf_counter_ns
from types import MappingProxyType
from typing import TYPE_CHECKING, Any, TypeVar

from .caches import with_room
from .clock import seconds_since
from .point import CountFields, PointTuple
from .schema import (
    ESTIMATOR_SERIES,
    INT64_MAX,
    SERIES,
    USAGE_ESTIMATORS,
    Kind,
    get_series,
)
from .speedups import compile_methods, speedups

if TYPE_CHECKING:
    from .runtime import Monitoring

Handler = TypeVar("Handler", bound=Callable[..., Any])

WRAPPED_BY = "__luna_monitored_by__"
"""Attribute set on a handler that ``monitored_estimation`` wrapped: the wrapper, so that a
route still holding the bare handler (decorators in the wrong order) can be found."""

# Tags of each estimator series besides batch_size: descriptor_version, mode or none.
_EXTRA_TAGS: Mapping[str, tuple[str, ...]] = {
    name: tuple(tag for tag in SERIES[name].tags if tag != "batch_size")
    for name in ESTIMATOR_SERIES
}
_PLAIN_ESTIMATORS = frozenset(name for name, extra in _EXTRA_TAGS.items() if not extra)
_ONE_EXTRA_TAG: Mapping[str, str] = {
    name: extra[0] for name, extra in _EXTRA_TAGS.items() if len(extra) == 1
}
# Fields whose values take the fast path: exactly their declared int or float type.
_NUMERIC_FIELDS: Mapping[str, Mapping[str, type]] = {
    name: {key: kind for key, kind in SERIES[name].fields.items() if kind in (int, float)}
    for name in (*ESTIMATOR_SERIES, "image_load")
}
_USAGE_FIELDS: Mapping[str, str] = {name: f"{name}_usages" for name in USAGE_ESTIMATORS}
# All counts zero: each request's usages start as a copy (4 times cheaper than fromkeys).
_NO_USAGES = CountFields.fromkeys(_USAGE_FIELDS.values(), 0)
_IMAGE_LOAD = SERIES["image_load"]
COMPILED_METHODS = ("__init__", "estimation", "image_load", "add_usage", "points")
"""EstimationCollector's methods with a compiled twin for their common call."""
# service -> {batch_size or (batch_size, extra tag, its value): tags of estimator points,
# ("image_load", format, exif, autorotated): tags of image_load points, ("sdkloop_task",
# image count) and "usages_statistic": the tags of those}, at most
# _MAX_SERVICES x _MAX_TAG_SETS (each dict is emptied when full)
_TAG_SETS: dict[str, dict[Hashable, Mapping[str, str]]] = {}
_MAX_SERVICES = 100
_MAX_TAG_SETS = 10_000


def _estimator_tags(
    sets: dict[Hashable, Mapping[str, str]],
    series: str,
    batch_size: Any,
    tags: dict[str, Any],
    service: str,
) -> Mapping[str, str]:
    """The tags of an estimator point, read-only and shared by the points with the same ones
    (kept in ``sets``); ``ValueError`` on an unknown series or a bad tag."""
    key: Hashable = None
    if type(batch_size) is int:
        if not tags:
            if series in _PLAIN_ESTIMATORS:
                key = batch_size
        elif len(tags) == 1:
            name = _ONE_EXTRA_TAG.get(series)
            value = tags.get(name)
            # Only str and int values are kept: True == 1 == 1.0 would share a key, not a text.
            if type(value) is str or type(value) is int:
                key = (batch_size, name, value)
        cached = sets.get(key)
        if cached is not None:
            return cached
    checked = get_series(series, kind=Kind.ESTIMATOR).check_tags({"batch_size": batch_size, **tags})
    checked["service"] = service
    return _keep(sets, key, checked)


def _keep(
    sets: dict[Hashable, Mapping[str, str]], key: Hashable, tags: dict[str, str]
) -> Mapping[str, str]:
    """``tags`` made read-only and, unless ``key`` is ``None``, kept in ``sets`` under it for
    the next points with the same tags."""
    shared = MappingProxyType(tags)
    if key is not None:
        with_room(sets, _MAX_TAG_SETS)[key] = shared
    return shared


def _checked_fields(series: str, fields: dict[str, Any]) -> dict[str, Any]:
    """``fields`` checked against ``series``; converted (and ``None``/NaN/inf dropped) if needed."""
    types = _NUMERIC_FIELDS[series]
    for key, value in fields.items():
        # One comparison checks the int64 range of ints (but -2**63, left to check_fields)
        # and the finiteness of floats (NaN compares false); an unknown key's type is None.
        if type(value) is not types.get(key) or not abs(value) <= INT64_MAX:
            return SERIES[series].check_fields(fields)
    return fields


class PythonTiming:
    """Context manager of one estimation or image load: times its block into
    ``execution_time``; :meth:`set` adds the series' other fields (:data:`Timing`: compiled
    when built, else this class).

    >>> with collector.estimation("face_detection", batch_size=1) as est:
    ...     est.set(detection_count=2)
    """

    __slots__ = ("_clock", "_fields", "_series", "_sink", "_start", "_tags", "_time_ns")
    # No __init__: the collector fills the slots, which is faster on the request path.
    _fields: dict[str, Any] | None

    def set(self, **fields: Any) -> None:
        """Add fields of the series inside the block; ``ValueError`` on an unknown field or a
        wrong type. An ``execution_time`` given here replaces the measured one."""
        checked = _checked_fields(self._series, fields)
        if self._fields is None:
            self._fields = checked
        else:
            self._fields.update(checked)

    def __enter__(self) -> PythonTiming:
        self._time_ns = self._clock()
        self._start = perf_counter_ns()
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: Any, traceback: Any) -> None:
        elapsed = (perf_counter_ns() - self._start) / 1e9  # seconds_since, without its call
        if exc_type is None:
            fields = self._fields
            if fields is None:
                fields = {"execution_time": elapsed}
            elif "execution_time" not in fields:
                fields["execution_time"] = elapsed
            self._sink.append((self._series, self._time_ns, self._tags, fields))


def _python_timing(
    sink: list[PointTuple], clock: Callable[[], int], series: str, tags: Mapping[str, str]
) -> PythonTiming:
    """A :class:`PythonTiming` of ``series`` that appends its point to ``sink``."""
    timing = PythonTiming()
    timing._sink = sink
    timing._clock = clock
    timing._series = series
    timing._tags = tags
    timing._fields = None
    return timing


if speedups is None:
    Timing: type[PythonTiming] = PythonTiming
    _timing = _python_timing
else:  # the same in C (core/_speedups.c); its set() checks fields with _checked_fields
    speedups.setup_timing(_checked_fields, _NUMERIC_FIELDS)
    Timing = speedups.Timing
    _timing = speedups.timing


class EstimationCollector:
    """What one request records: image loads, estimations and estimator usages.

    Obtained from :func:`current_collector` inside a handler decorated with
    :func:`monitored_estimation`; every method raises ``ValueError`` at the call site when
    misused, naming the valid choices.

    >>> collector = current_collector()
    >>> with collector.estimation("face_descriptor", batch_size=2, descriptor_version=59):
    ...     descriptors = extract(warps)
    >>> collector.add_usage("face_descriptor_extractor", 2)
    """

    __slots__ = (
        "_clock",
        "_estimations",
        "_images",
        "_service",
        "_start_ns",
        "_tag_sets",
        "_usages",
    )

    def __init__(self, clock: Callable[[], int], service: str) -> None:
        self._clock = clock
        self._service = service
        tag_sets = _TAG_SETS.get(service)
        if tag_sets is None:
            tag_sets = with_room(_TAG_SETS, _MAX_SERVICES)[service] = {}
        self._tag_sets = tag_sets
        self._start_ns = clock()
        self._images: list[PointTuple] = []
        self._estimations: list[PointTuple] = []
        self._usages: dict[str, int] | None = None

    def estimation(self, series: str, *, batch_size: int, **tags: Any) -> Timing:
        """Time the ``with`` block as one estimation of ``series``.

        ``descriptor_version`` (descriptor series) and ``mode`` (``deepfake``) are tags:

        >>> with collector.estimation("face_descriptor", batch_size=4, descriptor_version=59):
        ...     extract(warps)
        """
        tag_values = None
        if not tags and type(batch_size) is int and series in _PLAIN_ESTIMATORS:
            tag_values = self._tag_sets.get(batch_size)  # the common case, kept inline
        if tag_values is None:
            tag_values = _estimator_tags(self._tag_sets, series, batch_size, tags, self._service)
        return _timing(self._estimations, self._clock, series, tag_values)

    def record_estimation(
        self, series: str, *, batch_size: int, execution_time: float, **tags_and_fields: Any
    ) -> None:
        """Record an estimation timed elsewhere; it started ``execution_time`` seconds ago.

        Keyword arguments are tags or fields as the series declares them. The timestamp is
        the worker clock's now minus ``execution_time``: unique unless another point of the
        same series and tags started at that very nanosecond, which only a coincidence makes.

        >>> collector.record_estimation("face_detection", batch_size=2, execution_time=0.012,
        ...                             detection_count=3)
        """
        extra = _EXTRA_TAGS.get(series)
        if extra is None:
            get_series(series, kind=Kind.ESTIMATOR)  # raises, naming the valid series
        tags = {}
        for key in extra:
            if key in tags_and_fields:
                tags[key] = tags_and_fields.pop(key)
        tag_values = _estimator_tags(self._tag_sets, series, batch_size, tags, self._service)
        tags_and_fields["execution_time"] = execution_time
        fields = _checked_fields(series, tags_and_fields)
        seconds = fields.get("execution_time")
        if seconds is None or seconds < 0:
            raise ValueError(
                f"{series}: execution_time must be a finite number >= 0, got {execution_time!r}"
            )
        start_ns = self._clock() - round(seconds * 1e9)
        self._estimations.append((series, start_ns, tag_values, fields))

    def image_load(self, *, format: str, exif: bool, autorotated: bool) -> Timing:
        """Time the ``with`` block as one image load; ``.set(size=, height=, width=)``.

        >>> with collector.image_load(format="JPEG", exif=True, autorotated=False) as load:
        ...     load.set(size=len(body), height=image.height, width=image.width)
        """
        # Only exact types are kept: True == 1 would share a key, not a text.
        key = None
        tags = None
        if type(format) is str and type(exif) is bool and type(autorotated) is bool:
            key = ("image_load", format, exif, autorotated)
            tags = self._tag_sets.get(key)
        if tags is None:
            checked = {"format": format, "exif": exif, "autorotated": autorotated}
            checked = _IMAGE_LOAD.check_tags(checked)
            checked["service"] = self._service
            tags = _keep(self._tag_sets, key, checked)
        return _timing(self._images, self._clock, "image_load", tags)

    def add_usage(self, estimator: str, count: int = 1) -> None:
        """Count ``count`` uses of ``estimator`` (a ``*_usages`` field name without ``_usages``).

        >>> collector.add_usage("face_detector", 2)
        """
        field = _USAGE_FIELDS.get(estimator)
        if field is None:
            raise ValueError(
                f"unknown estimator {estimator!r}; valid estimators: {', '.join(_USAGE_FIELDS)}"
            )
        if type(count) is not int or not 0 <= count <= INT64_MAX:
            raise ValueError(f"usage count of {estimator!r} must be an int >= 0, got {count!r}")
        if self._usages is None:
            self._usages = CountFields(_NO_USAGES)
        self._usages[field] += count

    def points(self, execution_time: float) -> list[PointTuple]:
        """The request's point tuples, or none if nothing was recorded.

        ``sdkloop_task`` (lasting ``execution_time`` seconds), the image loads, the
        estimations and ``usages_statistic`` with all usage counts.
        """
        if not (self._images or self._estimations or self._usages is not None):
            return []
        images = len(self._images)
        tag_sets = self._tag_sets
        task_key = ("sdkloop_task", images)
        task_tags = tag_sets.get(task_key)
        if task_tags is None:
            task_tags = {"service": self._service, "image_count": str(images)}
            task_tags = _keep(tag_sets, task_key, task_tags)
        usage_tags = tag_sets.get("usages_statistic")
        if usage_tags is None:
            usage_tags = _keep(tag_sets, "usages_statistic", {"service": self._service})
        usages = self._usages or CountFields(_NO_USAGES)
        return [
            ("sdkloop_task", self._start_ns, task_tags, {"execution_time": execution_time}),
            *self._images,
            *self._estimations,
            ("usages_statistic", self._start_ns, usage_tags, usages),
        ]


if speedups is not None:  # the common calls in C (core/_speedups.c), the rest in Python
    speedups.setup_collector(
        EstimationCollector, _PLAIN_ESTIMATORS, dict(_USAGE_FIELDS), _NO_USAGES, _TAG_SETS
    )
    compile_methods(EstimationCollector, COMPILED_METHODS)


class _NullTiming(Timing):
    __slots__ = ()

    def set(self, **fields: Any) -> None:
        pass

    def __enter__(self) -> Timing:
        return self

    def __exit__(self, *_: Any) -> None:
        pass


_NULL_TIMING = _NullTiming()


class _NullCollector(EstimationCollector):
    """The collector outside decorated handlers: accepts every call and records nothing."""

    __slots__ = ()

    def __init__(self) -> None:
        pass

    def estimation(self, *args: Any, **kwargs: Any) -> Timing:
        return _NULL_TIMING

    def record_estimation(self, *args: Any, **kwargs: Any) -> None:
        pass

    def image_load(self, *args: Any, **kwargs: Any) -> Timing:
        return _NULL_TIMING

    def add_usage(self, *args: Any, **kwargs: Any) -> None:
        pass

    def points(self, execution_time: float) -> list[PointTuple]:
        return []


_NULL_COLLECTOR = _NullCollector()
_CURRENT: ContextVar[EstimationCollector] = ContextVar("luna_monitoring_collector")


def current_collector() -> EstimationCollector:
    """The collector of the decorated handler running now, else one that records nothing.

    >>> current_collector().add_usage("face_detector")
    """
    return _CURRENT.get(_NULL_COLLECTOR)


def register_request_type(
    request_type: type, monitoring_of: Callable[[Any], Monitoring | None]
) -> None:
    """Let :func:`monitored_estimation` find the monitoring of a handler argument that is a
    ``request_type`` (or a subclass): ``monitoring_of(arg)``, ``None`` when it is off.

    Each framework adapter registers its request type(s) when imported.
    """
    _REQUEST_TYPES[request_type] = monitoring_of
    _FINDERS.clear()


_REQUEST_TYPES: dict[type, Callable[[Any], Monitoring | None]] = {}
# type of a handler argument -> how to find its monitoring (None: not a request)
_FINDERS: dict[type, Callable[[Any], Monitoring | None] | None] = {}


def _finder(arg_type: type) -> Callable[[Any], Monitoring | None] | None:
    finder = next(
        (_REQUEST_TYPES[base] for base in arg_type.__mro__ if base in _REQUEST_TYPES), None
    )
    with_room(_FINDERS)[arg_type] = finder
    return finder


def _monitoring(args: tuple) -> Monitoring | None:
    """The monitoring of the request among ``args``; ``None`` when monitoring is off."""
    for arg in args:
        arg_type = type(arg)
        finder = _FINDERS[arg_type] if arg_type in _FINDERS else _finder(arg_type)
        if finder is not None:
            return finder(arg)
    return None


def monitored_estimation(handler: Handler) -> Handler:
    """Give a handler (sync or async; Sanic or aiohttp) its own :class:`EstimationCollector`.

    When the handler returns or raises, what it recorded is emitted: ``sdkloop_task``, its
    ``image_load`` and estimator points and ``usages_statistic``; nothing if it recorded
    nothing or monitoring is off.

    >>> @app.post("/sdk")
    ... @monitored_estimation
    ... async def sdk(request): ...
    """
    if inspect.iscoroutinefunction(handler):

        @functools.wraps(handler)
        async def monitored(*args: Any, **kwargs: Any) -> Any:
            started = _begin(args)
            if started is None:
                return await handler(*args, **kwargs)
            try:
                return await handler(*args, **kwargs)
            finally:
                _end(started)

    else:

        @functools.wraps(handler)
        def monitored(*args: Any, **kwargs: Any) -> Any:
            started = _begin(args)
            if started is None:
                return handler(*args, **kwargs)
            try:
                return handler(*args, **kwargs)
            finally:
                _end(started)

    with contextlib.suppress(AttributeError, TypeError):  # builtins, slotted callables
        setattr(handler, WRAPPED_BY, monitored)
    return monitored  # type: ignore[return-value]


def _python_begin(args: tuple) -> tuple | None:
    """A decorated handler's start: ``(monitoring, collector, token, start)`` with its new
    collector made current, or ``None`` when monitoring is off (:data:`_begin`: this
    function, or the same compiled)."""
    monitoring = _monitoring(args)
    if monitoring is None:
        return None
    collector = EstimationCollector(monitoring.clock.now_ns, monitoring.settings.service)
    return monitoring, collector, _CURRENT.set(collector), perf_counter_ns()


def _python_end(started: tuple) -> None:
    """A decorated handler's end: the collector no longer current, its points emitted."""
    monitoring, collector, token, start = started
    elapsed = seconds_since(start)
    _CURRENT.reset(token)
    points = collector.points(elapsed)
    if points:
        monitoring.emit_all(points)


if speedups is None:
    _begin, _end = _python_begin, _python_end
else:  # the same in C (core/_speedups.c); an argument of a type not seen yet goes to Python
    speedups.setup_handlers(_FINDERS, _python_begin, _CURRENT)
    _begin, _end = speedups.begin_handler, speedups.end_handler
