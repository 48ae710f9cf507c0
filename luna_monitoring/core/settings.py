"""The ``MONITORING`` config section turned into frozen, validated settings.

Every key, its type, default and bound is declared once in ``_KEYS``; validation and the
README's configuration table both read it. Errors name the key, the expectation and the
value given, except for secrets, whose values are never shown anywhere.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from ipaddress import IPv6Address, ip_address
from itertools import pairwise
from types import MappingProxyType
from typing import Any
from urllib.parse import urlsplit

from .metric_families import DEFAULT_BUCKETS, FAMILIES
from .schema import SERIES, Kind, Series

SECRET_KEYS = frozenset({"token", "password"})
_LABEL_NAME = re.compile(r"^[a-zA-Z_][a-zA-Z0-9_]*$")
RESERVED_PROMETHEUS_LABELS = frozenset(
    {label for family in FAMILIES for label in family.labels} | {"service", "le"}
)
MAX_BUCKETS = 50
"""Most bucket bounds one histogram may be configured with."""


class MonitoringConfigError(ValueError):
    """A ``MONITORING`` key is unknown, of the wrong type or out of range.

    >>> try:
    ...     Settings.from_config({"port": 0})
    ... except MonitoringConfigError as error:
    ...     print(error)
    MONITORING['port']: expected a port number in 1..65535, got 0
    """


def _fail(key: str, expected: str, value: Any) -> MonitoringConfigError:
    shown = "<hidden>" if key.rsplit(".", 1)[-1] in SECRET_KEYS else repr(value)
    return MonitoringConfigError(f"MONITORING[{key!r}]: expected {expected}, got {shown}")


def _type_name(types: tuple[type, ...]) -> str:
    return " or ".join(t.__name__ for t in types)


def _check_type(key: str, value: Any, types: tuple[type, ...]) -> Any:
    if isinstance(value, bool) and bool not in types:
        raise _fail(key, _type_name(types), value)
    if not isinstance(value, types):
        raise _fail(key, _type_name(types), value)
    return float(value) if float in types and not isinstance(value, bool) else value


def _positive(key: str, value: float) -> float:
    if not value > 0:
        raise _fail(key, "a number > 0", value)
    return value


def _at_least_one(key: str, value: int) -> int:
    if value < 1:
        raise _fail(key, "an integer >= 1", value)
    return value


def _port(key: str, value: int) -> int:
    if not 1 <= value <= 65535:
        raise _fail(key, "a port number in 1..65535", value)
    return value


def _at_least(minimum: int) -> Callable[[str, int], int]:
    def check(key: str, value: int) -> int:
        if value < minimum:
            raise _fail(key, f"an integer >= {minimum}", value)
        return value

    return check


def _one_of(*choices: Any) -> Callable[[str, Any], Any]:
    def check(key: str, value: Any) -> Any:
        if value not in choices:
            raise _fail(key, "one of " + ", ".join(map(repr, choices)), value)
        return value

    return check


def _non_empty(key: str, value: str) -> str:
    if not value:
        raise _fail(key, "a non-empty string", value)
    return value


def _identifier_part(key: str, value: str) -> str:
    if not re.fullmatch(r"[A-Za-z0-9_]*", value):
        raise _fail(key, "letters, digits and _ only", value)
    return value


def _str_list(key: str, value: Any) -> tuple[str, ...]:
    if not isinstance(value, list | tuple) or not all(isinstance(v, str) for v in value):
        raise _fail(key, "a list of strings", value)
    return tuple(value)


def _patterns(key: str, value: Any) -> tuple[re.Pattern[str], ...]:
    compiled = []
    for pattern in _str_list(key, value):
        try:
            compiled.append(re.compile(pattern))
        except re.error as exc:
            raise _fail(key, f"valid regular expressions ({exc})", pattern) from None
    return tuple(compiled)


_HOST_FIX = (
    "a host name or IP address without scheme, port or path "
    "(for a full address use 'url', e.g. 'url': 'http://127.0.0.1:8086')"
)
_ADDRESS_KEYS = ("host", "port", "use_ssl")


def _host(key: str, value: str) -> str:
    """A bare host: name, IPv4 or IPv6 address (``::1`` or ``[::1]``); brackets removed."""
    bare = value[1:-1] if value.startswith("[") and value.endswith("]") else value
    if not bare or any(c in bare for c in "/[]@?# ") or "://" in value:
        raise _fail(key, _HOST_FIX, value)
    if ":" in bare:  # only an IPv6 address may hold a colon: 'name:port' is not a host
        try:
            IPv6Address(bare)
        except ValueError:
            raise _fail(key, _HOST_FIX, value) from None
    return bare


def _url(key: str, value: str) -> str:
    """A base URL ``http(s)://host[:port][/prefix]`` (no credentials, query or fragment)."""
    if not value:
        return value
    expected = "an http:// or https:// URL like 'https://influx.example.com:8086/prefix'"
    try:
        parts = urlsplit(value)
        parts.port  # noqa: B018 - raises ValueError on a bad port
    except ValueError:
        raise _fail(key, expected, value) from None
    if parts.scheme not in ("http", "https") or not parts.hostname or parts.port == 0:
        raise _fail(key, expected, value)
    if parts.username is not None or parts.password is not None:
        raise _fail(
            key, f"{expected}, without credentials (use token or username/password)", "<hidden>"
        )
    if parts.query or parts.fragment:
        raise _fail(key, f"{expected}, without query or fragment", value)
    return value


