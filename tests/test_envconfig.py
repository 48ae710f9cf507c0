"""``config_from_env``: the MONITORING dict from LUNA_MONITORING_* variables."""

from __future__ import annotations

import pytest

from luna_monitoring import MonitoringConfigError, Settings
from luna_monitoring.core.envconfig import config_from_env, env_name


class TestParsing:
    def test_nothing_set_gives_an_empty_config(self):
        """No variable: an empty dict, so every key keeps its default."""
        assert config_from_env({"PATH": "/bin", "LUNA_EXAMPLE_PORT": "1"}) == {}

    def test_documented_variables(self):
        """The variables the README documents map to their keys with their types."""
        environ = {
            "LUNA_MONITORING_HOST": "influx.local",
            "LUNA_MONITORING_PORT": "8087",
            "LUNA_MONITORING_VERSION": "1",
            "LUNA_MONITORING_DATABASE": "db",
            "LUNA_MONITORING_BUCKET": "bucket",
            "LUNA_MONITORING_ORGANIZATION": "org",
            "LUNA_MONITORING_TOKEN": "t0ken",
            "LUNA_MONITORING_USERNAME": "user",
            "LUNA_MONITORING_PASSWORD": "pass",
        }
        assert config_from_env(environ) == {
            "version": 1,
            "host": "influx.local",
            "port": 8087,
            "organization": "org",
            "token": "t0ken",
            "bucket": "bucket",
            "database": "db",
            "username": "user",
            "password": "pass",
        }

    @pytest.mark.parametrize(
        ("text", "value"),
        [("1", True), ("true", True), ("YES", True), ("on", True), ("0", False), ("off", False)],
    )
    def test_booleans(self, text, value):
        """Booleans accept 1/0, true/false, yes/no, on/off in any case."""
        assert config_from_env({"LUNA_MONITORING_USE_SSL": text}) == {"use_ssl": value}

    @pytest.mark.parametrize(("text", "value"), [("auto", "auto"), ("off", False), ("1", True)])
    def test_gzip_takes_a_boolean_or_auto(self, text, value):
        config = config_from_env({"LUNA_MONITORING_GZIP": text})
        assert config == {"gzip": value} and Settings.from_config(config).gzip == value

    def test_floats_and_json(self):
        """Numbers are parsed; list and dict keys take JSON."""
        config = config_from_env(
            {
                "LUNA_MONITORING_FLUSHING_PERIOD": "0.25",
                "LUNA_MONITORING_PLUGINS": '["pkg.mod:Plugin"]',
                "LUNA_MONITORING_PROMETHEUS": '{"enabled": true}',
            }
        )
        assert config == {
            "flushing_period": 0.25,
            "plugins": ["pkg.mod:Plugin"],
            "prometheus": {"enabled": True},
        }
        settings = Settings.from_config(config)
        assert settings.plugins == ("pkg.mod:Plugin",)
        assert settings.prometheus.enabled is True

    def test_every_key_has_a_variable(self):
        """Each config key can be set from the environment."""
        for key in Settings.__dataclass_fields__:
            assert env_name(key) == "LUNA_MONITORING_" + key.upper()

    def test_instance_offset_variable(self):
        """A number or ``random``, as in the config."""
        assert config_from_env({"LUNA_MONITORING_INSTANCE_OFFSET": "12"}) == {"instance_offset": 12}
        random = config_from_env({"LUNA_MONITORING_INSTANCE_OFFSET": "random"})
        assert Settings.from_config(random).instance_offset == "random"

    def test_url_variable(self):
        """LUNA_MONITORING_URL sets the whole address, IPv6 included."""
        config = config_from_env({"LUNA_MONITORING_URL": "http://[::1]:8087/influx"})
        assert config == {"url": "http://[::1]:8087/influx"}
        assert Settings.from_config(config).url == "http://[::1]:8087/influx"


class TestErrors:
    def test_unknown_variable_is_named(self):
        """A misspelt variable fails and is named, with the known ones."""
        with pytest.raises(MonitoringConfigError) as caught:
            config_from_env({"LUNA_MONITORING_HOTS": "x"})
        message = str(caught.value)
        assert message.startswith("unknown environment variable(s) LUNA_MONITORING_HOTS; known: ")
        assert "LUNA_MONITORING_HOST," in message

    @pytest.mark.parametrize(
        ("name", "expected"),
        [
            ("LUNA_MONITORING_PORT", "an integer"),
            ("LUNA_MONITORING_USE_SSL", "a boolean (1/0, true/false, yes/no, on/off)"),
            ("LUNA_MONITORING_FLUSHING_PERIOD", "a number"),
            ("LUNA_MONITORING_PLUGINS", "JSON"),
        ],
    )
    def test_unparsable_value_names_variable_and_expectation(self, name, expected):
        """The error names the variable, what was expected and the value."""
        with pytest.raises(MonitoringConfigError) as caught:
            config_from_env({name: "[oops"})
        assert str(caught.value) == f"{name}: expected {expected}, got '[oops'"
