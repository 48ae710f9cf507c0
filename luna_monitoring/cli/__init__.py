"""The command line: ``python -m luna_monitoring COMMAND``."""

from .main import main

__all__ = ["main"]
