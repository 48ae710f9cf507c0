"""A LUNA Remote SDK look-alike service built on ``luna_monitoring``; ``python -m example_app``."""
