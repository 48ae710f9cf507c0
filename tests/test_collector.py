"""SDK estimations: monitored_estimation, current_collector and the points read back."""

from __future__ import annotations

import asyncio
import contextlib
import math
import time
from collections import Counter
from collections.abc import Awaitable, Callable, Iterator
from decimal import Decimal
from fractions import Fraction
from typing import Any

import httpx
import pytest
from apps.equivalent import monitoring_of, route
from implementations import KINDS, swapped, swapped_methods, whole_nanoseconds
from servers import InfluxDatabase

from luna_monitoring import EstimationCollector, current_collector, monitored_estimation
from luna_monitoring.core import collector as collector_module
from luna_monitoring.core.clock import UniqueClock
from luna_monitoring.core.point import as_points
from luna_monitoring.core.schema import ESTIMATOR_SERIES, SERIES, USAGE_ESTIMATORS


@pytest.fixture(scope="module", params=KINDS, autouse=True)
def implementation(request: pytest.FixtureRequest) -> Iterator[str]:
    """Every test twice: with the compiled ``Timing``, collector methods and decorator start
    and end (``core/_speedups.c``) and in Python."""
    python = {
        "_timing": collector_module._python_timing,
        "_begin": collector_module._python_begin,
        "_end": collector_module._python_end,
    }
    with contextlib.ExitStack() as stack:
        for name, function in python.items():
            swap = contextlib.contextmanager(swapped)
            stack.enter_context(swap(request.param, collector_module, name, function))
        yield from swapped_methods(
            request.param, EstimationCollector, collector_module.COMPILED_METHODS
        )


SERVICE = "sdk-under-test"
INFLUX_TYPES = {float: "float", int: "integer", str: "string"}
NO_USAGES = {f"{name}_usages": 0 for name in USAGE_ESTIMATORS}


# ---------------------------------------------------------------------------- helpers


def _value(kind: type, n: int) -> int | float:
    """A distinct value of a field's declared type (floats exact in JSON)."""
    return n + 0.25 if kind is float else n


def _estimator_values(name: str, i: int) -> tuple[dict[str, str], dict[str, Any]]:
    """Extra tags and the non-timing fields recorded for series ``name`` as number ``i``."""
    spec = SERIES[name]
    tags = {tag: f"{tag}-{i}" for tag in spec.tags if tag != "batch_size"}
    fields = {
        key: _value(kind, 1000 * i + j)
        for j, (key, kind) in enumerate(spec.fields.items())
        if key != "execution_time"
    }
    return tags, fields


def _points_by_series(db: InfluxDatabase) -> dict[str, list[dict[str, Any]]]:
    """Every stored point as ``{column: value}`` (nulls of other measurements left out), by
    measurement, in time order."""
    return {
        s["name"]: [
            {c: v for c, v in zip(s["columns"], values, strict=True) if v is not None}
            for values in s["values"]
        ]
        for s in db.query_series("SELECT * FROM /.*/")
    }


def _schema_of(db: InfluxDatabase, statement: str) -> dict[str, dict[str, str]]:
    """``SHOW FIELD KEYS`` / ``SHOW TAG KEYS`` as ``{measurement: {key: type or key}}``."""
    return {s["name"]: {row[0]: row[-1] for row in s["values"]} for s in db.query_series(statement)}


Points = dict[str, list[dict[str, Any]]]


@pytest.fixture
def call(
    serve_any: Callable[[Any], Awaitable[str]], influx_db: InfluxDatabase
) -> Callable[..., Awaitable[tuple[list[httpx.Response], Points]]]:
    """``await call(app, *paths, expect={series: count})`` -> (responses, points read back).

    Serves ``app``, POSTs to the paths one after another on one keep-alive connection (or
    all at once with ``concurrently=True``), flushes and polls InfluxDB until the expected
    counts are there (or 10 s pass).
    """

    async def run(
        app: Any, *paths: str, expect: dict[str, int], concurrently: bool = False
    ) -> tuple[list[httpx.Response], Points]:
        base = await serve_any(app)
        limits = httpx.Limits(max_connections=50)
        async with httpx.AsyncClient(
            base_url=base, limits=limits, timeout=30, trust_env=False
        ) as client:
            if concurrently:
                responses = await asyncio.gather(*(client.post(path) for path in paths))
            else:
                responses = [await client.post(path) for path in paths]
        await monitoring_of(app).flush()
        deadline = time.monotonic() + 10
        while True:
            points = _points_by_series(influx_db)
            counts = {name: len(points.get(name, [])) for name in expect}
            if counts == expect or time.monotonic() > deadline:
                return responses, points
            await asyncio.sleep(0.05)

    return run


