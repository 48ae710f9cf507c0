"""The compiled hot paths (``core/_speedups.c``): built where CI runs, the same output as the
pure-Python code for any input, and an install that goes on without a compiler."""

from __future__ import annotations

import gc
import math
import os
import shutil
import subprocess
import sys
import time
import zipfile
from pathlib import Path
from types import MappingProxyType

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from multidict import CIMultiDict
from test_point import COUNTERS, ENCODER_SETTINGS, NAME, VM, random_points

from luna_monitoring.core import collector as collector_module
from luna_monitoring.core import point as point_module
from luna_monitoring.core import request_points
from luna_monitoring.core.buffer import Buffer
from luna_monitoring.core.clock import UniqueClock
from luna_monitoring.core.point import CountFields, LineEncoder, Point
from luna_monitoring.core.request_id import is_request_id
from luna_monitoring.core.request_points import RequestPoints
from luna_monitoring.core.schema import INT64_MAX
from luna_monitoring.core.settings import Settings
from luna_monitoring.core.speedups import NO_EXTENSIONS_ENV, speedups

ROOT = Path(__file__).resolve().parent.parent
compiled = pytest.mark.skipif(speedups is None, reason="the compiled hot paths are not built")


def test_built_where_ci_runs():
    """CI builds the extension (``make`` installs a C compiler), so both paths are tested:
    ``make test`` compiled, ``make test-lowest`` with it switched off."""
    if os.environ.get(NO_EXTENSIONS_ENV):
        pytest.skip(f"{NO_EXTENSIONS_ENV} is set: the pure-Python code runs")
    if speedups is None:
        if os.environ.get("CI"):
            pytest.fail("luna_monitoring.core._speedups is not built: no C compiler?")
        pytest.skip("not built here: the pure-Python code runs")


def encoded_twice(points: list, dialect: str, use_compiled: bool) -> tuple:
    """Lines of ``points`` encoded twice by one encoder (caches cold, then warm), and its
    counters and last reason."""
    saved = point_module._speedups
    point_module._speedups = saved if use_compiled else None
    try:
        encoder = LineEncoder(dialect)
        lines = [encoder.encode_lines(points), encoder.encode_lines(iter(points))]
    finally:
        point_module._speedups = saved
    return lines, [getattr(encoder, name) for name in COUNTERS], encoder.last_dropped


COUNT_KEYS = ("a_usages", "b_usages", "c usages")
COUNT = st.one_of(st.integers(0, 3), st.integers(INT64_MAX - 1, INT64_MAX + 1), st.booleans())


@st.composite
def mixed_points(draw: st.DrawFn) -> list:
    """Hostile points as buffered: plain tuples, ``Point``s, lists, shared read-only tag
    sets, usages counts."""
    points: list = []
    for series, time_ns, tags, fields in draw(random_points()):
        shape = draw(st.integers(0, 4))
        if shape == 1:
            tags = MappingProxyType(tags)
        elif shape == 2:
            counts = draw(st.lists(COUNT, min_size=3, max_size=3))
            fields = CountFields(zip(COUNT_KEYS, counts, strict=True))
        elif shape == 3:
            points.append([series, time_ns, tags, fields])
            continue
        elif shape == 4:
            points.append(Point(series, time_ns, tags, fields))
            continue
        points.append((series, time_ns, tags, fields))
    return points + draw(st.permutations(points))


@compiled
@ENCODER_SETTINGS
@given(points=mixed_points(), dialect=st.sampled_from(["influxdb", VM]))
def test_compiled_encoder_writes_what_python_writes(points, dialect):
    """Same lines, same counts and reason, cold and warm, whatever the points."""
    assert encoded_twice(points, dialect, True) == encoded_twice(points, dialect, False)


@compiled
@ENCODER_SETTINGS
@given(
    text=NAME,
    number=st.one_of(st.floats(), st.integers(-(2**70), 2**70)),
    dialect=st.sampled_from(["influxdb", VM]),
)
def test_compiled_encoder_on_cached_points_with_any_value(text, number, dialect):
    """Cached tag sets and keys (the compiled path) with any string and number, also
    beyond the line length VictoriaMetrics takes."""
    tags = MappingProxyType({"service": "s", "route": text or "r"})
    points = [
        ("requests", 1, tags, {"request_id": text, "execution_time": number}),
        ("requests", 2, tags, {"request_id": text * 3000, "n": number}),
        ("requests", 3, dict(tags), {"x": number, "s": text}),
    ]
    assert encoded_twice(points, dialect, True) == encoded_twice(points, dialect, False)