def url_of(host: str, port: int, use_ssl: bool, path: str = "") -> str:
    """The base URL of a server; an IPv6 address is bracketed.

    >>> url_of("::1", 8086, False)
    'http://[::1]:8086'
    """
    shown = f"[{host}]" if ":" in host else host
    return f"{'https' if use_ssl else 'http'}://{shown}:{port}{path.rstrip('/')}"


def _instance_offset(key: str, value: int | str) -> int | str:
    if value == "random" or (type(value) is int and 0 <= value < 1024):
        return value
    raise _fail(key, "'random' or an integer in 0..1023", value)


_FIELD_TYPES: Mapping[str, type] = MappingProxyType({"int": int, "float": float, "str": str})
_SERIES_KEYS = frozenset({"tags", "fields", "description"})


def _names(key: str, names: Any) -> list[str]:
    names = list(names)
    for name in names:
        if not isinstance(name, str) or not _LABEL_NAME.match(name) or name == "service":
            raise _fail(key, "names matching [a-zA-Z_][a-zA-Z0-9_]*, other than 'service'", name)
    return names


def _one_series(key: str, name: str, spec: Any) -> Series:
    if not isinstance(spec, Mapping) or "fields" not in spec or set(spec) - _SERIES_KEYS:
        raise _fail(key, 'a dict with "fields" and optionally "tags" and "description"', spec)
    tags = _names(f"{key}.tags", _str_list(f"{key}.tags", spec.get("tags", [])))
    fields = spec["fields"]
    if not isinstance(fields, Mapping) or not fields:
        raise _fail(
            f"{key}.fields", 'a non-empty dict of field name to "int", "float" or "str"', fields
        )
    _names(f"{key}.fields", fields)
    for field_name, kind in fields.items():
        if kind not in _FIELD_TYPES:
            raise _fail(f"{key}.fields.{field_name}", '"int", "float" or "str"', kind)
    repeated = sorted({n for n in (*tags, *fields) if [*tags, *fields].count(n) > 1})
    if repeated:
        raise _fail(key, "tag and field names used once", repeated)
    description = spec.get("description", "your own points (custom_series)")
    if not isinstance(description, str):
        raise _fail(f"{key}.description", "str", description)
    typed = MappingProxyType({f: _FIELD_TYPES[kind] for f, kind in fields.items()})
    return Series(name, Kind.CUSTOM, description, tuple(tags), typed)


def _custom_series(key: str, value: Any) -> Mapping[str, Series]:
    """Series of the service's own: ``{name: {"tags": [...], "fields": {name: type}}}``."""
    if not isinstance(value, Mapping):
        raise _fail(key, 'a dict of series name to {"tags": [...], "fields": {...}}', value)
    result = {}
    for name, spec in value.items():
        _names(key, [name])
        if name in SERIES:
            raise _fail(key, "names other than the built-in series", name)
        result[name] = _one_series(f"{key}.{name}", name, spec)
    return MappingProxyType(result)


def _plugin_paths(key: str, value: Any) -> tuple[str, ...]:
    paths = _str_list(key, value)
    for path in paths:
        module, _, name = path.partition(":")
        if not module or not name.isidentifier():
            raise _fail(key, '"package.module:ClassName" strings', path)
    return paths


