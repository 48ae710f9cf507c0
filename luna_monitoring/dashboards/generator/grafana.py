"""grafana-foundation-sdk glue: raw InfluxQL targets and annotations (the SDK has no InfluxDB
query type, so they are defined here as its docs show for custom query types), template
variables and the few panel shapes the dashboards use."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from grafana_foundation_sdk.builders import bargauge, common, dashboard, stat, table, timeseries
from grafana_foundation_sdk.cog import builder, variants
from grafana_foundation_sdk.models import common as common_model
from grafana_foundation_sdk.models import dashboard as model

from .. import DATASOURCE_VARIABLE
from .queries import Target, tag_values

DATASOURCE = model.DataSourceRef(type_val="influxdb", uid=f"${{{DATASOURCE_VARIABLE}}}")
"""Every query's data source: the one chosen in the ``datasource`` variable."""


class InfluxQLQuery(variants.Dataquery):
    """A raw InfluxQL target of Grafana's InfluxDB data source (InfluxQL mode)."""

    def __init__(self, target: Target, ref_id: str, table_format: bool) -> None:
        self.target = target
        self.ref_id = ref_id
        self.table_format = table_format

    def to_json(self) -> dict[str, object]:
        payload: dict[str, object] = {
            "datasource": DATASOURCE,
            "query": self.target.query,
            "rawQuery": True,
            "refId": self.ref_id,
            "resultFormat": "table" if self.table_format else "time_series",
        }
        if self.target.alias:
            payload["alias"] = self.target.alias
        return payload


class InfluxQL(builder.Builder[InfluxQLQuery]):
    """Builds an :class:`InfluxQLQuery`."""

    def __init__(self, target: Target, ref_id: str, table_format: bool = False) -> None:
        self._query = InfluxQLQuery(target, ref_id, table_format)

    def build(self) -> InfluxQLQuery:
        return self._query


class InfluxAnnotationQuery(model.AnnotationQuery):
    """An annotation read with raw InfluxQL: the time of each row, its text and tags columns."""

    def __init__(self, name: str, query: str, text_column: str, tags_column: str, color: str):
        super().__init__(name=name, datasource=DATASOURCE, enable=True, icon_color=color)
        self.query = query
        self.text_column = text_column
        self.tags_column = tags_column

    def to_json(self) -> dict[str, object]:
        # Both the InfluxQL annotation's own keys and a target holding them: Grafana reads
        # the former in its editor and moves them into the latter for its backend.
        columns = {"textColumn": self.text_column, "tagsColumn": self.tags_column}
        query = {"query": self.query, "rawQuery": True, **columns}
        return super().to_json() | query | {"target": {**query, "refId": "Anno"}}


class InfluxAnnotation(builder.Builder[model.AnnotationQuery]):
    """Builds an :class:`InfluxAnnotationQuery`."""

    def __init__(self, name: str, query: str, text: str, tags: str, color: str) -> None:
        self._annotation = InfluxAnnotationQuery(name, query, text, tags, color)

    def build(self) -> model.AnnotationQuery:
        return self._annotation


def new_dashboard(uid: str, title: str, description: str) -> dashboard.Dashboard:
    """A dashboard of the set: last hour, refreshed every 30 s, linked to the others."""
    return (
        dashboard.Dashboard(title)
        .uid(uid)
        .description(description)
        .tags(["luna-monitoring"])
        .time("now-1h", "now")
        .refresh("30s")
        .annotations([])
        .tooltip(model.DashboardCursorSync.CROSSHAIR)
        .link(
            dashboard.DashboardLink("LUNA monitoring")
            .type(model.DashboardLinkType.DASHBOARDS)
            .tags(["luna-monitoring"])
            .as_dropdown(True)
            .include_vars(True)
            .keep_time(True)
        )
        .with_variable(
            dashboard.DatasourceVariable(DATASOURCE_VARIABLE).label("Data source").type("influxdb")
        )
    )


def assemble(board: dashboard.Dashboard, *items: Any) -> dashboard.Dashboard:
    """``board`` with ``items`` (rows and panels) added in order, laid out left to right."""
    for item in items:
        board = board.with_row(item) if isinstance(item, dashboard.Row) else board.with_panel(item)
    return board