def _durations(nanoseconds: int) -> list[float]:
    """The duration of ``nanoseconds`` as measured (its nearest float), the floats beside it,
    and its negative: only the first is written without orjson."""
    seconds = nanoseconds / 1e9
    return [seconds, math.nextafter(seconds, 0), math.nextafter(seconds, math.inf), -seconds]


def _one_field_points(values: list[float]) -> list:
    tags = MappingProxyType({"service": "s"})
    return [("requests", 1, tags, {"execution_time": value}) for value in values]


@compiled
def test_compiled_encoder_writes_every_small_duration_as_python_does():
    """Every duration up to 0.2 ms, and those at the boundaries of the fixed and the exponent
    forms and of the fast path (10**6 s), written as orjson writes them."""
    values = [n / 1e9 for n in range(1, 200_000)]
    for digits in range(16):
        for n in (10**digits - 1, 10**digits, 10**digits + 1, 15 * 10**digits, 123456789):
            values += _durations(n * 10 ** max(0, digits - 9))
    values += [0.0, -0.0, 1e6, math.nextafter(1e6, 0), 5e-324, 4e-10, 6e-10]
    points = _one_field_points(values)
    assert encoded_twice(points, "influxdb", True) == encoded_twice(points, "influxdb", False)


@compiled
@ENCODER_SETTINGS
@given(nanoseconds=st.lists(st.integers(1, 10**15), min_size=1, max_size=20))
def test_compiled_encoder_writes_any_duration_as_python_does(nanoseconds):
    points = _one_field_points([v for n in nanoseconds for v in _durations(n)])
    assert encoded_twice(points, "influxdb", True) == encoded_twice(points, "influxdb", False)


@compiled
@ENCODER_SETTINGS
@given(order=st.lists(st.integers(0, 99), min_size=1, max_size=300), fresh=st.booleans())
def test_compiled_encoder_finds_shared_tag_sets_by_identity_only_while_they_live(order, fresh):
    """More shared tag sets than the compiled encoder keeps at hand, in any order, each under
    two series; ``fresh``: each point's tag set made as it is read and freed after it, so
    that a later one may get its address."""
    sets = [MappingProxyType({"service": "s", "route": f"r{i}"}) for i in range(100)]

    def points(use_compiled: bool) -> list[str]:
        saved = point_module._speedups
        point_module._speedups = saved if use_compiled else None
        try:
            made = (
                (("a", "b")[i % 2], i + 1, (MappingProxyType(dict(sets[i])) if fresh else sets[i]),
                 {"n": i})
                for i in order
            )  # fmt: skip
            return LineEncoder().encode_lines(made)
        finally:
            point_module._speedups = saved

    assert points(True) == points(False)
    assert [line.split(" ")[0] for line in points(True)] == [
        f"{('a', 'b')[i % 2]},route=r{i},service=s" for i in order
    ]


@compiled
def test_compiled_encoder_reuses_usage_counts_text_only_for_the_same_values():
    """Usage counts alike, equal but other int objects, and changed, in one call."""
    big = INT64_MAX - 1
    counts = [(0, 2, 2), (0, 2, 2), (1, 2, 2), (0, 2, 2), (big, 0, 0), (int(str(big)), 0, 0),
              (True, 0, 0), (1, 0, 0), (0, 0, 0)]  # fmt: skip
    points = [
        ("usages_statistic", i + 1, {"service": "s"}, CountFields(zip(COUNT_KEYS, c, strict=True)))
        for i, c in enumerate(counts)
    ]
    compiled_lines = encoded_twice(points, "influxdb", True)
    assert compiled_lines == encoded_twice(points, "influxdb", False)
    fields = [line.split(" ", 1)[1].rsplit(" ", 1)[0] for line in compiled_lines[0][0]]
    assert fields == [
        "a_usages=0i,b_usages=2i,c\\ usages=2i",
        "a_usages=0i,b_usages=2i,c\\ usages=2i",
        "a_usages=1i,b_usages=2i,c\\ usages=2i",
        "a_usages=0i,b_usages=2i,c\\ usages=2i",
        f"a_usages={big}i,b_usages=0i,c\\ usages=0i",
        f"a_usages={big}i,b_usages=0i,c\\ usages=0i",
        "a_usages=true,b_usages=0i,c\\ usages=0i",
        "a_usages=1i,b_usages=0i,c\\ usages=0i",
        "a_usages=0i,b_usages=0i,c\\ usages=0i",
    ]


