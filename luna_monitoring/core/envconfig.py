"""A ``MONITORING`` dict from ``LUNA_MONITORING_*`` environment variables.

Every config key ``k`` can be set as ``LUNA_MONITORING_<K>`` (``LUNA_MONITORING_HOST``,
``LUNA_MONITORING_PORT``, ``LUNA_MONITORING_TOKEN``, ...). Booleans accept ``1/0``,
``true/false``, ``yes/no``, ``on/off`` (``gzip`` also ``auto``); numbers are parsed; list
and dict keys (``plugins``, ``excluded_routes``, ``prometheus``) take JSON. Keys not set
keep their defaults; the result still goes through :meth:`Settings.from_config`.
``LUNA_MONITORING_NO_EXTENSIONS`` is not a config key: it switches the compiled hot paths
off (:mod:`luna_monitoring.core.speedups`).
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from typing import Any

from .settings import MonitoringConfigError, Settings, accepted_types, config_keys
from .speedups import NO_EXTENSIONS_ENV

PREFIX = "LUNA_MONITORING_"
_BOOL_PAIRS = (("1", "0"), ("true", "false"), ("yes", "no"), ("on", "off"))
_BOOLS = {yes: True for yes, _ in _BOOL_PAIRS} | {no: False for _, no in _BOOL_PAIRS}
_DEFAULTS = Settings()
_KEYS = config_keys()


def env_name(key: str) -> str:
    """The environment variable of a config key: ``port`` -> ``LUNA_MONITORING_PORT``."""
    return PREFIX + key.upper()


def _parse(key: str, text: str) -> Any:
    kind = type(getattr(_DEFAULTS, key))
    word = text.strip().lower()
    try:
        if kind is bool or (bool in accepted_types(key) and word in _BOOLS):
            return _BOOLS[word]
        if kind is str and int in accepted_types(key) and word.isdigit():
            return int(word)  # "random" or an offset
        if kind in (int, float, str):
            return kind(text)
        return json.loads(text)
    except (KeyError, ValueError):
        booleans = f"a boolean ({', '.join('/'.join(pair) for pair in _BOOL_PAIRS)})"
        expected = {bool: booleans, int: "an integer", float: "a number"}
        # Secrets are strings: they never fail to parse, so the value can be shown.
        raise MonitoringConfigError(
            f"{env_name(key)}: expected {expected.get(kind, 'JSON')}, got {text!r}"
        ) from None


def config_from_env(environ: Mapping[str, str] | None = None) -> dict[str, Any]:
    """The ``MONITORING`` dict given by the ``LUNA_MONITORING_*`` variables of ``environ``.

    Raises :class:`MonitoringConfigError` for an unknown variable or an unparsable value.

    >>> config_from_env({"LUNA_MONITORING_VERSION": "1", "LUNA_MONITORING_PORT": "8087"})
    {'version': 1, 'port': 8087}
    """
    environ = os.environ if environ is None else environ
    names = {env_name(key): key for key in _KEYS}
    known = names.keys() | {NO_EXTENSIONS_ENV}
    unknown = sorted(n for n in environ if n.startswith(PREFIX) and n not in known)
    if unknown:
        raise MonitoringConfigError(
            f"unknown environment variable(s) {', '.join(unknown)}; known: {', '.join(names)}"
        )
    return {key: _parse(key, environ[name]) for name, key in names.items() if name in environ}
