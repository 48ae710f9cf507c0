"""Writes through the Writer and both storages into failing servers; reports the root logger.

Run as a fresh process (pytest installs handlers on the root logger itself). Standard input: a
JSON list of ``[MONITORING dict, line-protocol body]``. Prints one JSON object: the status
of each failed write (``null``: no answer) and the number of root logger handlers after all.
"""

from __future__ import annotations

import asyncio
import json
import logging
import sys

from luna_monitoring.core.settings import Settings
from luna_monitoring.core.writer import Writer
from luna_monitoring.storages import WriteError, make_storage


async def statuses(cases: list[list]) -> list[int | None]:
    result = []
    for config, body in cases:
        settings = Settings.from_config(config)
        storage = make_storage(settings)
        try:
            await storage.write(body.encode())
        except WriteError as error:
            result.append(error.status)
        else:
            result.append(204)
        finally:
            await storage.close()
        writer = Writer(settings, make_storage(settings))  # its log lines, too
        writer.append(("check", 1, {"service": "s"}, {"x": 1}))
        await writer.flush()
        await writer.storage.close()
    return result


if __name__ == "__main__":
    found = asyncio.run(statuses(json.load(sys.stdin)))
    print(json.dumps({"statuses": found, "root_handlers": len(logging.getLogger().handlers)}))