def _wheel(tmp_path: Path, compiler: str | None) -> zipfile.ZipFile:
    """A wheel of this project built from a copy of its sources, with ``CC`` set to
    ``compiler`` (``/bin/false``: a machine without a working C compiler)."""
    source = tmp_path / "source"
    skipped = shutil.ignore_patterns("*.so", "__pycache__")
    for part in ("luna_monitoring", "example_app"):
        shutil.copytree(ROOT / part, source / part, ignore=skipped)
    for name in ("pyproject.toml", "setup.py", "README.md"):
        shutil.copy(ROOT / name, source / name)
    env = {**os.environ, **({"CC": compiler} if compiler else {})}
    subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--quiet", "--no-deps",
         "-w", str(tmp_path / "wheels"), str(source)],
        check=True, env=env, capture_output=True, timeout=300,
    )  # fmt: skip
    (wheel,) = (tmp_path / "wheels").glob("*.whl")
    return zipfile.ZipFile(wheel)


def test_install_without_a_compiler_falls_back_to_python(tmp_path):
    """No compiler: the wheel builds without the extension, and the package it holds
    encodes with the pure-Python code."""
    with _wheel(tmp_path, "/bin/false") as wheel:
        assert not [name for name in wheel.namelist() if name.endswith(".so")]
        wheel.extractall(tmp_path / "site")
    code = (
        "from luna_monitoring.core import point, clock\n"
        "assert point._speedups is None and clock.UniqueClock is clock.PythonUniqueClock\n"
        "print(point.LineEncoder().encode_lines([('m', 1, {'t': 'v'}, {'f': 1.5})]))"
    )
    result = subprocess.run(
        [sys.executable, "-c", code],
        env={**os.environ, "PYTHONPATH": str(tmp_path / "site")},
        cwd=tmp_path, capture_output=True, text=True, timeout=60, check=True,
    )  # fmt: skip
    assert result.stdout == "['m,t=v f=1.5 1']\n"


@compiled
def test_install_with_a_compiler_ships_the_extension(tmp_path):
    """With a compiler the wheel holds the extension next to the pure-Python code."""
    with _wheel(tmp_path, None) as wheel:
        names = wheel.namelist()
    assert [name for name in names if name.startswith("luna_monitoring/core/_speedups.")]
    assert "luna_monitoring/core/point.py" in names


def test_environment_variable_turns_the_extension_off(tmp_path):
    """``LUNA_MONITORING_NO_EXTENSIONS=1`` runs the pure-Python code although it is built."""
    code = "from luna_monitoring.core import point; print(point._speedups)"
    result = subprocess.run(
        [sys.executable, "-c", code],
        env={**os.environ, NO_EXTENSIONS_ENV: "1"},
        cwd=tmp_path, capture_output=True, text=True, timeout=60, check=True,
    )  # fmt: skip
    assert result.stdout == "None\n"


class FakeRequest:
    """What the request points read of an adapter's request."""

    __slots__ = ("_luna_id", "_luna_more", "_luna_start", "_luna_start_ns", "headers", "method")

    def __init__(self, start_ns: int, headers: dict, method: str = "GET") -> None:
        self._luna_start_ns, self._luna_start = start_ns, time.perf_counter_ns()
        self._luna_id = self._luna_more = None
        self.headers = CIMultiDict(headers)
        self.method = method


class FakeHooks(RequestPoints):
    """Routes named after the method; errors coded by status."""

    __slots__ = ()

    def route_name(self, request: FakeRequest, status: int) -> tuple[str, bool]:
        return f"{request.method}:/r", True

    def error_code(self, request: FakeRequest, response: object) -> str:
        return str(response)