def query_variable(
    name: str, label: str, query: str, *, multi: bool = False
) -> dashboard.QueryVariable:
    """A variable filled by an InfluxQL ``SHOW ...`` query; ``multi`` adds "All"."""
    variable = (
        dashboard.QueryVariable(name)
        .label(label)
        .datasource(DATASOURCE)
        .query(query)
        .refresh(model.VariableRefresh.ON_TIME_RANGE_CHANGED)
        .sort(model.VariableSort.ALPHABETICAL_ASC)
    )
    if multi:
        all_values = model.VariableOption(selected=True, text=["All"], value=["$__all"])
        variable = variable.multi(True).include_all(True).current(all_values)
    return variable


def service_variable(series: str) -> dashboard.QueryVariable:
    """``$service``: the services that wrote ``series`` (several, "All" by default)."""
    return query_variable("service", "Service", tag_values(series, "service"), multi=True)


def _with_targets(panel: Any, targets: Iterable[Target], table_format: bool = False) -> Any:
    for index, target in enumerate(targets):
        panel = panel.with_target(InfluxQL(target, chr(ord("A") + index), table_format))
    return panel


def _base(panel: Any, title: str, description: str, width: int, height: int) -> Any:
    return (
        panel.title(title)
        .description(description)
        .datasource(DATASOURCE)
        .span(width)
        .height(height)
    )


def graph(
    title: str,
    description: str,
    unit: str,
    *targets: Target,
    width: int = 12,
    height: int = 8,
    bars: bool = False,
    span_nulls: bool = False,
) -> timeseries.Panel:
    """A time series panel; ``bars`` for counts per interval (stacked)."""
    panel = _base(timeseries.Panel(), title, description, width, height).unit(unit)
    panel = panel.legend(
        common.VizLegendOptions()
        .display_mode(common_model.LegendDisplayMode.TABLE)
        .placement(common_model.LegendPlacement.BOTTOM)
        .show_legend(True)
        .calcs(["mean", "max"])
    ).tooltip(
        common.VizTooltipOptions()
        .mode(common_model.TooltipDisplayMode.MULTI)
        .sort(common_model.SortOrder.DESCENDING)
    )
    if bars:
        panel = (
            panel.draw_style(common_model.GraphDrawStyle.BARS)
            .fill_opacity(80)
            .stacking(common.StackingConfig().mode(common_model.StackingMode.NORMAL))
        )
    else:
        panel = panel.fill_opacity(10).span_nulls(span_nulls)
    return _with_targets(panel, targets)


def single_stat(
    title: str, description: str, unit: str, target: Target, *, width: int = 6, height: int = 4
) -> stat.Panel:
    """One number (or one per series) over the whole time range."""
    panel = _base(stat.Panel(), title, description, width, height).unit(unit)
    panel = panel.graph_mode(common_model.BigValueGraphMode.NONE).reduce_options(
        common.ReduceDataOptions().calcs(["lastNotNull"]).values(False)
    )
    return _with_targets(panel, [target])


def totals(
    title: str, description: str, unit: str, target: Target, *, width: int = 8, height: int = 12
) -> bargauge.Panel:
    """A horizontal bar per column of a one-row result."""
    panel = _base(bargauge.Panel(), title, description, width, height).unit(unit)
    panel = (
        panel.orientation(common_model.VizOrientation.HORIZONTAL)
        .display_mode(common_model.BarGaugeDisplayMode.BASIC)
        .reduce_options(common.ReduceDataOptions().calcs(["sum"]).values(False))
    )
    return _with_targets(panel, [target])


def rows(
    title: str,
    description: str,
    target: Target,
    *,
    sort_by: str | None = None,
    units: Mapping[str, str] | None = None,
    show_time: bool = False,
    width: int = 12,
    height: int = 8,
) -> table.Panel:
    """A table of a ``resultFormat: table`` query; ``sort_by`` a column, largest first.

    The Time column is hidden unless ``show_time``: an aggregate over the whole range has
    the range's start there, not a time of its own.
    """
    panel = _base(table.Panel(), title, description, width, height)
    if not show_time:
        panel = panel.with_transformation(
            model.DataTransformerConfig(
                id_val="organize", options={"excludeByName": {"Time": True}}
            )
        )
    if sort_by is not None:
        panel = panel.sort_by([common.TableSortByFieldState().display_name(sort_by).desc(True)])
    for column, unit in (units or {}).items():
        panel = panel.override_by_name(
            column, [model.DynamicConfigValue(id_val="unit", value=unit)]
        )
    return _with_targets(panel, [target], table_format=True)