@dataclass(frozen=True, slots=True)
class PrometheusSettings:
    """The ``prometheus`` sub-section: exposition of the metrics."""

    enabled: bool = False
    path: str = "/metrics"
    extra_labels: Mapping[str, str] = field(default_factory=lambda: MappingProxyType({}))
    buckets: Mapping[str, tuple[float, ...]] = field(default_factory=lambda: DEFAULT_BUCKETS)
    """Bucket bounds of every histogram (defaults, with the configured ones instead)."""


def _bucket_bounds(key: str, value: Any) -> tuple[float, ...]:
    expected = f"a list of 1..{MAX_BUCKETS} increasing finite numbers (+Inf is added)"
    if (
        not isinstance(value, list | tuple)
        or not 1 <= len(value) <= MAX_BUCKETS
        or not all(isinstance(v, int | float) and not isinstance(v, bool) for v in value)
    ):
        raise _fail(key, expected, value)
    bounds = tuple(float(v) for v in value)
    if not all(math.isfinite(v) for v in bounds) or any(a >= b for a, b in pairwise(bounds)):
        raise _fail(key, expected, value)
    return bounds


def _buckets(key: str, value: Any) -> Mapping[str, tuple[float, ...]]:
    if not isinstance(value, Mapping) or not set(value) <= set(DEFAULT_BUCKETS):
        raise _fail(key, "a dict with keys among " + ", ".join(DEFAULT_BUCKETS), value)
    given = {name: _bucket_bounds(f"{key}.{name}", bounds) for name, bounds in value.items()}
    return MappingProxyType({**DEFAULT_BUCKETS, **given})


def _prometheus(key: str, value: Any) -> PrometheusSettings:
    if not isinstance(value, Mapping):
        raise _fail(key, "a dict with enabled, path, extra_labels, buckets", value)
    unknown = set(value) - {"enabled", "path", "extra_labels", "buckets"}
    if unknown:
        raise _fail(key, "only the keys enabled, path, extra_labels, buckets", sorted(unknown))
    enabled = _check_type(f"{key}.enabled", value.get("enabled", False), (bool,))
    path = _check_type(f"{key}.path", value.get("path", "/metrics"), (str,))
    if not path.startswith("/"):
        raise _fail(f"{key}.path", "a path starting with '/'", path)
    labels = value.get("extra_labels", {})
    if not isinstance(labels, Mapping) or not all(
        isinstance(k, str) and isinstance(v, str) for k, v in labels.items()
    ):
        raise _fail(f"{key}.extra_labels", "a dict of str to str", labels)
    for name in labels:
        if not _LABEL_NAME.match(name) or name in RESERVED_PROMETHEUS_LABELS:
            raise _fail(
                f"{key}.extra_labels",
                "label names matching [a-zA-Z_][a-zA-Z0-9_]* and not one of "
                + ", ".join(sorted(RESERVED_PROMETHEUS_LABELS)),
                name,
            )
    buckets = _buckets(f"{key}.buckets", value.get("buckets", {}))
    return PrometheusSettings(enabled, path, MappingProxyType(dict(labels)), buckets)


@dataclass(frozen=True, slots=True)
class _Key:
    types: tuple[type, ...]
    default: Any
    check: Callable[[str, Any], Any] | None
    doc: str


_STR, _INT, _FLOAT, _BOOL = (str,), (int,), (float, int), (bool,)
_ANY = (object,)