REQUEST_ID = "1700000000,1b4e28ba-2fa1-41d2-883f-0016d3cca427"


@compiled
@pytest.mark.parametrize(
    ("start_ns", "headers"),
    [
        (1_700_000_000_123_456_789, {}),
        (999_999_999, {}),
        (-1, {}),
        (1_700_000_000_000_000_000, {"luna-request-id": REQUEST_ID}),
        (1_700_000_000_000_000_000, {"LUNA-Request-Id": "1700000000,not-an-id\r\n"}),
    ],
    ids=["new", "under_a_second", "before_1970", "incoming_kept", "incoming_malformed"],
)
def test_compiled_assign_id_is_the_python_one(start_ns, headers):
    """A well-formed incoming id kept, else a new one of the start's seconds, kept on the
    request."""
    ids = []
    for assign in (speedups.assign_id, request_points.python_assign_id):
        request = FakeRequest(start_ns, headers)
        made = assign(request)
        assert (
            request._luna_id == made
            and type(made) is str
            and is_request_id(made) == (start_ns >= 0)
        )
        ids.append(made if made == REQUEST_ID else made.partition(",")[0])
    assert ids[0] == ids[1]


def emitted(emit_points, hooks: FakeHooks, requests: list[tuple]) -> list:
    """What ``emit_points`` hands on for each (method, status, more, times answered), with
    execution times replaced by their type."""
    out: list = []
    hooks.bind(lambda: 0, out.append)
    for method, status, more, answers in requests:
        request = FakeRequest(1_700_000_000_000_000_000 + len(out), {}, method)
        request._luna_more = more
        for _ in range(answers):
            emit_points(hooks, request, REQUEST_ID, status, (method, status), "E42")
        assert request._luna_start_ns is None
    return [
        (
            series,
            time_ns,
            dict(tags),
            {k: type(v) if k == "execution_time" else v for k, v in fields.items()},
        )
        for series, time_ns, tags, fields in out
    ]


@compiled
def test_compiled_emit_points_is_the_python_one():
    """Route cached or not, excluded, error, tags and fields added, answered twice: the same
    points, and the compiled one hands on the same tuples."""
    settings = Settings.from_config(
        {"version": 1, "database": "db", "service": "svc", "excluded_routes": ["^DELETE:"]}
    )
    requests = [
        ("GET", 200, None, 1),
        ("GET", 200, None, 2),
        ("DELETE", 200, None, 1),
        ("DELETE", 200, None, 1),
        ("GET", 404, None, 1),
        ("GET", 404, None, 1),
        ("GET", 200, ({"account": "7"}, {"size": 3}), 1),
        ("POST", 500, ({"account": "8"}, {}), 2),
        ("GET", 200, None, 1),
    ]
    compiled_points = emitted(speedups.emit_points, FakeHooks(settings), requests)
    assert compiled_points == emitted(
        request_points.python_emit_points, FakeHooks(settings), requests
    )
    series = [point[0] for point in compiled_points]
    assert (series.count("requests"), series.count("errors")) == (7, 3)
    assert {p[3]["execution_time"] for p in compiled_points if p[0] == "requests"} == {float}


class Route:
    def __init__(self, path: str) -> None:
        self.path = path


class Response:
    def __init__(self, status: int) -> None:
        self.status = status
        self.headers: dict = {}

    def __str__(self) -> str:  # FakeHooks' error code
        return f"E{self.status}"


class RoutedRequest(FakeRequest):
    """A request whose hook is ``answer``: the Python one below, or compiled from it."""

    __slots__ = ("route",)
    hooks: FakeHooks

    def answer(self, response: Response | None, *rest: object, **options: object) -> tuple:
        if response is None or rest or options or response.status == 101:
            return ("python", rest, options)
        request_id = self._luna_id or request_points.python_assign_id(self)
        response.headers["id"] = f"<{request_id}>"
        route = self.route
        key = (self.method, route.path if route is not None else False, response.status)
        request_points.python_emit_points(
            self.hooks, self, request_id, response.status, key, response
        )
        return base_answer(self, response)


