# `make test` and `make demo` work on a fresh Debian machine: they install what they need.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
SERVERS := influxd victoria-metrics prometheus wrk clickhouse-server chromium
DEB_PACKAGES := influxdb victoria-metrics prometheus wrk clickhouse-server clickhouse-client chromium fonts-dejavu-core

.PHONY: test demo lint bench servers venv clean

$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e '.[dev]'
	$(PY) -c "import luna_monitoring, sanic_ext, influxdb_client.client.influxdb_client_async"
	touch $@

venv: $(VENV)/.installed

servers:
	@missing=""; for b in $(SERVERS); do command -v $$b >/dev/null || missing=1; done; \
	if [ -n "$$missing" ]; then \
		apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq \
			--no-install-recommends $(DEB_PACKAGES) >/dev/null; \
	fi

test: venv servers
	$(PY) -m pytest -q

lint: venv
	$(VENV)/bin/ruff check . && $(VENV)/bin/ruff format --check .

demo: venv servers
	$(PY) -m example_app.demo

bench: venv servers
	for b in encode collector sinks writer overhead report; do $(PY) bench/$$b.py || exit 1; done

clean:
	rm -rf $(VENV) .pytest_cache .hypothesis
