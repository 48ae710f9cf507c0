"""The shipped Grafana dashboards: generated from the schema, every query run for real.

Every target, annotation and template-variable query of every dashboard runs against a real
InfluxDB 1.x holding the example service's traffic (the ``demo_traffic`` fixture), after the
substitutions Grafana 10/11's InfluxDB data source (InfluxQL mode) makes before it sends a
query. The rules, as :func:`interpolate` applies them:

- ``$timeFilter`` -> ``time >= now() - 1h`` for the dashboards' relative range "last hour"
  (the browser-side form); the server-side form, used when Grafana runs InfluxQL in its
  backend, is an absolute range in epoch milliseconds,
  ``time >= 1700000000000ms and time <= 1700003600000ms``. Both are run.
- ``$__interval_ms`` -> ``10000`` and ``$__interval`` -> ``10s`` (Grafana derives them from
  the range and panel width; the provisioned data source's ``timeInterval`` is 10s).
- A variable that is neither multi-value nor has "All" -> its value as is (the shipped
  dashboards have none: a value with a quote would break a string comparison).
- A multi-value or "All" variable (``$service``, ``$route``, ``$estimator``) -> each value
  regex-escaped
  the way Grafana's ``escapeRegex`` does (a backslash before ``\\ ^ $ * + ? . ( ) | [ ] { } /``),
  one value alone, several as ``(a|b)``; "All" without a custom all-value is every value.
  The queries use them as ``/^$route$/``, so ``POST:/sdk`` becomes ``/^POST:\\/sdk$/`` and
  several routes ``/^(POST:\\/sdk|POST:\\/iso)$/``. The non-capturing form
  ``/^(?:POST:\\/sdk|POST:\\/iso)$/`` is run too (with the server-side time filter).
- A variable's own query gets the variables defined before it, by the same rules.

A query that InfluxDB rejects, that names a field the data does not hold, or that returns no
series fails the test with the dashboard's and panel's title.
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
import time
import urllib.error
from collections.abc import Iterator
from pathlib import Path
from typing import Any, NamedTuple

import pytest
import yaml

from example_app.demo import DATABASE
from example_app.influxd import http
from luna_monitoring.cli.main import main as cli_main
from luna_monitoring.core.point import LineEncoder, Point, join_lines
from luna_monitoring.core.schema import ESTIMATOR_SERIES, SERIES
from luna_monitoring.dashboards import (
    dashboard_dir,
    dashboard_names,
    load_dashboard,
    write_dashboards,
)
from luna_monitoring.dashboards.generator import main as generator_main
from luna_monitoring.dashboards.generator import queries
from luna_monitoring.dashboards.generator.build import render

ROOT = Path(__file__).resolve().parent.parent
GRID_COLUMNS = 24
INTERVAL_S = 10
DATASOURCE_REF = {"type": "influxdb", "uid": "${datasource}"}
_REGEX_SPECIAL = re.compile(r"[\\^$*+?.()|\[\]{}/]")
_IDENT = re.compile(r'"((?:[^"\\]|\\.)*)"')
_VARIABLE = re.compile(r"\$(\w+)")

DASHBOARDS = {name: load_dashboard(name) for name in dashboard_names()}


class Query(NamedTuple):
    """One InfluxQL query of a dashboard and where it is."""

    dashboard: str
    where: str
    text: str
    alias: str | None = None

    @property
    def title(self) -> str:
        return f"{self.dashboard} / {self.where}"


def _panels(panels: list[dict[str, Any]]) -> Iterator[dict[str, Any]]:
    for panel in panels:
        yield panel
        yield from _panels(panel.get("panels", []))


def variables(dashboard: dict[str, Any]) -> list[dict[str, Any]]:
    return dashboard["templating"]["list"]


def panel_queries() -> list[Query]:
    """Every panel target and annotation query of every dashboard."""
    found = []
    for board in DASHBOARDS.values():
        for panel in _panels(board["panels"]):
            for target in panel.get("targets", []):
                where = f"{panel['title']} [{target['refId']}]"
                found.append(Query(board["title"], where, target["query"], target.get("alias")))
        for annotation in board["annotations"]["list"]:
            found.append(
                Query(board["title"], f"annotation {annotation['name']}", annotation["query"])
            )
    return found


def variable_queries() -> list[Query]:
    return [
        Query(board["title"], f"variable ${v['name']}", v["query"])
        for board in DASHBOARDS.values()
        for v in variables(board)
        if v["type"] == "query"
    ]


# --- Grafana's substitutions -------------------------------------------------------------


def escape_regex(value: str) -> str:
    """Grafana's ``escapeRegex``."""
    return _REGEX_SPECIAL.sub(lambda m: "\\" + m[0], value)


