"""MONITORING config -> frozen, validated settings."""

from __future__ import annotations

import dataclasses
import logging
import math

import pytest

from luna_monitoring.core.metric_families import DEFAULT_BUCKETS
from luna_monitoring.core.settings import MonitoringConfigError, Settings, config_reference

SECRET = "s3cr3t-value-never-shown"


class TestDefaults:
    def test_empty_config_gives_design_defaults(self):
        """Every key of DESIGN.md has its documented default."""
        s = Settings.from_config({})
        assert (s.send_data_for_monitoring, s.storage_type, s.version) == (True, "influx", 2)
        assert (s.host, s.port, s.use_ssl) == ("127.0.0.1", 8086, False)
        assert (s.organization, s.token, s.bucket) == ("", "", "luna_monitoring")
        assert (s.database, s.username, s.password, s.retention_policy) == (
            "luna_monitoring",
            "",
            "",
            "",
        )
        assert (s.flushing_period, s.batch_size, s.max_buffer_points) == (1.0, 5000, 100000)
        assert (s.service, s.excluded_routes, s.plugins) == ("luna-remote-sdk", (), ())
        assert s.prometheus.enabled is False
        assert s.prometheus.path == "/metrics"
        assert dict(s.prometheus.extra_labels) == {}
        assert s.gzip == "auto"

    def test_none_means_defaults(self):
        """A missing MONITORING section is the defaults."""
        assert Settings.from_config(None) == Settings.from_config({})

    def test_settings_are_frozen(self):
        """Settings cannot be changed after validation."""
        with pytest.raises(dataclasses.FrozenInstanceError):
            Settings.from_config({}).port = 1

    def test_int_accepted_for_float_keys(self):
        """flushing_period=2 is 2.0 seconds."""
        s = Settings.from_config({"flushing_period": 2})
        assert s.flushing_period == 2.0 and type(s.flushing_period) is float

    def test_url_and_target(self):
        """url follows use_ssl; target names the bucket or database."""
        s = Settings.from_config({"use_ssl": True, "host": "db.local", "port": 443})
        assert s.url == "https://db.local:443"
        v1 = Settings.from_config({"version": 1, "database": "mon"})
        assert v1.target == "InfluxDB v1 at http://127.0.0.1:8086, database 'mon'"

    @pytest.mark.parametrize(
        ("host", "gzip", "compress"),
        [
            ("127.0.0.1", "auto", False),
            ("127.8.0.3", "auto", False),
            ("localhost", "auto", False),
            ("::1", "auto", False),
            ("[::1]", "auto", False),
            ("10.0.0.5", "auto", True),
            ("influxdb.example", "auto", True),
            ("127.0.0.1", True, True),
            ("influxdb.example", False, False),
        ],
    )
    def test_gzip_auto_compresses_unless_the_host_is_loopback(self, host, gzip, compress):
        """No network between the worker and a loopback database: nothing to compress for."""
        assert Settings.from_config({"host": host, "gzip": gzip}).compress is compress

    def test_excluded_routes_are_compiled(self):
        """excluded_routes become compiled patterns."""
        s = Settings.from_config({"excluded_routes": [r"^GET:/health"]})
        assert s.excluded_routes[0].search("GET:/healthcheck")


