"""The package's version: from the installed distribution, else from ``pyproject.toml``."""

from __future__ import annotations

import tomllib
from importlib import metadata
from pathlib import Path

DISTRIBUTION = "luna-monitoring"


def package_version() -> str:
    """The installed version; in a source checkout that is not installed, the one in its
    ``pyproject.toml``; ``0+unknown`` if neither is there.

    >>> package_version()
    '0.1.0'
    """
    try:
        return metadata.version(DISTRIBUTION)
    except metadata.PackageNotFoundError:
        pass
    pyproject = Path(__file__).resolve().parents[2] / "pyproject.toml"
    try:
        return str(tomllib.loads(pyproject.read_text())["project"]["version"])
    except (OSError, KeyError, tomllib.TOMLDecodeError):
        return "0+unknown"