class Macros(NamedTuple):
    """What Grafana puts for ``$timeFilter``, and how it groups several regex alternatives."""

    time_filter: str
    group: str = "("


def format_variable(variable: dict[str, Any], values: list[str], group: str = "(") -> str:
    """A variable's selected ``values`` as Grafana's InfluxDB data source writes them."""
    if not variable.get("multi") and not variable.get("includeAll"):
        assert len(values) == 1, f"${variable['name']} takes one value"
        return values[0]
    escaped = [escape_regex(value) for value in values]
    return escaped[0] if len(escaped) == 1 else group + "|".join(escaped) + ")"


def interpolate(
    text: str, dashboard: dict[str, Any], selected: dict[str, list[str]], macros: Macros
) -> str:
    """``text`` with macros and the variables ``selected`` (name -> values) substituted."""
    text = text.replace("$timeFilter", macros.time_filter)
    text = text.replace("$__interval_ms", str(INTERVAL_S * 1000))
    text = text.replace("$__interval", f"{INTERVAL_S}s")
    by_name = {v["name"]: v for v in variables(dashboard)}

    def substitute(match: re.Match[str]) -> str:
        name = match[1]
        assert name in selected, f"${name} is not a variable of {dashboard['title']}"
        return format_variable(by_name[name], selected[name], macros.group)

    return _VARIABLE.sub(substitute, text)


LAST_HOUR = Macros("time >= now() - 1h")


def both_forms() -> list[Macros]:
    """The browser-side form of "the last hour" with ``(a|b)``; the server-side form with
    ``(?:a|b)``."""
    now_ms = time.time_ns() // 1_000_000
    return [LAST_HOUR, Macros(f"time >= {now_ms - 3_600_000}ms and time <= {now_ms}ms", "(?:")]


# --- running queries ------------------------------------------------------------------------


def run(influx: Any, query: Query, text: str, db: str = DATABASE) -> list[dict[str, Any]]:
    """The series ``text`` returns; fails naming the panel on an error or no series."""
    try:
        series = influx.query(text, db)
    except urllib.error.HTTPError as exc:  # a parse error is a 400 with {"error": ...}
        detail = exc.read().decode(errors="replace")
        exc.close()
        pytest.fail(f"{query.title}: InfluxDB rejected the query ({exc.code}): {detail}")
    except RuntimeError as exc:  # an error of the statement itself
        pytest.fail(f"{query.title}: InfluxDB rejected the query: {exc}")
    if not series:
        pytest.fail(f"{query.title}: no series (unknown field or tag, or no data): {text}")
    return series


def tag_values(series: list[dict[str, Any]]) -> list[str]:
    """The values of a ``SHOW TAG VALUES`` / ``SHOW MEASUREMENTS`` result."""
    return [row[-1] for s in series for row in s["values"]]


@pytest.fixture(scope="module")
def selections(demo_traffic) -> dict[str, dict[str, list[str]]]:
    """Per dashboard title: every variable set to "All" of what its query returns."""
    influx, _ = demo_traffic
    chosen = {}
    for board in DASHBOARDS.values():
        selected: dict[str, list[str]] = {}
        for variable in variables(board):
            if variable["type"] != "query":
                continue
            query = Query(board["title"], f"variable ${variable['name']}", variable["query"])
            text = interpolate(query.text, board, selected, LAST_HOUR)
            values = tag_values(run(influx, query, text))
            selected[variable["name"]] = values if variable.get("multi") else values[:1]
        chosen[board["title"]] = selected
    return chosen


def panel_result(
    influx: Any,
    query: Query,
    selected: dict[str, list[str]],
    macros: Macros = LAST_HOUR,
    db: str = DATABASE,
) -> list[dict[str, Any]]:
    board = next(b for b in DASHBOARDS.values() if b["title"] == query.dashboard)
    return run(influx, query, interpolate(query.text, board, selected, macros), db)