def base_answer(request: RoutedRequest, response: Response) -> tuple:
    return ("base", response.status)


def answered(compile_it: bool, calls: list[tuple]) -> list:
    """What ``answer`` returns and emits, and the headers it sets, for each (method, route
    path, status, incoming headers, extra arguments)."""
    settings = Settings.from_config({"version": 1, "database": "db", "service": "svc"})
    out: list = []

    class Request(RoutedRequest):
        __slots__ = ()
        hooks = FakeHooks(settings)

    Request.hooks.bind(iter(range(1_700_000_000_000_000_000, 2**62, 1000)).__next__, out.append)
    if compile_it:
        Request.hooks.compile_hooks(
            Request, FakeRequest.__init__, "answer", base_answer,
            header_name="id", header_type="<{}>".format, route_attrs=("route", "path"),
        )  # fmt: skip
    results = []
    for method, path, status, headers, rest in calls:
        request = Request(0, headers, method)
        if not compile_it:  # the compiled __init__ takes it from the hooks' clock
            request._luna_start_ns = Request.hooks._now_ns()
        request.route = None if path is None else Route(path)
        response = Response(status)
        results.append((request.answer(response, *rest), response.headers))
    points = [(s, t, dict(tags), sorted(fields)) for s, t, tags, fields in out]
    return [results, points, set(Request.hooks._entries)]


@compiled
def test_compiled_response_hook_is_the_python_one():
    """Header, points and the base hook's result as the Python hook gives them, for routed and
    unrouted requests, errors and an incoming id; a websocket's 101 and a call with more than
    the response go to the Python hook."""
    calls = [
        ("GET", "/a", 200, {}, ()),
        ("GET", "/a", 200, {"LUNA-Request-Id": REQUEST_ID}, ()),
        ("GET", None, 404, {}, ()),
        ("POST", "/a", 500, {}, ()),
        ("GET", "/a", 101, {}, ()),
        ("GET", "/a", 200, {}, ("more",)),
    ]
    compiled_result, python_result = answered(True, calls), answered(False, calls)
    # new ids differ in their random part
    ids = [h.get("id", "")[:12] for _, h in python_result[0]]
    assert [h.get("id", "")[:12] for _, h in compiled_result[0]] == ids
    assert [r for r, _ in compiled_result[0]] == [r for r, _ in python_result[0]] == [
        ("base", 200), ("base", 200), ("base", 404), ("base", 500),
        ("python", (), {}), ("python", ("more",), {}),
    ]  # fmt: skip
    assert compiled_result[0][1][1] == {"id": f"<{REQUEST_ID}>"}
    assert compiled_result[1:] == python_result[1:]
    assert compiled_result[2] == {("GET", "/a", 200), ("GET", False, 404), ("POST", "/a", 500)}
    assert [(p[0], p[2]["status_code"], p[2].get("error_code")) for p in compiled_result[1]] == [
        ("requests", "200", None), ("requests", "200", None), ("requests", "404", None),
        ("errors", "404", "E404"), ("requests", "500", None), ("errors", "500", "E500"),
    ]  # fmt: skip


FIELD_NAMES = ("detection_count", "image_width", "execution_time", "face_detection_height", "x")
ANY_VALUE = st.one_of(
    st.integers(-(2**64), 2**64),
    st.sampled_from([INT64_MAX, INT64_MAX + 1, -(2**63), -(2**63) + 1, 2.0**63, -(2.0**63)]),
    st.sampled_from([math.nan, math.inf, -math.inf, 1e300, 0.5]),
    st.floats(),
    st.booleans(),
    st.none(),
    st.decimals(allow_nan=False, allow_infinity=False),
    st.text(max_size=3),
)


def recorded_with_set(timing_of, fields: dict) -> object:
    """The point a block records after ``.set(**fields)``, or the error ``set`` raises."""
    sink: list = []
    timing = timing_of(sink, lambda: 7, "face_detection", {"service": "s"})
    try:
        with timing as block:
            block.set(**fields)
    except ValueError as exc:
        return str(exc)
    (point,) = sink
    seconds = point[3]["execution_time"]
    given = "nan" if seconds != seconds else seconds == fields.get("execution_time")
    return point[:3], {**point[3], "execution_time": given}  # True: given, False: measured


