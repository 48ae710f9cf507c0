"""The ``MONITORING`` config section turned into frozen, validated settings.

Every key, its type, default and bound is declared once in ``_KEYS``; validation and the
README's configuration table both read it. Errors name the key, the expectation and the
value given, except for secrets, whose values are never shown anywhere.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from ipaddress import ip_address
from types import MappingProxyType
from typing import Any

SECRET_KEYS = frozenset({"token", "password"})
_LABEL_NAME = re.compile(r"^[a-zA-Z_][a-zA-Z0-9_]*$")
RESERVED_PROMETHEUS_LABELS = frozenset({"service", "route", "status_code", "error_code", "le"})


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


def _plugin_paths(key: str, value: Any) -> tuple[str, ...]:
    paths = _str_list(key, value)
    for path in paths:
        module, _, name = path.partition(":")
        if not module or not name.isidentifier():
            raise _fail(key, '"package.module:ClassName" strings', path)
    return paths


@dataclass(frozen=True, slots=True)
class PrometheusSettings:
    """The ``prometheus`` sub-section: exposition of request metrics."""

    enabled: bool = False
    path: str = "/metrics"
    extra_labels: Mapping[str, str] = field(default_factory=lambda: MappingProxyType({}))


def _prometheus(key: str, value: Any) -> PrometheusSettings:
    if not isinstance(value, Mapping):
        raise _fail(key, "a dict with enabled, path, extra_labels", value)
    unknown = set(value) - {"enabled", "path", "extra_labels"}
    if unknown:
        raise _fail(key, "only the keys enabled, path, extra_labels", sorted(unknown))
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
    return PrometheusSettings(enabled, path, MappingProxyType(dict(labels)))


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
    "storage_type": _Key(_STR, "influx", _one_of("influx"), 'where points go (only "influx")'),
    "version": _Key(_INT, 2, _one_of(1, 2), "InfluxDB write API: 2 = /api/v2/write, 1 = /write"),
    "host": _Key(_STR, "127.0.0.1", _non_empty, "InfluxDB host"),
    "port": _Key(_INT, 8086, _port, "InfluxDB port"),
    "use_ssl": _Key(_BOOL, False, None, "HTTPS with certificate verification"),
    "organization": _Key(_STR, "", None, "v2 organization"),
    "token": _Key(_STR, "", None, "v2 token (never logged)"),
    "bucket": _Key(_STR, "luna_monitoring", _non_empty, "v2 bucket"),
    "database": _Key(_STR, "luna_monitoring", _non_empty, "v1 database"),
    "username": _Key(_STR, "", None, "v1 user"),
    "password": _Key(_STR, "", None, "v1 password (never logged)"),
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
            raise _fail("MONITORING", "a dict", type(config).__name__)
        unknown = sorted(set(config) - set(_KEYS))
        if unknown:
            raise MonitoringConfigError(
                f"MONITORING: unknown key(s) {', '.join(map(repr, unknown))}; "
                f"known keys: {', '.join(_KEYS)}"
            )
        values = {}
        for key, spec in _KEYS.items():
            value = _check_type(key, config.get(key, spec.default), spec.types)
            values[key] = spec.check(key, value) if spec.check else value
        return cls(**values)

    @property
    def url(self) -> str:
        """Base URL of the InfluxDB server."""
        return f"{'https' if self.use_ssl else 'http'}://{self.host}:{self.port}"

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
        where = f"bucket {self.bucket!r}" if self.version == 2 else f"database {self.database!r}"
        return f"InfluxDB v{self.version} at {self.url}, {where}"


def accepted_types(key: str) -> tuple[type, ...]:
    """The value types a config key accepts (``(object,)``: checked by its own rule)."""
    return _KEYS[key].types


def config_reference() -> list[tuple[str, str, str]]:
    """Rows ``(key, default, meaning)`` of every config key, for the README's table."""
    rows = []
    for key, spec in _KEYS.items():
        default = spec.default
        if key == "prometheus":
            default = {"enabled": False, "path": "/metrics", "extra_labels": {}}
        elif isinstance(default, tuple):
            default = list(default)
        rows.append((key, repr(default), spec.doc))
    return rows