def find(where: str) -> Query:
    return next(q for q in panel_queries() if q.where == where)


def single_value(series: list[dict[str, Any]]) -> float:
    assert len(series) == 1 and len(series[0]["values"]) == 1, series
    return series[0]["values"][0][1]


# --- generated from the schema ------------------------------------------------------------


def test_committed_json_is_the_generator_output():
    """The JSON files in the package are exactly what the generator writes now."""
    rendered = render()
    assert sorted(rendered) == dashboard_names()
    for name, text in rendered.items():
        assert (dashboard_dir() / name).read_text() == text, (
            f"{name} is stale: run python -m luna_monitoring.dashboards.generator"
        )


def test_generator_check_says_up_to_date(capsys):
    """``--check`` exits 0 and says so when nothing is stale."""
    assert generator_main(["--check"]) == 0
    assert capsys.readouterr().out == "dashboards are up to date\n"


def _estimator_choices() -> list[str]:
    board = next(
        b for b in DASHBOARDS.values() if any(v["name"] == "estimator" for v in variables(b))
    )
    query = next(v["query"] for v in variables(board) if v["name"] == "estimator")
    return re.fullmatch(r"SHOW MEASUREMENTS WITH MEASUREMENT =~ /\^\((.*)\)\$/", query)[1].split(
        "|"
    )


def named_series(text: str) -> list[str]:
    """The series a query reads: its ``FROM`` list, or the choices of ``/^$estimator$/``."""
    source = re.search(r" FROM (.+?) WHERE ", text)[1]
    if source == "/^$estimator$/":
        return _estimator_choices()
    names = [m[1] for m in _IDENT.finditer(source)]
    assert ", ".join(f'"{n}"' for n in names) == source, f"unexpected FROM {source!r}"
    return names


def named_columns(text: str) -> tuple[list[str], list[str]]:
    """(fields or tags read in SELECT, tags used in WHERE and GROUP BY) of a query."""
    select = re.search(r"^SELECT (.+?) FROM ", text)[1]
    select = re.sub(r' AS "[^"]*"', "", select)
    rest = text.split(" WHERE ", 1)[1]
    return [m[1] for m in _IDENT.finditer(select)], [m[1] for m in _IDENT.finditer(rest)]


@pytest.mark.parametrize("query", panel_queries(), ids=lambda q: q.title)
def test_every_series_field_and_tag_named_is_in_the_schema(query):
    """What a panel names exists in the schema, in every series it reads."""
    for name in named_series(query.text):
        assert name in SERIES, f"{query.title}: unknown series {name!r}"
        series = SERIES[name]
        columns, tags = named_columns(query.text)
        for column in columns:
            assert column in series.fields or column in series.tags, (
                f"{query.title}: {name} has no field or tag {column!r}"
            )
        for tag in tags:
            assert tag in ("service", *series.tags), f"{query.title}: {name} has no tag {tag!r}"


def test_every_schema_series_appears_in_a_panel():
    """All 44 series are read by some panel."""
    shown = {name for query in panel_queries() for name in named_series(query.text)}
    assert shown == set(SERIES), sorted(set(SERIES) - shown)


class TestGeneratorChecksTheSchema:
    """The generator refuses, while it builds, what the schema does not have."""

    def test_unknown_series(self):
        with pytest.raises(ValueError, match="unknown series 'request'; valid series: requests"):
            queries.measurement("request")

    def test_unknown_field(self):
        with pytest.raises(ValueError, match="field 'latency' is not in series requests"):
            queries.measurement("requests").field("latency")

    def test_field_missing_from_one_of_several_series(self):
        source = queries.measurements(["face_detection", "eyes"])
        assert source.field("execution_time") == '"execution_time"'
        with pytest.raises(ValueError, match=r"field 'detection_count' is not in series eyes$"):
            source.field("detection_count")

    def test_unknown_tag(self):
        with pytest.raises(ValueError, match="tag 'route' is not in series usages_statistic"):
            queries.measurement("usages_statistic").matches("route", "route")

    def test_identifiers_are_quoted_and_escaped(self):
        assert queries.ident('a"b\\c') == '"a\\"b\\\\c"'


