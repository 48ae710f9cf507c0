"""``python -m luna_monitoring.dashboards.generator``."""

import sys

from . import main

sys.exit(main())
