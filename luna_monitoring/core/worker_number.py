"""A number for each worker process of one server, for servers that do not number them.

Sanic names its workers (``Sanic-Server-3-0``: see :func:`~luna_monitoring.core.runtime.
worker_clock`); gunicorn and other pre-fork servers do not. Their workers share a parent,
so each worker holds an exclusive ``flock`` on one numbered file of a directory named after
the parent's pid, the lowest one free: workers alive at once never hold the same number,
and a worker that dies (even by SIGKILL) frees its number for the one replacing it. The
first worker also draws the instance's random offset (see
:func:`~luna_monitoring.core.runtime.instance_offset`) into the directory, where the others
find it: the workers of one instance share it, other instances draw their own.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import secrets
import tempfile

from .clock import UniqueClock
from .runtime import WORKER_STRIDE


class WorkerNumber:
    """This process's number among its parent's workers, held until :meth:`release`.

    >>> number = WorkerNumber.claim()
    >>> clock = number.clock()                 # timestamps of this worker: number mod 1024
    >>> number.release()                       # at shutdown
    """

    def __init__(self, number: int, fd: int | None, offset: int) -> None:
        self.number = number
        self.offset = offset
        """The random offset of this instance's workers (used unless one is configured)."""
        self._fd = fd

    @classmethod
    def claim(cls, directory: str | None = None) -> WorkerNumber:
        """The lowest number free among the workers of this process's parent; the pid modulo
        1024 when no lock can be taken (a directory of another user, a full disk)."""
        if directory is None:
            directory = os.path.join(tempfile.gettempdir(), f"luna-monitoring-{os.getppid()}")
        try:
            os.makedirs(directory, mode=0o700, exist_ok=True)
            for number in range(WORKER_STRIDE):
                fd = os.open(os.path.join(directory, str(number)), os.O_RDWR | os.O_CREAT, 0o600)
                try:
                    fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                except BlockingIOError:
                    os.close(fd)
                    continue
                return cls(number, fd, _shared_offset(directory))
        except OSError:
            pass
        return cls(os.getpid() % WORKER_STRIDE, None, secrets.randbelow(WORKER_STRIDE))

    def clock(self, configured_offset: int | str = "random") -> UniqueClock:
        """The worker's clock: its timestamps are the instance offset (``configured_offset``
        when it is an int, else :attr:`offset`) plus its number, modulo ``WORKER_STRIDE``."""
        offset = configured_offset if isinstance(configured_offset, int) else self.offset
        return UniqueClock((offset + self.number) % WORKER_STRIDE, WORKER_STRIDE)

    def release(self) -> None:
        """Free the number (closing the locked file)."""
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None


def _shared_offset(directory: str) -> int:
    """The offset kept in ``directory``, drawn and published atomically by the first caller."""
    path = os.path.join(directory, "offset")
    draft = f"{path}.{os.getpid()}"
    with open(draft, "w") as file:
        file.write(str(secrets.randbelow(WORKER_STRIDE)))
    try:
        with contextlib.suppress(FileExistsError):
            os.link(draft, path)  # atomic: the file is whole before anyone can read it
    finally:
        os.unlink(draft)
    with open(path) as file:
        return int(file.read()) % WORKER_STRIDE