def test_estimator_variable_offers_every_estimator_series():
    """``$estimator`` chooses among exactly the schema's estimator series."""
    assert _estimator_choices() == list(ESTIMATOR_SERIES)


# --- every query against a real InfluxDB ------------------------------------------------------


@pytest.mark.parametrize("query", variable_queries(), ids=lambda q: q.title)
def test_variable_query_returns_values(demo_traffic, selections, query):
    """``SHOW TAG VALUES`` / ``SHOW MEASUREMENTS`` of each variable return what was sent."""
    influx, _ = demo_traffic
    board = next(b for b in DASHBOARDS.values() if b["title"] == query.dashboard)
    values = tag_values(
        run(
            influx,
            query,
            interpolate(query.text, board, selections[query.dashboard], LAST_HOUR),
        )
    )
    name = query.where.removeprefix("variable $")
    expected = {
        "service": ["luna-remote-sdk"],
        "estimator": sorted(ESTIMATOR_SERIES),
        "route": ["GET:__unmatched__", "POST:/iso", "POST:/sdk"],
    }[name]
    assert sorted(values) == expected, query.title


@pytest.mark.parametrize("query", panel_queries(), ids=lambda q: q.title)
def test_panel_query_returns_series(demo_traffic, selections, query):
    """Each target and annotation, with both time filter forms, returns series with data."""
    influx, _ = demo_traffic
    for macros in both_forms():
        series = panel_result(influx, query, selections[query.dashboard], macros)
        values = [v for s in series for row in s["values"] for v in row[1:] if v is not None]
        assert values, f"{query.title}: only nulls with {macros}"


def test_annotations_carry_their_messages(demo_traffic, selections):
    """Each licence annotation's text column holds the report's messages, its tags column
    the status."""
    influx, _ = demo_traffic
    (board,) = [b for b in DASHBOARDS.values() if b["annotations"]["list"]]
    for annotation in board["annotations"]["list"]:
        query = Query(board["title"], annotation["name"], annotation["query"])
        (series,) = panel_result(influx, query, selections[board["title"]])
        rows = [dict(zip(series["columns"], row, strict=True)) for row in series["values"]]
        status = annotation["name"].removeprefix("Licence ").removesuffix("s")
        for row in rows:
            assert row[annotation["tagsColumn"]] == status
            messages = json.loads(row[annotation["textColumn"]])
            assert messages and all(isinstance(m, str) for m in messages), row


def test_failing_queries_fail_with_the_panel_title(demo_traffic):
    """The check above can fail: a syntax error, an unknown field and no data each do."""
    influx, _ = demo_traffic
    bad = {
        "SELECT count( FROM requests": "rejected",
        'SELECT mean("no_such_field") FROM "requests"': "no series",
        'SELECT count("execution_time") FROM "requests" WHERE "route" = \'nowhere\'': "no series",
    }
    for text, reason in bad.items():
        with pytest.raises(pytest.fail.Exception, match=f"Board / Panel X \\[A\\]: .*{reason}"):
            run(influx, Query("Board", "Panel X [A]", text), text)


def test_requests_and_failures_are_counted_exactly(demo_traffic, selections):
    """The summary stats and the rate panel add up to the requests the demo sent."""
    influx, outcome = demo_traffic
    selected = selections["LUNA monitoring / Service overview"]
    sent = len(outcome.calls)
    failing = sum(call.expected >= 400 for call in outcome.calls)
    assert single_value(panel_result(influx, find("Requests [A]"), selected)) == sent
    assert single_value(panel_result(influx, find("Failed requests [A]"), selected)) == failing
    rate = panel_result(influx, find("Request rate per route [A]"), selected)
    assert round(sum(row[1] for s in rate for row in s["values"]) * INTERVAL_S) == sent
    top = panel_result(influx, find("Top failing routes [A]"), selected)
    assert sum(row[1] for s in top for row in s["values"]) == failing


def test_one_route_selected_filters_to_it(demo_traffic, selections):
    """``$route`` = ``POST:/sdk`` alone (regex-escaped ``/``) counts only that route."""
    influx, outcome = demo_traffic
    selected = selections["LUNA monitoring / Service overview"] | {"route": ["POST:/sdk"]}
    expected = sum(c.method == "POST" and c.path.split("?")[0] == "/sdk" for c in outcome.calls)
    count = panel_result(influx, find("Requests [A]"), selected)
    assert single_value(count) == expected
    slowest = panel_result(influx, find("Slowest routes [A]"), selected)
    assert [s["tags"]["route"] for s in slowest] == ["POST:/sdk"]


