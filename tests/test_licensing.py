"""Licensing points: the runtime object's report_license (Sanic and aiohttp), read back
from InfluxDB."""

from __future__ import annotations

import json

import httpx
import pytest
from apps.equivalent import monitoring_of, route

from luna_monitoring.core.licensing import license_tags_and_fields

WARNINGS = ["liveness balance is low", 'quote " backslash \\ and é']


@pytest.fixture
async def licensed_app(make_any_app, serve_any):
    """A served app (Sanic or aiohttp) whose only writes are the explicit flushes of the
    test."""
    app = make_any_app(service="licensed", flushing_period=60.0)

    @route(app, "POST", "/check")
    async def check(request):
        monitoring = monitoring_of(app)
        monitoring.report_license("warning", liveness_balance=10, warnings=WARNINGS)
        monitoring.report_license("warning", liveness_balance=9, warnings=iter(WARNINGS[:1]))
        monitoring.report_license("error", liveness_balance=0, errors=("license expired",))

    async with httpx.AsyncClient(base_url=await serve_any(app), trust_env=False) as client:
        assert (await client.post("/check")).status_code == 204
    await monitoring_of(app).flush()
    return app


class TestLicensingPoints:
    async def test_warning_and_error_points_carry_status_balance_and_json_arrays(
        self, licensed_app, influx_db
    ):
        """Each report is one point; warnings/errors are JSON arrays stored as strings."""
        points = influx_db.query("SELECT * FROM licensing")
        assert [{k: v for k, v in p.items() if k != "time"} for p in points] == [
            {
                "service": "licensed",
                "license_status": "warning",
                "liveness_balance": 10,
                "warnings": json.dumps(WARNINGS, ensure_ascii=False, separators=(",", ":")),
                "errors": "[]",
            },
            {
                "service": "licensed",
                "license_status": "warning",
                "liveness_balance": 9,
                "warnings": '["liveness balance is low"]',
                "errors": "[]",
            },
            {
                "service": "licensed",
                "license_status": "error",
                "liveness_balance": 0,
                "warnings": "[]",
                "errors": '["license expired"]',
            },
        ]
        assert json.loads(points[0]["warnings"]) == WARNINGS
        fields = influx_db.server.query_series("SHOW FIELD KEYS FROM licensing", influx_db.name)
        assert sorted(fields[0]["values"]) == [
            ["errors", "string"],
            ["liveness_balance", "integer"],
            ["warnings", "string"],
        ]

    @pytest.mark.parametrize(
        ("kwargs", "message"),
        [
            ({"liveness_balance": "10"}, "'liveness_balance' must be int, got str"),
            ({"liveness_balance": 1.5}, "'liveness_balance' must be int, got float"),
            ({"liveness_balance": True}, "'liveness_balance' must be int, got bool"),
            ({"liveness_balance": 1, "warnings": "low"}, "warnings must be a list of strings"),
            ({"liveness_balance": 1, "errors": [1]}, "errors must be a list of strings"),
            ({"liveness_balance": 1, "errors": None}, "errors must be a list of strings"),
        ],
    )
    async def test_wrong_values_raise_value_error_and_write_nothing(
        self, licensed_app, influx_db, kwargs, message
    ):
        """A wrong balance or message list fails at the call; nothing more is written."""
        with pytest.raises(ValueError) as error:
            monitoring_of(licensed_app).report_license("warning", **kwargs)
        assert message in str(error.value)
        await monitoring_of(licensed_app).flush()
        assert influx_db.count("licensing") == 3


class TestLicenseStatus:
    @pytest.mark.parametrize("status", ["ok", "WARNING", "", None])
    def test_only_warning_and_error_are_accepted(self, status):
        """license_status is "warning" or "error"; the message names both."""
        with pytest.raises(ValueError, match="must be one of warning, error"):
            license_tags_and_fields(status, liveness_balance=1)