_KEYS: dict[str, _Key] = {
    "send_data_for_monitoring": _Key(_BOOL, True, None, "master switch; False = no points"),
    "storage_type": _Key(
        _STR, "influx", _one_of("influx", "clickhouse"), 'where points go: "influx" or "clickhouse"'
    ),
    "version": _Key(_INT, 2, _one_of(1, 2), "InfluxDB write API: 2 = /api/v2/write, 1 = /write"),
    "host": _Key(_STR, "127.0.0.1", _host, "host name or IP address (no scheme/port)"),
    "port": _Key(_INT, 8086, _port, "InfluxDB port; ClickHouse HTTP port, default 8123 there"),
    "use_ssl": _Key(_BOOL, False, None, "HTTPS with certificate verification"),
    "url": _Key(
        _STR,
        "",
        _url,
        "instead of host/port/use_ssl: http(s)://host[:port][/path prefix]",
    ),
    "organization": _Key(_STR, "", None, "v2 organization"),
    "token": _Key(_STR, "", None, "v2 token (never logged)"),
    "bucket": _Key(_STR, "luna_monitoring", _non_empty, "v2 bucket"),
    "database": _Key(_STR, "luna_monitoring", _non_empty, "v1 or ClickHouse database"),
    "username": _Key(_STR, "", None, "v1 or ClickHouse user"),
    "password": _Key(_STR, "", None, "v1 or ClickHouse password (never logged)"),
    "retention_policy": _Key(_STR, "", None, "v1 retention policy; empty = default"),
    "flushing_period": _Key(_FLOAT, 1.0, _positive, "seconds between background flushes"),
    "batch_size": _Key(_INT, 5000, _at_least_one, "most points in one HTTP write"),
    "max_buffer_points": _Key(_INT, 100000, _at_least_one, "points held per worker at most"),
    "service": _Key(_STR, "luna-remote-sdk", _non_empty, "value of the service tag"),
    "excluded_routes": _Key(_ANY, (), _patterns, "regexes on METHOD:/template; no points"),
    "plugins": _Key(_ANY, (), _plugin_paths, '"package.module:ClassName" plugins'),
    "prometheus": _Key(_ANY, {}, _prometheus, "Prometheus exposition, see below"),
    "gzip": _Key(
        (bool, str),
        "auto",
        _one_of("auto", True, False),
        'gzip writes ("auto": unless loopback)',
    ),
    "write_timeout_s": _Key(_FLOAT, 10.0, _positive, "timeout of one HTTP write"),
    "max_retry_delay_s": _Key(_FLOAT, 30.0, _positive, "cap of the backoff between retries"),
    "shutdown_timeout_s": _Key(_FLOAT, 5.0, _positive, "bound on the final flush at stop"),
    "plugin_timeout_s": _Key(_FLOAT, 5.0, _positive, "bound on one plugin call"),
    "table_prefix": _Key(_STR, "", _identifier_part, "ClickHouse: table names <prefix><series>"),
    "cluster": _Key(
        _STR, "", None, "ClickHouse: write to Distributed tables over <table>_local on it"
    ),
    "create_tables": _Key(_BOOL, True, None, "ClickHouse: create database and tables at start"),
    "custom_series": _Key(
        _ANY, {}, _custom_series, "series of your own for record(), see Custom series"
    ),
    "instance_offset": _Key(
        (str, int),
        "random",
        _instance_offset,
        "timestamp residue of worker 0 (mod 1024), see Workers",
    ),
    "influx_dialect": _Key(
        _STR,
        "influxdb",
        _one_of("influxdb", "victoriametrics"),
        'line-protocol rules of the target: "influxdb" or "victoriametrics"',
    ),
    "spool_dir": _Key(_STR, "", None, 'disk spool directory; "" = off (see Disk spool)'),
    "spool_max_bytes": _Key(
        _INT, 256 << 20, _at_least(65536), "spool bytes per worker; beyond, oldest dropped"
    ),
    "spool_fsync": _Key(
        _STR, "interval", _one_of("always", "interval", "never"), "spool durability policy"
    ),
    "spool_replay_points_per_s": _Key(
        _FLOAT, 20000.0, _positive, "spooled points written back per second"
    ),
}
_STORAGE_DEFAULTS = {"clickhouse": {"port": 8123}}
"""Defaults that differ by ``storage_type``."""