def test_licence_reports_add_up(demo_traffic, selections):
    """Reports by status add up to the ``licensing`` points; the table lists every one."""
    influx, _ = demo_traffic
    selected = selections["LUNA monitoring / Licensing"]
    stored = influx.query('SELECT count("liveness_balance") FROM "licensing"', DATABASE)
    total = stored[0]["values"][0][1]
    by_status = panel_result(influx, find("Licence reports by status [A]"), selected)
    assert sum(s["values"][0][1] for s in by_status) == total
    (table,) = panel_result(influx, find("Licence warnings and errors [A]"), selected)
    assert table["columns"] == ["time", "license_status", "liveness_balance", "warnings", "errors"]
    assert len(table["values"]) == total


HOSTILE_DB = "hostile_names"
HOSTILE_SERVICES = ("svc.a", "svcXa", 'it\'s "quoted" ünï/x')
HOSTILE_ROUTES = ("POST:/a.b", "POST:/aXb", "GET:/ü/<id>|(x)", "PUT:/[0-9]{2}+*?^$\\d")


@pytest.fixture(scope="module")
def hostile(demo_traffic) -> tuple[Any, dict[tuple[str, str], int]]:
    """``requests`` points of services and routes whose names are full of regex characters,
    quotes and unicode, a different count for each pair, in a database of their own."""
    influx, _ = demo_traffic
    influx.create_database(HOSTILE_DB)
    counts, points = {}, []
    start = time.time_ns()
    for service in HOSTILE_SERVICES:
        for route in HOSTILE_ROUTES:
            counts[service, route] = len(counts) + 1
            tags = {"service": service, "route": route, "status_code": "200"}
            for _ in range(counts[service, route]):
                fields = {"execution_time": 0.01, "request_id": str(len(points))}
                points.append(Point("requests", start - len(points) * 1000, tags, fields))
    body = join_lines(LineEncoder().encode_lines(points))
    http("POST", f"{influx.url}/write?db={HOSTILE_DB}&precision=ns", body)
    return influx, counts


def test_hostile_names_select_exactly_themselves(hostile):
    """A service or route with dots, brackets, quotes, slashes or unicode is offered by its
    variable as written and selects exactly its own points, alone or with others."""
    influx, counts = hostile
    board = DASHBOARDS["service-overview.json"]
    service_query, route_query = (q for q in variable_queries() if q.dashboard == board["title"])
    requests = find("Requests [A]")

    def values(query: Query, selected: dict[str, list[str]]) -> list[str]:
        text = interpolate(query.text, board, selected, LAST_HOUR)
        return sorted(tag_values(run(influx, query, text, HOSTILE_DB)))

    def count(services: list[str], routes: list[str]) -> float:
        selected = {"service": services, "route": routes}
        return single_value(panel_result(influx, requests, selected, db=HOSTILE_DB))

    assert values(service_query, {}) == sorted(HOSTILE_SERVICES)
    for service in HOSTILE_SERVICES:
        assert values(route_query, {"service": [service]}) == sorted(HOSTILE_ROUTES)
        for route in HOSTILE_ROUTES:
            assert count([service], [route]) == counts[service, route], (service, route)
    services, routes = list(HOSTILE_SERVICES[:2]), list(HOSTILE_ROUTES[::2])
    expected = sum(counts[s, r] for s in services for r in routes)
    assert count(services, routes) == expected


# --- well-formed for Grafana ------------------------------------------------------------------


@pytest.mark.parametrize("name", dashboard_names())
def test_panel_ids_are_unique(name):
    ids = [panel["id"] for panel in _panels(DASHBOARDS[name]["panels"])]
    assert len(ids) == len(set(ids)) and all(isinstance(i, int) and i > 0 for i in ids), ids


@pytest.mark.parametrize("name", dashboard_names())
def test_panel_titles_are_unique(name):
    """A failing query's message names one panel."""
    titles = [panel["title"] for panel in _panels(DASHBOARDS[name]["panels"])]
    assert len(titles) == len(set(titles)), titles