@compiled
@settings(max_examples=500, deadline=None)
@given(fields=st.dictionaries(st.sampled_from(FIELD_NAMES), ANY_VALUE, max_size=4))
def test_compiled_timing_set_checks_as_python_does(fields):
    """Checked, converted or refused: the compiled ``set`` keeps what the Python one keeps."""
    python = recorded_with_set(collector_module._python_timing, dict(fields))
    assert recorded_with_set(speedups.timing, dict(fields)) == python


@compiled
@ENCODER_SETTINGS
@given(lines=st.lists(st.one_of(st.text(st.characters(max_codepoint=127)), st.text())))
def test_compiled_join_writes_the_python_body(lines):
    """ASCII lines are copied once; any other list gives the Python body (surrogates: ``?``)."""
    saved = point_module._speedups
    try:
        point_module._speedups = None
        python = point_module.join_lines(lines)
    finally:
        point_module._speedups = saved
    assert point_module.join_lines(lines) == python
    assert point_module.join_lines(iter(lines)) == python


ANY_ARGUMENT = st.one_of(
    st.integers(-3, 2**64), st.booleans(), st.floats(), st.text(max_size=4), st.none(),
    st.sampled_from(["JPEG", "face_detection", "face_detector", "deepfake", 59, "x"]),
)  # fmt: skip
COLLECTOR_CALLS = st.lists(
    st.one_of(
        st.tuples(
            st.just("estimation"),
            st.tuples(st.one_of(st.sampled_from(["face_detection", "mask"]), ANY_ARGUMENT)),
            st.dictionaries(
                st.sampled_from(["batch_size", "descriptor_version", "mode", "x"]),
                st.one_of(st.integers(0, 3), ANY_ARGUMENT),
                max_size=3,
            ),
        ),
        st.tuples(
            st.just("image_load"),
            st.just(()),
            st.dictionaries(
                st.sampled_from(["format", "exif", "autorotated", "x"]),
                st.one_of(st.booleans(), st.just("JPEG"), ANY_ARGUMENT),
                max_size=4,
            ),
        ),
        st.tuples(
            st.just("add_usage"),
            st.lists(
                st.one_of(st.sampled_from(["face_detector", "liveness_estimator"]), ANY_ARGUMENT),
                max_size=3,
            ).map(tuple),
            st.dictionaries(st.just("count"), st.one_of(st.integers(0, 3), ANY_ARGUMENT)),
        ),
    ),
    max_size=8,
)


def collected(methods: dict, service: str, calls: list[tuple]) -> list:
    """What each call (method name, positional arguments, keywords) raises, and the points
    recorded (execution times replaced by their type); the clock counts."""
    cls = collector_module.EstimationCollector
    collector = cls.__new__(cls)
    methods["__init__"](collector, iter(range(10**6)).__next__, service)
    errors: list = []
    for name, arguments, keywords in calls:
        try:
            result = methods[name](collector, *arguments, **keywords)
            if result is not None:
                with result:
                    pass
            errors.append(None)
        except (TypeError, ValueError) as exc:
            errors.append(str(exc))
    points = [
        (s, t, dict(tags), {k: type(v) if k == "execution_time" else v for k, v in f.items()})
        for s, t, tags, f in methods["points"](collector, 1.0)
    ]
    return [errors, points]


@compiled
@settings(max_examples=1000, deadline=None)
@given(calls=COLLECTOR_CALLS, service=st.sampled_from(["svc", "other", 'é\n"x']))
def test_compiled_collector_methods_record_what_python_records(calls, service):
    """Any arguments: the compiled collector methods record, count and refuse as the Python
    methods do, whether the service's tag sets are made yet or not."""
    cls = collector_module.EstimationCollector
    compiled_methods = {name: getattr(cls, name) for name in collector_module.COMPILED_METHODS}
    python_methods = {name: method.__wrapped__ for name, method in compiled_methods.items()}
    collector_module._TAG_SETS.pop(service, None)
    python = collected(python_methods, service, calls)
    collector_module._TAG_SETS.pop(service, None)
    assert collected(compiled_methods, service, calls) == python
    assert collected(compiled_methods, service, calls) == python  # tag sets made: in C