class TestErrors:
    @pytest.mark.parametrize(
        ("config", "message"),
        [
            (
                {"prot": 1},
                "unknown key(s) 'prot'; known keys: send_data_for_monitoring",
            ),
            ({"port": "8086"}, "MONITORING['port']: expected int, got '8086'"),
            ({"port": 0}, "MONITORING['port']: expected a port number in 1..65535, got 0"),
            ({"port": 65536}, "['port']: expected a port number in 1..65535, got 65536"),
            ({"port": True}, "MONITORING['port']: expected int, got True"),
            (
                {"flushing_period": -1},
                "['flushing_period']: expected a number > 0, got -1",
            ),
            ({"flushing_period": 0}, "MONITORING['flushing_period']: expected a number > 0, got 0"),
            ({"batch_size": 0}, "MONITORING['batch_size']: expected an integer >= 1, got 0"),
            ({"batch_size": 1.5}, "MONITORING['batch_size']: expected int, got 1.5"),
            ({"version": 3}, "MONITORING['version']: expected one of 1, 2, got 3"),
            ({"storage_type": "sql"}, "MONITORING['storage_type']: expected one of 'influx'"),
            ({"send_data_for_monitoring": 1}, "expected bool, got 1"),
            ({"gzip": "yes"}, "MONITORING['gzip']: expected one of 'auto', True, False, got 'y"),
            ({"gzip": 1}, "MONITORING['gzip']: expected bool or str, got 1"),
            ({"service": ""}, "MONITORING['service']: expected a non-empty string, got ''"),
            ({"excluded_routes": "GET:/"}, "expected a list of strings, got 'GET:/'"),
            ({"excluded_routes": ["("]}, "MONITORING['excluded_routes']: expected valid regular"),
            ({"plugins": ["nocolon"]}, 'expected "package.module:ClassName" strings, got \'noco'),
            ({"prometheus": {"enabled": "yes"}}, "MONITORING['prometheus.enabled']: expected bool"),
            ({"prometheus": {"path": "metrics"}}, "expected a path starting with '/'"),
            ({"prometheus": {"port": 1}}, "expected only the keys enabled, path, extra_labels"),
            ({"prometheus": {"extra_labels": {"route": "x"}}}, "got 'route'"),
            ({"prometheus": {"extra_labels": {"a-b": "x"}}}, "got 'a-b'"),
            ({"prometheus": {"extra_labels": {"dc": 1}}}, "expected a dict of str to str"),
            ({"prometheus": {"extra_labels": {"batch_size": "1"}}}, "got 'batch_size'"),
            ({"prometheus": {"buckets": []}}, "['prometheus.buckets']: expected a dict with keys"),
            ({"prometheus": {"buckets": {"x_seconds": [1]}}}, "among request_duration_seconds"),
            (
                {"prometheus": {"buckets": {"image_load_size_bytes": [2, 1]}}},
                "['prometheus.buckets.image_load_size_bytes']: expected a list of 1..50 "
                "increasing finite numbers (+Inf is added), got [2, 1]",
            ),
            ({"prometheus": {"buckets": {"request_duration_seconds": []}}}, "got []"),
            ({"prometheus": {"buckets": {"request_duration_seconds": [1, 1]}}}, "got [1, 1]"),
            ({"prometheus": {"buckets": {"request_duration_seconds": [math.inf]}}}, "got [inf]"),
            ({"prometheus": {"buckets": {"request_duration_seconds": ["1"]}}}, "got ['1']"),
            ({"prometheus": {"buckets": {"request_duration_seconds": [True]}}}, "got [True]"),
            ({"prometheus": {"buckets": {"request_duration_seconds": [0.1] * 51}}}, "1..50"),
        ],
    )
    def test_bad_value_names_key_expectation_and_value(self, config, message):
        """Each fault is one message naming the key, the expectation and the value."""
        with pytest.raises(MonitoringConfigError) as info:
            Settings.from_config(config)
        assert message in str(info.value)

    def test_config_error_is_a_value_error(self):
        """Callers may catch ValueError."""
        assert issubclass(MonitoringConfigError, ValueError)

    @pytest.mark.parametrize(("value", "kind"), [([], "list"), ("not a dict", "str")])
    def test_not_a_mapping(self, value, kind):
        """MONITORING must be a dict; the message names it once and shows only the type."""
        with pytest.raises(MonitoringConfigError) as info:
            Settings.from_config(value)  # type: ignore[arg-type]
        assert str(info.value) == f"MONITORING: expected a dict of settings, got {kind}"


class TestSecrets:
    @pytest.mark.parametrize("key", ["token", "password"])
    def test_secret_never_in_repr(self, key):
        """repr and str of settings leave secrets out."""
        s = Settings.from_config({key: SECRET})
        assert SECRET not in repr(s) and SECRET not in str(s)

    @pytest.mark.parametrize("key", ["token", "password"])
    def test_secret_never_in_error(self, key):
        """A wrongly typed secret is reported without its value."""
        with pytest.raises(MonitoringConfigError) as info:
            Settings.from_config({key: [SECRET]})
        assert SECRET not in str(info.value)
        assert f"MONITORING[{key!r}]: expected str, got <hidden>" == str(info.value)

    def test_secret_never_logged(self, caplog):
        """Logging the settings object leaves secrets out."""
        caplog.set_level(logging.DEBUG)
        s = Settings.from_config({"token": SECRET, "password": SECRET})
        logging.getLogger("luna_monitoring").info("settings: %s %r", s, s)
        assert caplog.records and SECRET not in caplog.text