@dataclass(frozen=True, slots=True)
class Settings:
    """Validated monitoring settings; build with :meth:`Settings.from_config`.

    >>> Settings.from_config({"version": 1, "database": "mon"}).target
    "InfluxDB v1 at http://127.0.0.1:8086, database 'mon'"
    """

    send_data_for_monitoring: bool = True
    storage_type: str = "influx"
    version: int = 2
    host: str = "127.0.0.1"
    port: int = 8086
    use_ssl: bool = False
    url: str = ""
    """Base URL of the server (``http://127.0.0.1:8086`` from host/port/use_ssl when empty)."""
    organization: str = ""
    token: str = field(default="", repr=False)
    bucket: str = "luna_monitoring"
    database: str = "luna_monitoring"
    username: str = ""
    password: str = field(default="", repr=False)
    retention_policy: str = ""
    flushing_period: float = 1.0
    batch_size: int = 5000
    max_buffer_points: int = 100000
    service: str = "luna-remote-sdk"
    excluded_routes: tuple[re.Pattern[str], ...] = ()
    plugins: tuple[str, ...] = ()
    prometheus: PrometheusSettings = field(default_factory=PrometheusSettings)
    gzip: bool | str = "auto"
    write_timeout_s: float = 10.0
    max_retry_delay_s: float = 30.0
    shutdown_timeout_s: float = 5.0
    plugin_timeout_s: float = 5.0
    table_prefix: str = ""
    cluster: str = ""
    create_tables: bool = True
    custom_series: Mapping[str, Series] = field(default_factory=lambda: MappingProxyType({}))
    instance_offset: int | str = "random"
    influx_dialect: str = "influxdb"
    spool_dir: str = ""
    spool_max_bytes: int = 256 << 20
    spool_fsync: str = "interval"
    spool_replay_points_per_s: float = 20000.0

    @classmethod
    def from_config(cls, config: Mapping[str, Any] | None) -> Settings:
        """Validate a ``MONITORING`` mapping; raise :class:`MonitoringConfigError` on any fault.

        >>> Settings.from_config({"version": 1, "database": "db"}).url
        'http://127.0.0.1:8086'
        """
        config = {} if config is None else config
        if not isinstance(config, Mapping):
            # Only the type: a string here may be a JSON text holding a token.
            raise MonitoringConfigError(
                f"MONITORING: expected a dict of settings, got {type(config).__name__}"
            )
        unknown = sorted(set(config) - set(_KEYS))
        if unknown:
            raise MonitoringConfigError(
                f"MONITORING: unknown key(s) {', '.join(map(repr, unknown))}; "
                f"known keys: {', '.join(_KEYS)}"
            )
        values = {}
        storage = config.get("storage_type")
        defaults = _STORAGE_DEFAULTS.get(storage, {}) if isinstance(storage, str) else {}
        for key, spec in _KEYS.items():
            value = config.get(key, defaults.get(key, spec.default))
            value = _check_type(key, value, spec.types)
            values[key] = spec.check(key, value) if spec.check else value
        if values["url"]:
            values.update(_split_url(values["url"], [k for k in _ADDRESS_KEYS if k in config]))
        return cls(**values)

    def __post_init__(self) -> None:
        if not self.url:
            object.__setattr__(self, "url", url_of(self.host, self.port, self.use_ssl))

    @property
    def compress(self) -> bool:
        """Whether write bodies are gzip-compressed: ``gzip``, where ``"auto"`` means yes
        unless ``host`` is a loopback address or ``localhost`` (no network to save)."""
        if self.gzip != "auto":
            return self.gzip
        if self.host.lower() == "localhost":
            return False
        try:
            return not ip_address(self.host.strip("[]")).is_loopback
        except ValueError:  # a host name
            return True

    @property
    def target(self) -> str:
        """Where points go, for logs: URL plus bucket or database (never credentials)."""
        if self.storage_type == "clickhouse":
            cluster = f", cluster {self.cluster!r}" if self.cluster else ""
            return f"ClickHouse at {self.url}, database {self.database!r}{cluster}"
        where = f"bucket {self.bucket!r}" if self.version == 2 else f"database {self.database!r}"
        return f"InfluxDB v{self.version} at {self.url}, {where}"


def _split_url(url: str, conflicting: list[str]) -> dict[str, Any]:
    """host, port, use_ssl and the normalised ``url`` from a validated ``url``."""
    if conflicting:
        raise MonitoringConfigError(
            f"MONITORING: 'url' and {', '.join(map(repr, conflicting))} both given; "
            "give either 'url' or host/port/use_ssl"
        )
    parts = urlsplit(url)
    use_ssl = parts.scheme == "https"
    host = parts.hostname or ""
    port = parts.port or (443 if use_ssl else 80)
    return {
        "host": host,
        "port": port,
        "use_ssl": use_ssl,
        "url": url_of(host, port, use_ssl, parts.path),
    }


def config_keys() -> tuple[str, ...]:
    """Every ``MONITORING`` key, in the order of the reference table."""
    return tuple(_KEYS)


def accepted_types(key: str) -> tuple[type, ...]:
    """The value types a config key accepts (``(object,)``: checked by its own rule)."""
    return _KEYS[key].types


def config_reference() -> list[tuple[str, str, str]]:
    """Rows ``(key, default, meaning)`` of every config key, for the README's table."""
    rows = []
    for key, spec in _KEYS.items():
        default = spec.default
        if key == "prometheus":
            default = {"enabled": False, "path": "/metrics", "extra_labels": {}, "buckets": {}}
        elif isinstance(default, tuple):
            default = list(default)
        rows.append((key, repr(default), spec.doc))
    return rows
