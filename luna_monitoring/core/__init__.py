"""The framework-neutral core: schema, settings, points, encoder, buffer, writer, collector,
request points, plugins and Prometheus, with the optional compiled hot paths
(``_speedups.c``, loaded by :mod:`.speedups`). Nothing here imports a web framework
(``tests/test_layout.py`` imports it with Sanic and aiohttp blocked); the adapters are
``luna_monitoring.sanic`` and ``luna_monitoring.aiohttp``."""
