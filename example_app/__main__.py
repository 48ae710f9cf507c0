"""``python -m example_app``: serve the example with ``LUNA_EXAMPLE_*`` and
``LUNA_MONITORING_*`` settings from the environment (each worker builds its own app)."""

from __future__ import annotations

from sanic import Sanic
from sanic.worker.loader import AppLoader

from .app import Options, create_app


def main() -> None:
    """Run until interrupted."""
    options = Options.from_env()
    loader = AppLoader(factory=create_app)
    app = loader.load()
    app.prepare(host=options.host, port=options.port, workers=options.workers, access_log=False)
    Sanic.serve(primary=app, app_loader=loader)


if __name__ == "__main__":
    main()
