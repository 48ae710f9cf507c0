"""``python -m luna_monitoring``: see :mod:`luna_monitoring.cli`."""

import sys

from .cli import main

sys.exit(main())