@compiled
def test_compiled_usage_counts_are_not_tracked_by_the_garbage_collector():
    """A request's counts (str keys, int values) wait in the buffer untracked, as its point
    tuples do; should a container be put in them, the dict tracks itself again."""
    collector = collector_module.EstimationCollector(iter(range(100)).__next__, "svc")
    assert collector.points(0.5) == []
    collector.add_usage("face_detector", 2)
    usages = collector.points(0.5)[-1][3]
    assert usages["face_detector_usages"] == 2 and not gc.is_tracked(usages)
    untouched = collector_module.EstimationCollector(iter(range(100)).__next__, "svc")
    with untouched.estimation("face_detection", batch_size=1):
        pass
    assert not gc.is_tracked(untouched.points(0.5)[-1][3])
    usages["x"] = []
    assert gc.is_tracked(usages)


@compiled
def test_timed_point_reads_as_its_tuple():
    """Equal to its tuple both ways, unpacked, indexed, converted, shown, as the tuple is; a
    new fields dict each time it is read."""
    tags = MappingProxyType({"service": "s"})
    point = speedups.TimedPoint("requests", 7, tags, 0.25, "request_id", 'a"b')
    fields = {"request_id": 'a"b', "execution_time": 0.25}
    as_tuple = ("requests", 7, tags, fields)
    assert point == as_tuple and as_tuple == point and (point != as_tuple) is False
    assert point != ("requests", 7, tags, {"execution_time": 0.25})
    series, time_ns, point_tags, point_fields = point
    assert (series, time_ns, point_tags, point_fields) == as_tuple and point_tags is tags
    assert len(point) == 4 and point[-1] == point[3] == fields and point[-4] == "requests"
    point[3]["execution_time"] = 1.0
    assert point[3] == fields
    assert repr(point) == repr(as_tuple)
    assert point_module.as_points([point]) == [Point(*as_tuple)]
    assert speedups.TimedPoint("m", 1, tags, 2.0) == ("m", 1, tags, {"execution_time": 2.0})
    with pytest.raises(IndexError):
        point[4]
    with pytest.raises(TypeError):
        hash(point)
    with pytest.raises(TypeError, match="go together"):
        speedups.TimedPoint("m", 1, tags, 2.0, "request_id")


@compiled
def test_compiled_timings_points_are_neither_tracked_nor_counted_by_the_collector():
    """1,000 estimations without set() waiting for the writer move the garbage collector's
    count of new objects by almost nothing (a tuple and a dict each would move it by up to
    2,000 and trigger collections)."""
    collector = collector_module.EstimationCollector(UniqueClock().now_ns, "svc")
    with collector.estimation("mask", batch_size=1):
        pass
    gc.collect()
    gc.disable()
    try:
        before = gc.get_count()[0]
        for _ in range(1000):
            with collector.estimation("mask", batch_size=1):
                pass
        grown = gc.get_count()[0] - before
    finally:
        gc.enable()
    points = collector.points(0.5)
    assert grown < 50
    assert {type(point).__name__ for point in points[1:-1]} == {"TimedPoint"}
    assert not any(gc.is_tracked(point) for point in points[1:-1])
    assert all(point[3].keys() == {"execution_time"} for point in points[1:-1])


@compiled
@ENCODER_SETTINGS
@given(
    series=NAME,
    text=st.one_of(st.none(), st.text(), st.integers(), st.floats()),
    seconds=st.one_of(st.floats(), st.integers(1, 10**15).map(lambda n: n / 1e9)),
    named=st.booleans(),
    dialect=st.sampled_from(["influxdb", VM]),
)
def test_compiled_encoder_writes_timed_points_as_python_does(series, text, seconds, named, dialect):
    """Timed points with any text and duration, shared and plain tags, new and cached, give
    the lines, counts and reasons the pure-Python path gives for their tuples."""
    tags = MappingProxyType({"service": "s", "route": series or "r"})
    extra = ("request_id", text) if named and text is not None else ()
    points = [
        speedups.TimedPoint(series or "m", 1 + i, shared, seconds, *extra)
        for i, shared in enumerate((tags, dict(tags), tags))
    ]
    assert encoded_twice(points, dialect, True) == encoded_twice(points, dialect, False)


