"""example_app served for real (its Sanic app and its aiohttp app), its points read back
from InfluxDB 1.x."""

from __future__ import annotations

import asyncio
import io
import json
import os
import re
import signal
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import httpx
import pytest
import sanic
from apps.equivalent import monitoring_of
from PIL import Image, ImageDraw
from sanic import Sanic
from servers import free_port, http_request, unique_name, wait_until

from example_app.aiohttp_app import create_app as create_aiohttp_app
from example_app.app import STATS_ROUTES, Options, create_app
from example_app.estimators import ISO_CHECKS, SDK_ESTIMATIONS
from luna_monitoring.core.schema import ESTIMATOR_SERIES

_WORKER_READY = (
    "Worker ready [" if int(sanic.__version__.split(".")[0]) >= 25 else "Starting worker ["
)
"""What a Sanic worker logs once it serves (before Sanic 25, "Starting worker" then)."""


def image_bytes(width: int = 320, height: int = 240, fmt: str = "JPEG", orientation: int = 1):
    """A gradient with an ellipse: never flat, so faces and bodies are found."""
    image = Image.linear_gradient("L").resize((width, height)).convert("RGB")
    ImageDraw.Draw(image).ellipse((20, 20, width // 2, height // 2), fill=(230, 190, 170))
    exif = Image.Exif()
    if orientation != 1:
        exif[0x0112] = orientation
    out = io.BytesIO()
    image.save(out, fmt, **({"exif": exif} if fmt == "JPEG" else {}))
    return out.getvalue()


class Service:
    """The running app, an HTTP client and its database."""

    def __init__(self, app: Any, client: httpx.AsyncClient, db: Any) -> None:
        self.app, self.client, self.db = app, client, db

    async def rows(self, series: str, at_least: int = 1, timeout_s: float = 10.0) -> list[dict]:
        """The points of ``series`` once at least ``at_least`` are stored (flushing meanwhile)."""
        deadline = time.monotonic() + timeout_s
        while True:
            await monitoring_of(self.app).flush()
            rows = self.db.query(f'SELECT * FROM "{series}"')
            if len(rows) >= at_least or time.monotonic() > deadline:
                return rows
            await asyncio.sleep(0.05)


@pytest.fixture
async def service(
    influx_db, framework: str, serve_any: Callable[[Any], Awaitable[str]]
) -> AsyncIterator[Callable[..., Awaitable[Service]]]:
    """``await service(**options)`` -> example_app on ``framework`` served, writing to
    ``influx_db``."""
    Sanic.test_mode = True
    names: list[str] = []
    clients: list[httpx.AsyncClient] = []

    async def start(**options: Any) -> Service:
        config = {"version": 1, "port": influx_db.server.port, "database": influx_db.name}
        if framework == "aiohttp":
            app = create_aiohttp_app(config, Options(**options))
        else:
            app = create_app(config, Options(**options), name=unique_name("example"))
            names.append(app.name)
        client = httpx.AsyncClient(base_url=await serve_any(app), trust_env=False, timeout=30)
        clients.append(client)
        return Service(app, client, influx_db)

    yield start
    for client in clients:
        await client.aclose()
    for name in names:
        Sanic._app_registry.pop(name, None)


class TestImages:
    async def test_exif_orientation_is_applied_and_recorded(self, service):
        """An EXIF-rotated JPEG is turned upright; image_load says so, with real sizes."""
        svc = await service()
        body = image_bytes(320, 240, orientation=6)
        response = await svc.client.post("/sdk", content=body)
        assert response.status_code == 200
        image = response.json()["images"][0]
        assert (image["format"], image["width"], image["height"]) == ("JPEG", 240, 320)
        assert image["autorotated"] is True
        [load] = await svc.rows("image_load")
        assert {
            k: load[k] for k in ("format", "exif", "autorotated", "size", "width", "height")
        } == {
            "format": "JPEG",
            "exif": "True",
            "autorotated": "True",
            "size": len(body),
            "width": 240,
            "height": 320,
        }
        assert isinstance(load["execution_time"], float)

    async def test_exif_can_be_ignored(self, service):
        """use_exif_info=0: the image stays as stored; exif and autorotated tags are False."""
        svc = await service()
        response = await svc.client.post("/sdk?use_exif_info=0", content=image_bytes(orientation=6))
        assert (response.json()["images"][0]["width"], response.status_code) == (320, 200)
        [load] = await svc.rows("image_load")
        assert (load["exif"], load["autorotated"], load["width"]) == ("False", "False", 320)

    async def test_request_carries_load_time(self, service):
        """/sdk adds load_images_for_processing_time to its requests point."""
        svc = await service()
        await svc.client.post("/sdk", content=image_bytes(fmt="PNG"))
        [request] = await svc.rows("requests")
        assert (request["route"], request["status_code"]) == ("POST:/sdk", "200")
        assert 0 < request["load_images_for_processing_time"] < request["execution_time"]

    async def test_multipart_batch(self, service):
        """Three multipart files: image_count 3, one batch per estimator, aggregation."""
        svc = await service()
        files = [("images", (f"{i}.png", image_bytes(200 + i, 150, "PNG"))) for i in range(3)]
        response = await svc.client.post(
            "/sdk?estimate=face_descriptor,livenessv1&aggregate=1", files=files
        )
        answer = response.json()
        faces = sum(len(image["faces"]) for image in answer["images"])
        assert [image["filename"] for image in answer["images"]] == ["0.png", "1.png", "2.png"]
        assert set(answer["aggregated"]) == {"aggregated_face_descriptor"}
        [task] = await svc.rows("sdkloop_task")
        assert task["image_count"] == "3"
        [descriptor] = await svc.rows("face_descriptor")
        assert (descriptor["batch_size"], descriptor["descriptor_version"]) == (str(faces), "59")
        [aggregated] = await svc.rows("aggregated_face_descriptor")
        assert aggregated["batch_size"] == str(faces)
        assert len(await svc.rows("face_detection", 3)) == 3
        [usages] = await svc.rows("usages_statistic")
        assert usages["face_detector_usages"] == 3
        assert usages["face_descriptor_extractor_usages"] == faces
        assert usages["liveness_estimator_usages"] == faces
        assert usages["body_detector_usages"] == 0


class TestEstimators:
    async def test_every_estimator_series_is_emitted(self, service):
        """/sdk with every estimation plus /iso cover all 38 estimator series."""
        svc = await service()
        everything = ",".join(sorted(SDK_ESTIMATIONS))
        sdk = await svc.client.post(
            f"/sdk?estimate={everything}&aggregate=1", content=image_bytes()
        )
        iso = await svc.client.post("/iso", content=image_bytes())
        assert (sdk.status_code, iso.status_code) == (200, 200)
        await svc.rows("usages_statistic", 2)
        stored = {series["name"] for series in svc.db.query_series("SELECT COUNT(*) FROM /.*/")}
        assert set(ESTIMATOR_SERIES) - stored == set()

    async def test_deepfake_mode_is_a_tag(self, service):
        """deepfake_mode=2 becomes the mode tag of the deepfake point."""
        svc = await service()
        await svc.client.post("/sdk?estimate=deepfake&deepfake_mode=2", content=image_bytes())
        [point] = await svc.rows("deepfake")
        assert point["mode"] == "2"

    async def test_iso_counts_usages(self, service):
        """/iso counts one iso_estimator usage per image and face_quality per face."""
        svc = await service()
        answer = (await svc.client.post("/iso", content=image_bytes())).json()
        faces = len(answer["images"][0]["faces"])
        assert faces >= 1
        assert set(answer["images"][0]["faces"][0]["estimations"]) == {
            name for name in ISO_CHECKS if name not in ("image_color_type", "image_orientation")
        }
        [usages] = await svc.rows("usages_statistic")
        assert (usages["iso_estimator_usages"], usages["face_quality_estimator_usages"]) == (
            1,
            faces,
        )

    async def test_same_image_same_answer(self, service):
        """The stand-in estimators are deterministic."""
        svc = await service()
        body = image_bytes(400, 300)
        url = "/sdk?estimate=head_pose,emotions,basic_attributes"
        first, second = [(await svc.client.post(url, content=body)).json() for _ in range(2)]
        assert first == second


class TestLicensing:
    async def test_balance_runs_out(self, service):
        """At or below the threshold: warnings; refused liveness (balance spent): errors."""
        svc = await service(liveness_balance=2, liveness_warning_threshold=1)
        body = image_bytes(400, 300)  # one face
        answers = []
        for _ in range(3):
            response = await svc.client.post("/sdk?estimate=livenessv1", content=body)
            answers.append(response.json()["images"][0]["faces"])
        assert [len(faces) for faces in answers] == [1, 1, 1]
        assert [faces[0]["estimations"]["livenessv1"] is None for faces in answers] == [
            False,
            False,
            True,
        ]
        rows = await svc.rows("licensing", 3)
        assert [(r["license_status"], r["liveness_balance"]) for r in rows] == [
            ("warning", 1),
            ("warning", 0),  # this request spent the last estimation and got its answer
            ("error", 0),
        ]
        assert rows[0]["warnings"] == '["liveness balance is low: 1 estimations left"]'
        assert rows[1]["warnings"] == '["liveness balance is low: 0 estimations left"]'
        assert rows[2]["errors"] == '["liveness balance is exhausted: liveness is not estimated"]'
        assert len(await svc.rows("livenessv1", 2)) == 2


class TestErrors:
    @pytest.mark.parametrize(
        ("method", "path", "body", "status", "error_code", "route"),
        [
            ("POST", "/sdk", b"not an image", 400, 12032, "POST:/sdk"),
            ("POST", "/iso", b"", 400, 12030, "POST:/iso"),
            ("POST", "/sdk", b"\xff" * 2001, 413, 12031, "POST:/sdk"),
            ("POST", "/sdk?estimate=teleport", b"x", 400, 12022, "POST:/sdk"),
            ("POST", "/sdk?use_exif_info=yes", b"x", 400, 12022, "POST:/sdk"),
            ("GET", "/no/such/route", None, 404, 12003, "GET:__unmatched__"),
            ("GET", "/sdk", None, 405, 12004, "GET:/sdk"),
        ],
    )
    async def test_luna_style_error(self, service, method, path, body, status, error_code, route):
        """Bad input: LUNA-style JSON, and an errors point with the same error_code."""
        svc = await service(max_image_size=2000)
        response = await svc.client.request(method, path, content=body)
        assert response.status_code == status
        answer = response.json()
        assert set(answer) == {"error_code", "desc", "detail"}
        assert answer["error_code"] == error_code
        [error] = await svc.rows("errors")
        assert (error["route"], error["status_code"], error["error_code"]) == (
            route,
            str(status),
            str(error_code),
        )
        assert svc.db.count("sdkloop_task") == 0

    @pytest.mark.parametrize(
        ("body", "detail"),
        [
            (b"not an image", "image 'body' is in no format Pillow reads"),
            (image_bytes()[:600], "image 'body' cannot be decoded: Truncated File Read"),
        ],
    )
    async def test_undecodable_image(self, service, body, detail):
        """An image Pillow cannot read or decode is named; no image_load point is written."""
        svc = await service()
        response = await svc.client.post("/sdk", content=body)
        assert (response.status_code, response.json()["detail"]) == (400, detail)
        await svc.rows("errors")
        assert svc.db.count("image_load") == 0

    async def test_empty_multipart_file(self, service):
        """An empty file among multipart files is named."""
        svc = await service()
        files = [("images", ("a.jpg", image_bytes())), ("images", ("b.jpg", b""))]
        response = await svc.client.post("/sdk", files=files)
        assert (response.status_code, response.json()["detail"]) == (400, "image 'b.jpg' is empty")


class TestRoutes:
    async def test_version(self, service):
        """GET /version names the luna-monitoring version."""
        svc = await service()
        answer = (await svc.client.get("/version")).json()
        assert answer["Version"]["api"] == 1
        assert answer["Version"]["luna_monitoring"].count(".") >= 2

    async def test_stats_route_is_not_monitored(self, service):
        """GET /monitoring/stats shows this worker's counters and emits no point itself."""
        svc = await service()
        await svc.client.get("/version")
        await svc.rows("requests")
        answer = (await svc.client.get("/monitoring/stats")).json()
        assert answer["stats"]["points_written"] >= 1
        assert {"points_buffered", "points_dropped", "write_errors"} <= set(answer["stats"])
        await monitoring_of(svc.app).flush()
        assert [r["route"] for r in svc.db.query('SELECT * FROM "requests"')] == ["GET:/version"]


class TestConfig:
    def test_monitoring_from_environment(self, monkeypatch):
        """Without a config, MONITORING comes from LUNA_MONITORING_* variables."""
        Sanic.test_mode = True
        monkeypatch.setenv("LUNA_MONITORING_VERSION", "1")
        monkeypatch.setenv("LUNA_MONITORING_DATABASE", "from_env")
        app = create_app(options=Options(), name=unique_name("example"))
        Sanic._app_registry.pop(app.name)
        assert app.config.MONITORING == {
            "version": 1,
            "database": "from_env",
            "excluded_routes": [STATS_ROUTES],
        }

    def test_options_from_environment(self):
        """LUNA_EXAMPLE_* variables set the example's options; a bad one is named."""
        options = Options.from_env({"LUNA_EXAMPLE_PORT": "9000", "LUNA_EXAMPLE_HOST": "::1"})
        assert (options.port, options.host, options.workers) == (9000, "::1", 1)
        with pytest.raises(ValueError, match=r"^LUNA_EXAMPLE_WORKERS: expected an integer"):
            Options.from_env({"LUNA_EXAMPLE_WORKERS": "two"})


def test_python_m_example_app_runs_from_any_directory(tmp_path, influx_db):
    """``python -m example_app`` outside the checkout, with 2 workers: it serves and writes."""
    port = free_port()
    env = {
        **{k: v for k, v in os.environ.items() if not k.startswith(("LUNA_", "PYTHONPATH"))},
        "LUNA_MONITORING_VERSION": "1",
        "LUNA_MONITORING_PORT": str(influx_db.server.port),
        "LUNA_MONITORING_DATABASE": influx_db.name,
        "LUNA_MONITORING_FLUSHING_PERIOD": "0.1",
        "LUNA_EXAMPLE_PORT": str(port),
        "LUNA_EXAMPLE_WORKERS": "2",
    }
    log_path = tmp_path / "example.log"
    with log_path.open("wb") as log:
        proc = subprocess.Popen(
            [sys.executable, "-m", "example_app"],
            cwd=tmp_path,
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    try:
        wait_until(
            lambda: http_request("GET", f"http://127.0.0.1:{port}/version").status == 200,
            timeout=60,
            ignore=(OSError,),
        )
        wait_until(lambda: influx_db.count("requests") >= 1, timeout=30)
        # Stopping before both workers are up trips a Sanic race (a BrokenPipeError).
        wait_until(lambda: log_path.read_text().count(_WORKER_READY) >= 2, timeout=60)
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            wait_until(lambda: log_path.read_text().count("Worker complete [") >= 2, 60)
            proc.wait(10)  # Sanic 25.12's main process sometimes hangs after its workers
        except subprocess.TimeoutExpired:
            pass
        finally:
            if proc.poll() is None:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait()
    log = log_path.read_text(errors="replace")
    assert "Traceback" not in log
    stats = [json.loads(line) for line in re.findall(r"monitoring stats: (\{.*\})", log)]
    assert len({entry["pid"] for entry in stats}) == len(stats) == 2  # once per worker