def _collector() -> EstimationCollector:
    return EstimationCollector(UniqueClock().now_ns, SERVICE)


# ---------------------------------------------------------------------------- points


class TestEstimatorSeries:
    async def test_every_estimator_series_is_written_with_its_tags_and_typed_fields(
        self, make_any_app, call, influx_db
    ):
        """Each of the 38 series: one point with batch_size, its extra tags, its own fields."""
        app = make_any_app(service=SERVICE)

        @route(app, "POST", "/all")
        @monitored_estimation
        async def all_series(request):
            collector = current_collector()
            for i, name in enumerate(ESTIMATOR_SERIES, 1):
                tags, fields = _estimator_values(name, i)
                with collector.estimation(name, batch_size=i, **tags) as estimation:
                    estimation.set(**fields)
            return None

        assert len(ESTIMATOR_SERIES) == 38
        _, points = await call(app, "/all", expect=dict.fromkeys(ESTIMATOR_SERIES, 1))
        field_types = _schema_of(influx_db, "SHOW FIELD KEYS")
        tag_keys = _schema_of(influx_db, "SHOW TAG KEYS")
        for i, name in enumerate(ESTIMATOR_SERIES, 1):
            spec = SERIES[name]
            tags, fields = _estimator_values(name, i)
            [point] = points[name]
            point.pop("time")
            assert point.pop("execution_time") > 0
            assert point == {"service": SERVICE, "batch_size": str(i), **tags, **fields}, name
            assert field_types[name] == {k: INFLUX_TYPES[t] for k, t in spec.fields.items()}
            assert set(tag_keys[name]) == {"service", *spec.tags}

    async def test_record_estimation_splits_tags_and_fields_and_starts_its_duration_ago(
        self, make_any_app, call
    ):
        """A timing measured elsewhere: tags and fields by schema, time = now - duration."""
        app = make_any_app()

        @route(app, "POST", "/recorded")
        @monitored_estimation
        async def recorded(request):
            collector = current_collector()
            collector.record_estimation(
                "face_descriptor", batch_size=4, execution_time=2, descriptor_version=59
            )
            collector.record_estimation(
                "face_detection", batch_size=1, execution_time=0.5, detection_count=3
            )
            return None

        before = time.time_ns()
        _, points = await call(app, "/recorded", expect={"face_descriptor": 1, "face_detection": 1})
        after = time.time_ns()
        [descriptor] = points["face_descriptor"]
        [detection] = points["face_detection"]
        assert before - 2_000_000_000 <= descriptor.pop("time") <= after - 2_000_000_000
        assert before - 500_000_000 <= detection.pop("time") <= after - 500_000_000
        assert descriptor == {
            "service": "luna-remote-sdk",
            "batch_size": "4",
            "descriptor_version": "59",
            "execution_time": 2,  # stored as float 2.0; JSON drops the ".0"
        }
        assert detection["detection_count"] == 3
        assert detection["execution_time"] == 0.5