class _Other:
    __slots__ = ("_luna_start_ns",)


class _BorrowedSlot:
    """A request class whose ``_luna_start_ns`` is another class's slot descriptor."""

    __slots__ = ("_luna_id", "headers")
    _luna_start_ns = _Other.__dict__["_luna_start_ns"]


@compiled
def test_compiled_request_attributes_go_through_getattr_unless_the_class_owns_the_slot():
    """A slot descriptor borrowed from an unrelated class is not read at its offset: the
    compiled code raises what getattr raises, as the Python code does."""
    request = _BorrowedSlot()
    request.headers = CIMultiDict()
    errors = []
    for assign in (speedups.assign_id, request_points.python_assign_id):
        with pytest.raises(TypeError) as raised:
            assign(request)
        errors.append(str(raised.value))
    assert errors[0] == errors[1]


class _Monitoring:
    """What a decorated handler's start and end use of the monitoring."""

    def __init__(self) -> None:
        self.clock = _Clock()
        self.settings = Settings.from_config({"version": 1, "database": "db", "service": "s"})
        self.emitted: list = []

    def emit_all(self, points: list) -> None:
        self.emitted.append(points)


class _Clock:
    def __init__(self) -> None:
        self.now_ns = iter(range(10**6)).__next__


class _HandlerRequest:
    monitoring: _Monitoring | None = None


collector_module.register_request_type(_HandlerRequest, lambda request: request.monitoring)


def handled(begin, end, args: tuple, record: bool) -> object:
    """What a decorated handler's start and end make of ``args``: nothing when monitoring
    is off, else the points emitted, with the collector current in between."""
    started = begin(args)
    if started is None:
        return None
    monitoring, collector, _token, _start = started
    assert collector_module.current_collector() is collector
    if record:
        collector.add_usage("face_detector")
    end(started)
    assert collector_module.current_collector() is not collector
    return [[(s, dict(t), sorted(f)) for s, _, t, f in points] for points in monitoring.emitted]


@compiled
@pytest.mark.parametrize("record", [True, False])
def test_compiled_handler_start_and_end_are_the_python_ones(record):
    """The monitoring found through the finders (a type seen before or not, arguments that
    are not requests skipped), the collector current in between, its points emitted."""
    on, off = _HandlerRequest(), _HandlerRequest()
    on.monitoring = _Monitoring()
    for args in [(), (1, "x"), (off,), ("x", on), (on, off), (off, on)]:
        outcomes = []
        for begin, end in [
            (speedups.begin_handler, speedups.end_handler),
            (collector_module._python_begin, collector_module._python_end),
        ]:
            collector_module._FINDERS.clear()  # the first argument type: not seen yet
            outcomes.append(handled(begin, end, args, record))
            on.monitoring.emitted.clear()
            outcomes.append(handled(begin, end, args, record))  # seen
            on.monitoring.emitted.clear()
        assert outcomes[0] == outcomes[1] == outcomes[2] == outcomes[3]
        first_request = next((arg for arg in args if isinstance(arg, _HandlerRequest)), None)
        assert (outcomes[0] is None) == (first_request is not on)


@compiled
@pytest.mark.parametrize(
    ("cls", "call"),
    [
        (collector_module.EstimationCollector, lambda c: c.estimation("mask", batch_size=1)),
        (
            collector_module.EstimationCollector,
            lambda c: c.image_load(format="JPEG", exif=True, autorotated=False),
        ),
        (collector_module.EstimationCollector, lambda c: c.add_usage("face_detector")),
        (collector_module.EstimationCollector, lambda c: c.points(0.5)),
        (Buffer, lambda b: b.append(("requests", 1, {}, {}))),
        (Buffer, lambda b: b.extend([("requests", 1, {}, {})])),
    ],
    ids=["estimation", "image_load", "add_usage", "points", "append", "extend"],
)
def test_compiled_methods_of_an_object_never_initialised_raise_as_python_does(cls, call):
    """Slots not set: the compiled method hands the call to Python, which raises
    ``AttributeError``, rather than reading what is not there."""
    with pytest.raises(AttributeError):
        call(cls.__new__(cls))