def test_prometheus_buckets_replace_only_the_given_histograms():
    """Configured bounds replace that histogram's defaults (as floats); the rest keep theirs."""
    buckets = Settings.from_config(
        {"prometheus": {"buckets": {"image_load_size_bytes": [1000, 1e6]}}}
    ).prometheus.buckets
    assert buckets["image_load_size_bytes"] == (1000.0, 1e6)
    assert {k: v for k, v in buckets.items() if k != "image_load_size_bytes"} == {
        k: v for k, v in DEFAULT_BUCKETS.items() if k != "image_load_size_bytes"
    }


def test_config_reference_covers_every_setting():
    """The documented table has one row per Settings field, in order."""
    keys = [row[0] for row in config_reference()]
    assert keys == [f.name for f in dataclasses.fields(Settings)]
    assert dict((k, d) for k, d, _ in config_reference())["batch_size"] == "5000"


def test_docstring_examples_run():
    """The examples in the settings docstrings are true."""
    import doctest

    from luna_monitoring.core import settings

    assert doctest.testmod(settings).failed == 0


class TestAddress:
    """``url`` as an alternative to host/port/use_ssl; hosts that hold more than a host."""

    @pytest.mark.parametrize(
        ("url", "host", "port", "use_ssl", "base"),
        [
            ("http://127.0.0.1:8086", "127.0.0.1", 8086, False, "http://127.0.0.1:8086"),
            ("https://influx.example.com", "influx.example.com", 443, True, None),
            ("http://db.local", "db.local", 80, False, "http://db.local:80"),
            ("https://proxy.example/influx/", "proxy.example", 443, True, None),
            ("http://[::1]:8086", "::1", 8086, False, "http://[::1]:8086"),
            ("HTTP://DB.Local:9/a/b", "db.local", 9, False, "http://db.local:9/a/b"),
        ],
    )
    def test_url_sets_host_port_use_ssl_and_path_prefix(self, url, host, port, use_ssl, base):
        """The parts of ``url`` become host, port and use_ssl; its path is kept as a prefix."""
        s = Settings.from_config({"url": url})
        assert (s.host, s.port, s.use_ssl) == (host, port, use_ssl)
        expected = base or f"https://{host}:443" + url.split(host, 1)[1].rstrip("/")
        assert s.url == expected
        assert s.target == f"InfluxDB v2 at {expected}, bucket 'luna_monitoring'"

    @pytest.mark.parametrize("host", ["::1", "[::1]", "fe80::1", "2001:db8::8"])
    def test_ipv6_host_is_bracketed_in_the_url(self, host):
        """``host: "::1"`` gives ``http://[::1]:8086``, not the unparsable ``http://::1:8086``."""
        s = Settings.from_config({"host": host})
        bare = host.strip("[]")
        assert (s.host, s.url) == (bare, f"http://[{bare}]:8086")

    @pytest.mark.parametrize(
        "host",
        [
            "http://127.0.0.1",
            "https://influx.example.com",
            "127.0.0.1:58837",
            "influx.example.com:8086",
            "[::1]:8086",
            "influx.example.com/prefix",
            "user@influx",
            "two words",
            "",
        ],
    )
    def test_host_with_scheme_port_or_path_is_rejected_naming_url(self, host):
        """A scheme or port in ``host`` fails at once, in one line that names ``url``."""
        with pytest.raises(MonitoringConfigError) as info:
            Settings.from_config({"host": host})
        message = str(info.value)
        assert message == (
            "MONITORING['host']: expected a host name or IP address without scheme, port or "
            "path (for a full address use 'url', e.g. 'url': 'http://127.0.0.1:8086'), "
            f"got {host!r}"
        )
        assert "\n" not in message

    @pytest.mark.parametrize(
        "url",
        ["127.0.0.1:8086", "influx", "ftp://influx", "http://", "http://h:0", "http://h:99999"],
    )
    def test_bad_url_is_rejected(self, url):
        """Only http(s) URLs with a host are accepted."""
        with pytest.raises(MonitoringConfigError, match=r"^MONITORING\['url'\]: expected an http"):
            Settings.from_config({"url": url})

    def test_url_with_query_is_rejected(self):
        """A query string would be lost; it is refused."""
        with pytest.raises(MonitoringConfigError, match="without query or fragment"):
            Settings.from_config({"url": "http://h:1/p?db=x"})

    def test_credentials_in_url_are_rejected_and_not_shown(self):
        """``http://user:secret@host`` is refused without showing the password."""
        with pytest.raises(MonitoringConfigError) as info:
            Settings.from_config({"url": f"http://admin:{SECRET}@influx:8086"})
        assert SECRET not in str(info.value) and "username/password" in str(info.value)

    @pytest.mark.parametrize("key", ["host", "port", "use_ssl"])
    def test_url_and_host_port_or_use_ssl_together_is_an_error(self, key):
        """Two addresses at once: which one was meant is not guessed."""
        other = {"host": "db", "port": 8086, "use_ssl": True}[key]
        with pytest.raises(MonitoringConfigError) as info:
            Settings.from_config({"url": "http://db:8086", key: other})
        assert str(info.value) == (
            f"MONITORING: 'url' and {key!r} both given; give either 'url' or host/port/use_ssl"
        )


