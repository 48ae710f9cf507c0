# `make test` and `make demo` work on a fresh Debian machine: they install what they need.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
# The lowest versions pyproject.toml allows, on the oldest Python it supports (a second CI job).
LOWEST := .venv-lowest
OLDEST_PYTHON := 3.11
SERVERS := influxd victoria-metrics prometheus wrk clickhouse-server chromium
DEB_PACKAGES := influxdb victoria-metrics prometheus wrk clickhouse-server clickhouse-client chromium fonts-dejavu-core

.PHONY: test test-lowest demo lint bench bench-peers servers compiler venv clean

# A C compiler and the Python headers build the optional compiled hot paths
# (luna_monitoring/core/_speedups.c); without them the package installs as pure Python.
compiler:
	@command -v cc >/dev/null && $(PYTHON) -c "import sysconfig, os, sys; \
		sys.exit(not os.path.exists(sysconfig.get_paths()['include'] + '/Python.h'))" || \
		(apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq \
			--no-install-recommends gcc libc6-dev python3-dev >/dev/null) || \
		echo "no C compiler: luna-monitoring installs as pure Python"

$(VENV)/.installed: pyproject.toml setup.py luna_monitoring/core/_speedups.c | compiler
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e '.[dev]'
	$(PY) -c "import luna_monitoring, sanic_ext, influxdb_client.client.influxdb_client_async"
	touch $@

venv: $(VENV)/.installed

$(LOWEST)/.installed: pyproject.toml setup.py luna_monitoring/core/_speedups.c $(VENV)/.installed
	$(PY) -m pip install --quiet uv
	rm -rf $(LOWEST)
	$(VENV)/bin/uv venv --quiet --seed --python $(OLDEST_PYTHON) $(LOWEST)
	VIRTUAL_ENV=$(LOWEST) $(VENV)/bin/uv pip install --quiet --resolution lowest-direct -e '.[dev]'
	touch $@

servers:
	@missing=""; for b in $(SERVERS); do command -v $$b >/dev/null || missing=1; done; \
	if [ -n "$$missing" ]; then \
		apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq \
			--no-install-recommends $(DEB_PACKAGES) >/dev/null; \
	fi

test: venv servers
	$(PY) -m pytest -q

# ... with the compiled hot paths switched off: the pure-Python code runs the whole suite too.
test-lowest: $(LOWEST)/.installed servers
	LUNA_MONITORING_NO_EXTENSIONS=1 $(LOWEST)/bin/python -m pytest -q

lint: venv
	$(VENV)/bin/ruff check . && $(VENV)/bin/ruff format --check .

FRAMEWORK ?= sanic
demo: venv servers
	$(PY) -m example_app.demo --framework $(FRAMEWORK)

bench: venv servers
	for b in encode collector sinks writer overhead gzip_ratio report; do $(PY) bench/$$b.py || exit 1; done

bench-peers: venv servers
	$(PY) bench/peers.py

clean:
	rm -rf $(VENV) $(LOWEST) bench/.peers .pytest_cache .hypothesis
