"""gunicorn settings of the aiohttp example (``gunicorn -c python:example_app.gunicorn_conf``):
aiohttp's worker, ``LUNA_EXAMPLE_HOST``/``PORT``/``WORKERS``, and the example's log lines
(each worker's final monitoring counters) on stderr."""

from example_app.service import Options

_options = Options.from_env()
worker_class = "aiohttp.GunicornWebWorker"
bind = f"{_options.host}:{_options.port}"
workers = _options.workers
graceful_timeout = 30
# gunicorn's own logging configuration, with the root logger (hence example_app's) at INFO
logconfig_dict = {"root": {"level": "INFO", "handlers": ["error_console"]}}