class TestInstanceOffset:
    @pytest.mark.parametrize("value", ["random", 0, 1023])
    def test_accepted(self, value):
        assert Settings.from_config({"instance_offset": value}).instance_offset == value

    @pytest.mark.parametrize("value", [-1, 1024, "7", "auto", 1.0, True])
    def test_rejected(self, value):
        with pytest.raises(MonitoringConfigError, match=r"^MONITORING\['instance_offset'\]"):
            Settings.from_config({"instance_offset": value})


class TestCustomSeries:
    def test_declared_series_get_typed_fields_and_required_tags(self):
        s = Settings.from_config(
            {
                "custom_series": {
                    "cache": {"tags": ["kind"], "fields": {"hits": "int", "r": "float"}}
                }
            }
        )
        [series] = s.custom_series.values()
        assert (series.name, series.tags, dict(series.fields)) == (
            "cache",
            ("kind",),
            {"hits": int, "r": float},
        )
        assert series.description == "your own points (custom_series)"

    @pytest.mark.parametrize(
        ("value", "message"),
        [
            ([], "MONITORING['custom_series']: expected a dict of series name to "),
            (
                {"requests": {"fields": {"a": "int"}}},
                "MONITORING['custom_series']: expected names other than the built-in series, "
                "got 'requests'",
            ),
            (
                {"x y": {"fields": {"a": "int"}}},
                "MONITORING['custom_series']: expected names matching",
            ),
            ({"x": {"fields": {}}}, "MONITORING['custom_series.x.fields']: expected a non-empty"),
            (
                {"x": {"fields": {"a": "bool"}}},
                'MONITORING[\'custom_series.x.fields.a\']: expected "int", "float" or "str", '
                "got 'bool'",
            ),
            (
                {"x": {"tags": ["a"], "fields": {"a": "int"}}},
                "MONITORING['custom_series.x']: expected tag and field names used once, got ['a']",
            ),
            (
                {"x": {"tags": ["service"], "fields": {"a": "int"}}},
                "MONITORING['custom_series.x.tags']: expected names matching",
            ),
            (
                {"x": {"fields": {"a": "int"}, "taggs": []}},
                "MONITORING['custom_series.x']: expected a dict with \"fields\" and optionally",
            ),
            (
                {"x": {"fields": {"a\nb": "int"}}},
                "MONITORING['custom_series.x.fields']: expected names matching",
            ),
        ],
    )
    def test_invalid_declarations_are_named(self, value, message):
        with pytest.raises(MonitoringConfigError) as info:
            Settings.from_config({"custom_series": value})
        assert str(info.value).startswith(message)