class TestRequestPoints:
    async def test_request_emits_sdkloop_task_image_loads_and_usages_once(
        self, make_any_app, call, influx_db
    ):
        """Exact values of sdkloop_task, image_load and usages_statistic for one request."""
        app = make_any_app(service=SERVICE)

        @route(app, "POST", "/collect")
        @monitored_estimation
        async def collect(request):
            collector = current_collector()
            for size in (1000, 2000):
                with collector.image_load(format="JPEG", exif=True, autorotated=False) as load:
                    load.set(size=size, height=size // 10, width=size // 20)
            with collector.estimation("face_detection", batch_size=2) as estimation:
                await asyncio.sleep(0.02)
                estimation.set(detection_count=5)
            collector.add_usage("face_detector", 2)
            collector.add_usage("face_detector")
            collector.add_usage("deepfake_estimator", 0)
            await asyncio.sleep(0.03)
            return None

        before = time.time_ns()
        expect = {"sdkloop_task": 1, "image_load": 2, "face_detection": 1, "usages_statistic": 1}
        _, points = await call(app, "/collect", expect=expect)
        after = time.time_ns()

        [task] = points["sdkloop_task"]
        [usages] = points["usages_statistic"]
        [detection] = points["face_detection"]
        loads = points["image_load"]
        assert before <= task["time"] < loads[0]["time"] < loads[1]["time"] < detection["time"]
        assert detection["time"] <= after
        assert usages.pop("time") == task.pop("time")
        durations = [task.pop("execution_time"), detection["execution_time"]]
        durations += [load["execution_time"] for load in loads]
        assert all(whole_nanoseconds(seconds) for seconds in durations), durations
        assert 0.05 <= durations[0] < 5
        assert task == {"service": SERVICE, "image_count": "2"}
        assert usages == {"service": SERVICE, **NO_USAGES, "face_detector_usages": 3}
        for load, size in zip(loads, (1000, 2000), strict=True):
            del load["time"]
            assert 0 < load.pop("execution_time") < 1
            assert load == {
                "service": SERVICE,
                "format": "JPEG",
                "exif": "True",
                "autorotated": "False",
                "size": size,
                "height": size // 10,
                "width": size // 20,
            }
        assert 0.02 <= detection["execution_time"] < 5
        field_types = _schema_of(influx_db, "SHOW FIELD KEYS")
        assert field_types["sdkloop_task"] == {"execution_time": "float"}
        assert field_types["usages_statistic"] == dict.fromkeys(NO_USAGES, "integer")
        assert field_types["image_load"] == {
            "execution_time": "float",
            "size": "integer",
            "height": "integer",
            "width": "integer",
        }

    async def test_request_that_records_nothing_emits_no_points(self, make_any_app, call):
        """Only the request that recorded something has sdkloop_task and usages_statistic."""
        app = make_any_app()

        @route(app, "POST", "/nothing")
        @monitored_estimation
        async def nothing(request):
            current_collector()
            return None

        @route(app, "POST", "/usage")
        @monitored_estimation
        async def usage(request):
            current_collector().add_usage("mask_estimator", 7)
            return None

        expect = {"sdkloop_task": 1, "usages_statistic": 1}
        _, points = await call(app, "/nothing", "/nothing", "/usage", expect=expect)
        [task] = points["sdkloop_task"]
        [usages] = points["usages_statistic"]
        assert task["image_count"] == "0"
        assert usages["mask_estimator_usages"] == 7
        assert set(points) & {"image_load", *ESTIMATOR_SERIES} == set()

    async def test_failing_handler_emits_what_it_recorded_but_not_the_failed_block(
        self, make_any_app, call
    ):
        """A block that raises records nothing; the handler's earlier records are kept."""
        app = make_any_app()

        @route(app, "POST", "/fails")
        @monitored_estimation
        async def fails(request):
            collector = current_collector()
            with collector.estimation("mask", batch_size=1):
                pass
            with collector.estimation("eyes", batch_size=1):
                raise RuntimeError("estimator crashed")

        responses, points = await call(app, "/fails", expect={"sdkloop_task": 1, "mask": 1})
        assert responses[0].status_code == 500
        assert len(points["sdkloop_task"]) == len(points["mask"]) == 1
        assert "eyes" not in points


# ---------------------------------------------------------------------------- context


class TestContext:
    async def test_collector_reaches_tasks_threads_and_sync_handlers(self, make_any_app, call):
        """Records made in a task, in asyncio.to_thread and in a sync handler are emitted."""
        app = make_any_app()

        def in_thread() -> None:
            current_collector().record_estimation("livenessv1", batch_size=3, execution_time=0.1)
            current_collector().add_usage("liveness_estimator")

        async def in_task() -> None:
            with current_collector().estimation("emotions", batch_size=2):
                await asyncio.sleep(0)
            current_collector().add_usage("emotion_estimator")

        @route(app, "POST", "/async")
        @monitored_estimation
        async def in_async(request):
            await asyncio.create_task(in_task())
            await asyncio.to_thread(in_thread)
            return None

        @route(app, "POST", "/sync")
        @monitored_estimation
        def in_sync(request):
            with current_collector().estimation("glasses", batch_size=1):
                pass
            current_collector().add_usage("glasses_estimator")
            return None

        expect = {"sdkloop_task": 2, "livenessv1": 1, "emotions": 1, "glasses": 1}
        responses, points = await call(app, "/async", "/sync", expect=expect)
        assert [r.status_code for r in responses] == [204, 204]
        assert {name: len(points[name]) for name in expect} == expect
        usages = sorted(
            (
                u["liveness_estimator_usages"],
                u["emotion_estimator_usages"],
                u["glasses_estimator_usages"],
            )
            for u in points["usages_statistic"]
        )
        assert usages == [(0, 0, 1), (1, 1, 0)]

    async def test_undecorated_handler_gets_a_collector_that_records_nothing(
        self, make_any_app, call
    ):
        """current_collector() outside a decorated handler (here after a decorated one on the
        same connection) accepts every call and emits nothing."""
        app = make_any_app()

        @route(app, "POST", "/plain")
        async def plain(request):
            collector = current_collector()
            with collector.estimation("face_detection", batch_size=9) as estimation:
                estimation.set(detection_count=1)
            with collector.image_load(format="PNG", exif=False, autorotated=False) as load:
                load.set(size=1)
            collector.record_estimation("mask", batch_size=9, execution_time=0.1)
            collector.add_usage("face_detector")
            return {"points": len(collector.points(1.0))}

        @route(app, "POST", "/decorated")
        @monitored_estimation
        async def decorated(request):
            with current_collector().estimation("face_detection", batch_size=1):
                pass
            return None

        expect = {"sdkloop_task": 1, "face_detection": 1}
        responses, points = await call(app, "/decorated", "/plain", expect=expect)
        assert responses[1].json() == {"points": 0}
        assert [p["batch_size"] for p in points["face_detection"]] == ["1"]
        assert "mask" not in points and "image_load" not in points

    async def test_concurrent_requests_never_share_a_collector(self, make_any_app, call):
        """200 interleaved requests: each request's usages and image count are its own."""
        app = make_any_app()
        running = {"now": 0, "most": 0}

        def in_thread(i: int) -> None:
            current_collector().record_estimation("livenessv1", batch_size=i, execution_time=0.0)
            current_collector().add_usage("liveness_estimator", i)

        async def in_task(i: int) -> None:
            with current_collector().estimation("mask", batch_size=i):
                await asyncio.sleep(0.001)
            current_collector().add_usage("mask_estimator", i)

        @route(app, "POST", "/iso/<i>")
        @monitored_estimation
        async def iso(request, i: str):
            i = int(i)
            running["now"] += 1
            running["most"] = max(running["most"], running["now"])
            for _ in range(i % 3 + 1):
                with current_collector().image_load(
                    format="PNG", exif=False, autorotated=True
                ) as load:
                    await asyncio.sleep(0.001)
                    load.set(size=i)
                await asyncio.sleep(0)
            await asyncio.gather(in_task(i), asyncio.to_thread(in_thread, i))
            with current_collector().estimation("face_detection", batch_size=i) as estimation:
                await asyncio.sleep(0.01)
                estimation.set(detection_count=i)
            current_collector().add_usage("face_detector", i)
            running["now"] -= 1
            return None

        ids = range(1, 201)
        expect = {
            "sdkloop_task": 200,
            "usages_statistic": 200,
            "image_load": sum(i % 3 + 1 for i in ids),
            "face_detection": 200,
            "mask": 200,
            "livenessv1": 200,
        }
        paths = (f"/iso/{i}" for i in ids)
        responses, points = await call(app, *paths, expect=expect, concurrently=True)
        assert {r.status_code for r in responses} == {204}
        assert running["most"] >= 20, "requests did not interleave"
        assert {name: len(points[name]) for name in expect} == expect

        tasks = {task["time"]: task for task in points["sdkloop_task"]}
        seen = []
        for usage in points["usages_statistic"]:
            i = usage["face_detector_usages"]
            seen.append(i)
            assert usage["mask_estimator_usages"] == usage["liveness_estimator_usages"] == i
            assert tasks[usage["time"]]["image_count"] == str(i % 3 + 1)
        assert sorted(seen) == list(ids)
        sizes = Counter(load["size"] for load in points["image_load"])
        assert sizes == {i: i % 3 + 1 for i in ids}
        for name in ("face_detection", "mask", "livenessv1"):
            assert sorted(int(p["batch_size"]) for p in points[name]) == list(ids), name
        assert all(p["detection_count"] == int(p["batch_size"]) for p in points["face_detection"])

    async def test_disabled_monitoring_keeps_decorated_handlers_working(
        self, make_any_app, serve_any
    ):
        """send_data_for_monitoring=False: the handler runs, its collector records nothing."""
        app = make_any_app(send_data_for_monitoring=False)

        @route(app, "POST", "/collect")
        @monitored_estimation
        async def collect(request):
            collector = current_collector()
            with collector.estimation("face_detection", batch_size=1):
                pass
            collector.add_usage("face_detector")
            return {"points": len(collector.points(1.0))}

        async with httpx.AsyncClient(base_url=await serve_any(app), trust_env=False) as client:
            response = await client.post("/collect")
        assert response.json() == {"points": 0}
        assert monitoring_of(app) is None


# ---------------------------------------------------------------------------- misuse


class TestNullCollector:
    def test_outside_a_handler_every_call_is_accepted_and_nothing_recorded(self):
        """The shared collector: context managers work, .set() is accepted, no points."""
        collector = current_collector()
        with collector.estimation("no_such_series", batch_size=1) as estimation:
            estimation.set(anything=object())
        with collector.image_load(format="JPEG", exif=True, autorotated=True) as load:
            load.set(size=1)
        collector.record_estimation("mask", batch_size=1, execution_time=-1)
        collector.add_usage("no_such_estimator", -5)
        assert collector.points(1.0) == []
        assert current_collector() is collector


class TestMisuse:
    @pytest.mark.parametrize(
        ("misuse", "message"),
        [
            (lambda c: c.estimation("face", batch_size=1), "valid series: aggregated_basic"),
            (lambda c: c.estimation("requests", batch_size=1), "unknown series 'requests'"),
            (lambda c: c.record_estimation("x", batch_size=1, execution_time=1.0), "face_warp"),
            (lambda c: c.estimation("face_descriptor", batch_size=1), "descriptor_version"),
            (lambda c: c.estimation("deepfake", batch_size=1), "required: batch_size, mode"),
            (lambda c: c.estimation("mask", batch_size=1, mode="x"), "valid tags: batch_size"),
            (lambda c: c.estimation("mask", batch_size=None), "missing required tag(s) batch"),
            (lambda c: c.estimation("mask", batch_size=[1]), "'batch_size' must be str, int"),
            (lambda c: c.add_usage("face_detection"), "valid estimators: people_counter"),
            (lambda c: c.add_usage("face_detector", True), "must be an int >= 0, got True"),
            (lambda c: c.add_usage("face_detector", -1), "must be an int >= 0, got -1"),
            (
                lambda c: c.record_estimation("mask", batch_size=1, execution_time=-0.5),
                "execution_time must be a finite number >= 0, got -0.5",
            ),
            (
                lambda c: c.record_estimation("mask", batch_size=1, execution_time=math.nan),
                "execution_time must be a finite number >= 0, got nan",
            ),
            (
                lambda c: c.record_estimation("mask", batch_size=1, execution_time="1"),
                "'execution_time' must be float, got str",
            ),
            (
                lambda c: c.record_estimation("mask", batch_size=1, execution_time=1, size=2),
                "unknown field 'size'; valid fields: execution_time",
            ),
            (
                lambda c: c.image_load(format=None, exif=True, autorotated=True),
                "missing required tag(s) format",
            ),
        ],
    )
    def test_wrong_call_raises_value_error_naming_the_valid_choices(self, misuse, message):
        """Misuse raises ValueError at the call, with the valid choices in the message."""
        with pytest.raises(ValueError) as error:
            misuse(_collector())
        assert message in str(error.value)

    @pytest.mark.parametrize(
        ("fields", "message"),
        [
            ({"detection_count": "3"}, "'detection_count' must be int, got str"),
            ({"detection_count": 2.5}, "'detection_count' must be int, got float 2.5"),
            ({"detection_count": Decimal("0.5")}, "'detection_count' must be int, got Decimal"),
            ({"detection_count": True}, "'detection_count' must be int, got bool"),
            ({"execution_time": "0.1"}, "'execution_time' must be float, got str"),
            ({"detection_count": 2**63}, "outside the int64 range"),
            ({"bbox_width": 1}, "unknown field 'bbox_width'; valid fields: execution_time, face"),
            (
                {"detection_count": 1, "bbox_width": 1},
                "unknown field 'bbox_width'; valid fields: execution_time, face",
            ),
        ],
    )
    def test_wrong_field_raises_value_error_at_set(self, fields, message):
        """.set() checks each field's name and type against the series."""
        with (
            pytest.raises(ValueError) as error,
            _collector().estimation("face_detection", batch_size=1) as estimation,
        ):
            estimation.set(**fields)
        assert message in str(error.value)

    def test_real_numbers_become_floats_and_integral_ones_ints(self):
        """Decimal, Fraction and integral floats are numbers a field can take."""
        collector = _collector()
        with collector.estimation("face_detection", batch_size=1) as estimation:
            estimation.set(detection_count=2.0, image_height=Decimal("3"), image_width=Fraction(8))
            estimation.set(execution_time=Decimal("0.25"))
        _task, (_, _, _, fields), _usages = collector.points(1.0)
        assert fields == {
            "detection_count": 2,
            "image_height": 3,
            "image_width": 8,
            "execution_time": 0.25,
        }
        assert [type(v) for v in fields.values()] == [int, int, int, float]

    def test_none_nan_and_inf_fields_are_left_out_and_ints_become_floats(self):
        """Values that cannot be written are dropped (a NaN execution_time leaves the measured
        one); an int execution_time becomes float."""
        collector = _collector()
        with collector.estimation("face_detection", batch_size=1) as estimation:
            estimation.set(detection_count=None, image_height=math.nan, image_width=math.inf)
            estimation.set(face_detection_height=7)
        collector.record_estimation("mask", batch_size=1, execution_time=2)
        with collector.estimation("eyes", batch_size=1) as estimation:
            estimation.set(execution_time=math.nan)
        with collector.estimation("eyes", batch_size=1) as estimation:
            estimation.set(execution_time=-math.inf)
        _task, detection, mask, *eyes, _usages = as_points(collector.points(1.0))
        assert set(detection.fields) == {"face_detection_height", "execution_time"}
        assert mask.fields == {"execution_time": 2.0}
        assert type(mask.fields["execution_time"]) is float
        assert [0 <= point.fields["execution_time"] < 1 for point in eyes] == [True, True]

    def test_int64_bounds_are_kept_and_an_int_execution_time_becomes_float(self):
        """The int64 bounds are valid ints; execution_time=3 replaces the measured time as 3.0."""
        collector = _collector()
        with collector.estimation("face_detection", batch_size=1) as estimation:
            estimation.set(detection_count=-(2**63), image_height=2**63 - 1, execution_time=3)
        _task, detection, _usages = as_points(collector.points(1.0))
        assert detection.fields == {
            "detection_count": -(2**63),
            "image_height": 2**63 - 1,
            "execution_time": 3.0,
        }
        assert type(detection.fields["execution_time"]) is float

    @pytest.mark.parametrize(
        ("series", "tags", "message"),
        [
            ("mask", {"descriptor_version": 59}, "unknown tag 'descriptor_version'"),
            ("deepfake", {"descriptor_version": 59}, "missing required tag(s) mode"),
            ("face_descriptor", {"mode": 59}, "missing required tag(s) descriptor_version"),
            ("face_descriptor", {}, "missing required tag(s) descriptor_version"),
            ("face", {"descriptor_version": 59}, "unknown series 'face'"),
            ("face", {}, "unknown series 'face'"),
        ],
    )
    def test_a_tag_set_made_before_is_still_checked_against_the_series(self, series, tags, message):
        """After valid calls with the same batch size and tags, a wrong series still raises."""
        collector = _collector()
        collector.estimation("mask", batch_size=4)
        collector.estimation("face_descriptor", batch_size=4, descriptor_version=59)
        with pytest.raises(ValueError) as error:
            collector.estimation(series, batch_size=4, **tags)
        assert message in str(error.value)


class TestTagSets:
    def test_tag_values_are_written_as_given_whatever_was_recorded_before(self):
        """1, True, 1.0 and "1" are equal keys but different tag values; each keeps its text."""
        collector = _collector()
        values = [1, True, 1.0, "1", 1, "fast"]
        for value in values:
            with collector.estimation("face_descriptor", batch_size=1, descriptor_version=value):
                pass
            collector.record_estimation("deepfake", batch_size=1, execution_time=0.0, mode=value)
        for batch_size in (1, True, 1, 2):
            with collector.estimation("mask", batch_size=batch_size):
                pass
        _task, *estimations, _usages = as_points(collector.points(1.0))
        tags = [point.tags for point in estimations]
        expected = ["1", "True", "1.0", "1", "1", "fast"]
        assert [t["descriptor_version"] for t in tags[0:12:2]] == expected
        assert [t["mode"] for t in tags[1:12:2]] == expected
        assert [t["batch_size"] for t in tags[12:]] == ["1", "True", "1", "2"]
        assert all(t["service"] == SERVICE for t in tags)
        assert [set(t) for t in tags[:2]] == [
            {"service", "batch_size", "descriptor_version"},
            {"service", "batch_size", "mode"},
        ]

    def test_estimator_point_tags_are_read_only(self):
        """Points share their tag set, so nobody (a plugin, say) can change it for the rest."""
        collector = _collector()
        with collector.estimation("mask", batch_size=1):
            pass
        _task, mask, _usages = as_points(collector.points(1.0))
        with pytest.raises(TypeError):
            mask.tags["batch_size"] = "2"  # type: ignore[index]
        assert mask.tags == {"service": SERVICE, "batch_size": "1"}

    def test_tag_sets_kept_for_reuse_are_bounded(self):
        """20,000 batch sizes: at most 10,000 tag sets are kept; every point has its own."""
        collector = EstimationCollector(UniqueClock().now_ns, "sdk-many-batch-sizes")
        for batch_size in range(20_000):
            collector.record_estimation("mask", batch_size=batch_size, execution_time=0.0)
        _task, *masks, _usages = as_points(collector.points(1.0))
        assert [int(point.tags["batch_size"]) for point in masks] == list(range(20_000))
        assert 0 < len(collector_module._TAG_SETS["sdk-many-batch-sizes"]) <= 10_000

    def test_image_load_tags_are_shared_read_only_and_written_as_given(self):
        """Loads with the same tags share one read-only mapping; 1 is not True for ``exif``."""
        collector = _collector()
        recorded = [("JPEG", True, False), ("JPEG", True, False), ("PNG", True, False)]
        recorded += [("JPEG", False, True), ("JPEG", 1, 0), ("JPEG", True, False)]
        for image_format, exif, autorotated in recorded:
            with collector.image_load(format=image_format, exif=exif, autorotated=autorotated):
                pass
        _task, *loads, _usages = as_points(collector.points(1.0))
        assert loads[0].tags is loads[1].tags is loads[5].tags
        assert loads[0].tags is not loads[2].tags
        written = [(p.tags["format"], p.tags["exif"], p.tags["autorotated"]) for p in loads]
        assert written == [
            ("JPEG", "True", "False"),
            ("JPEG", "True", "False"),
            ("PNG", "True", "False"),
            ("JPEG", "False", "True"),
            ("JPEG", "1", "0"),
            ("JPEG", "True", "False"),
        ]
        assert all(point.tags["service"] == SERVICE for point in loads)
        with pytest.raises(TypeError):
            loads[0].tags["format"] = "PNG"  # type: ignore[index]
        for bad in ({"format": "JPEG", "exif": [1]}, {"format": ["JPEG"], "exif": True}):
            with pytest.raises(ValueError, match="must be str, int, float or bool"):
                collector.image_load(autorotated=False, **bad)