@pytest.mark.parametrize("name", dashboard_names())
def test_grid_positions_fit_and_do_not_overlap(name):
    """Each panel lies inside the 24-column grid; no two panels share a cell."""
    cells: dict[tuple[int, int], str] = {}
    for panel in _panels(DASHBOARDS[name]["panels"]):
        pos = panel["gridPos"]
        assert pos["x"] >= 0 and pos["y"] >= 0 and pos["w"] >= 1 and pos["h"] >= 1, panel["title"]
        assert pos["x"] + pos["w"] <= GRID_COLUMNS, panel["title"]
        for x in range(pos["x"], pos["x"] + pos["w"]):
            for y in range(pos["y"], pos["y"] + pos["h"]):
                assert (x, y) not in cells, f"{panel['title']} overlaps {cells[(x, y)]}"
                cells[(x, y)] = panel["title"]


def _datasource_refs(node: Any, path: str = "") -> Iterator[tuple[str, Any]]:
    if isinstance(node, dict):
        for key, value in node.items():
            if key == "datasource":
                yield f"{path}.{key}", value
            yield from _datasource_refs(value, f"{path}.{key}")
    elif isinstance(node, list):
        for index, value in enumerate(node):
            yield from _datasource_refs(value, f"{path}[{index}]")


@pytest.mark.parametrize("name", dashboard_names())
def test_every_datasource_reference_is_the_variable(name):
    """Panels, targets, variables and annotations all use ``${datasource}``; no fixed uid."""
    board = DASHBOARDS[name]
    refs = list(_datasource_refs(board))
    assert len(refs) > 10
    for path, ref in refs:
        assert ref == DATASOURCE_REF, f"{name}{path} = {ref!r}"
    text = json.dumps(board)
    assert text.count('"uid":') == len(refs) + 1, "a uid other than the dashboard's own"
    (datasource,) = [v for v in variables(board) if v["type"] == "datasource"]
    assert datasource["name"] == "datasource" and datasource["query"] == "influxdb"
    assert "current" not in datasource


@pytest.mark.parametrize("name", dashboard_names())
def test_every_target_is_raw_influxql(name):
    board = DASHBOARDS[name]
    assert board["schemaVersion"] == 39
    assert board["uid"].startswith("luna-") and len(board["uid"]) <= 40
    for panel in _panels(board["panels"]):
        for target in panel.get("targets", []):
            assert target["rawQuery"] is True and target["query"].startswith("SELECT "), panel
        if panel["type"] != "row":
            assert panel["targets"], panel["title"]


def test_time_series_queries_group_by_interval_and_fill():
    """Time series panels group by ``time($__interval)`` and say how gaps are filled."""
    for board in DASHBOARDS.values():
        for panel in _panels(board["panels"]):
            for target in panel.get("targets", []):
                if panel["type"] == "timeseries":
                    assert "GROUP BY time($__interval)" in target["query"], panel["title"]
                    assert re.search(r" fill\((null|0)\)$", target["query"]), panel["title"]


def test_provisioning_files():
    """The data source is InfluxDB in InfluxQL mode, without a fixed uid; the provider
    reads the folder the command writes to."""
    folder = dashboard_dir() / "provisioning"
    (datasource,) = yaml.safe_load((folder / "datasource.yaml").read_text())["datasources"]
    assert datasource["type"] == "influxdb" and "uid" not in datasource
    assert datasource["jsonData"]["version"] == "InfluxQL"
    assert datasource["jsonData"]["dbName"] == "luna_monitoring"
    (provider,) = yaml.safe_load((folder / "dashboards.yaml").read_text())["providers"]
    assert provider["type"] == "file"
    assert (
        provider["options"]["path"] in (folder / "dashboards.yaml").read_text().split("--out ")[1]
    )


# --- the command ------------------------------------------------------------------------------


def test_command_writes_dashboards_with_the_uid(tmp_path, capsys):
    """``dashboards --out DIR --datasource-uid UID`` writes every file, the uid selected."""
    out = tmp_path / "new" / "dir"
    assert cli_main(["dashboards", "--out", str(out), "--datasource-uid", "influx-1_A"]) == 0
    assert sorted(p.name for p in out.iterdir()) == dashboard_names()
    for name in dashboard_names():
        written = json.loads((out / name).read_text())
        (datasource,) = [v for v in variables(written) if v["type"] == "datasource"]
        assert datasource["current"] == {
            "selected": True,
            "text": "influx-1_A",
            "value": "influx-1_A",
        }
        datasource.pop("current")
        assert written == DASHBOARDS[name]
    line = capsys.readouterr().out
    assert line == (
        f"wrote 3 dashboards ({', '.join(dashboard_names())}) to {out} "
        "(data source uid influx-1_A)\n"
    )


def test_command_without_uid_writes_the_shipped_files(tmp_path):
    assert cli_main(["dashboards", "--out", str(tmp_path)]) == 0
    for name in dashboard_names():
        assert json.loads((tmp_path / name).read_text()) == DASHBOARDS[name]


@pytest.mark.parametrize(
    "uid", ['a"b', "a b", "x" * 41, "", "über", "a\nb", "a/b", "${datasource}", "a\\b"]
)
def test_command_rejects_a_bad_uid_in_one_line(tmp_path, capsys, uid):
    """A uid Grafana would not accept is refused before anything is written."""
    out = tmp_path / "out"
    assert cli_main(["dashboards", "--out", str(out), "--datasource-uid", uid]) == 1
    printed = capsys.readouterr().out
    assert printed.startswith("FAIL: bad data source uid ") and printed.count("\n") == 1
    assert not out.exists()


def test_command_names_an_unwritable_folder(tmp_path, capsys):
    blocker = tmp_path / "file"
    blocker.write_text("")
    assert cli_main(["dashboards", "--out", str(blocker / "sub")]) == 1
    assert capsys.readouterr().out.startswith(
        f"FAIL: cannot write dashboards to '{blocker / 'sub'}'"
    )


def test_write_dashboards_returns_the_paths(tmp_path):
    paths = write_dashboards(tmp_path)
    assert [p.name for p in paths] == dashboard_names()


def without_sdk(tmp_path: Path, code: str) -> subprocess.CompletedProcess[str]:
    """Run ``code`` in a fresh interpreter in which grafana_foundation_sdk cannot be imported."""
    shadow = tmp_path / "shadow" / "grafana_foundation_sdk"
    shadow.mkdir(parents=True)
    (shadow / "__init__.py").write_text(
        "raise ModuleNotFoundError(\"No module named 'grafana_foundation_sdk'\", "
        "name='grafana_foundation_sdk')\n"
    )
    prelude = f"import sys; sys.path.insert(0, {str(shadow.parent)!r}); "
    return subprocess.run(
        [sys.executable, "-c", prelude + code],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=ROOT,
    )


def test_generator_missing_sdk_is_one_line(tmp_path):
    """Without grafana-foundation-sdk the generator names the extra to install."""
    done = without_sdk(
        tmp_path,
        "from luna_monitoring.dashboards.generator import main; sys.exit(main(['--check']))",
    )
    assert (done.returncode, done.stderr) == (1, "")
    assert done.stdout == (
        "the dashboard generator needs grafana-foundation-sdk: "
        "pip install -e '.[dashboards-dev]' (from a checkout of luna-monitoring)\n"
    )


def test_command_needs_no_generator_dependency(tmp_path):
    """``dashboards --out`` works where grafana-foundation-sdk cannot be imported."""
    out = tmp_path / "out"
    done = without_sdk(
        tmp_path,
        "from luna_monitoring.cli.main import main; "
        f"sys.exit(main(['dashboards', '--out', {str(out)!r}]))",
    )
    assert (done.returncode, done.stderr) == (0, ""), done.stdout
    assert sorted(path.name for path in out.iterdir()) == dashboard_names()


# --- shipped in the package ---------------------------------------------------------------


def test_wheel_ships_the_dashboards_and_provisioning(built_wheel):
    """``pip install`` brings the JSON and YAML files (package data), not the generator."""
    names = built_wheel.names
    for name in dashboard_names():
        assert f"luna_monitoring/dashboards/{name}" in names
    for name in ("datasource.yaml", "dashboards.yaml"):
        assert f"luna_monitoring/dashboards/provisioning/{name}" in names
    assert not [name for name in names if "/generator/" in name], "the generator is dev-only"
