"""Atomic file writes: write to a temporary file beside the target, then rename.

An interrupted or failed write never leaves a half-written file at the
target path, and never replaces a good file with a broken one: the target is
only ever touched by ``os.replace``, which is atomic on one file system.
"""

from __future__ import annotations

import contextlib
import os
import tempfile
from pathlib import Path


@contextlib.contextmanager
def atomic_write(path, mode="wb"):
    """Context manager yielding a file object whose contents land at ``path``.

    The data goes to a temporary file in the same directory (created if
    needed); on a clean exit it is flushed, synced and renamed to ``path``.
    If the block raises, the temporary file is removed and ``path`` is left
    as it was.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp_name = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, mode) as handle:
            yield handle
            handle.flush()
            os.fsync(handle.fileno())
        os.chmod(tmp_name, _permissions_for(path))
        os.replace(tmp_name, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp_name)
        raise


def _permissions_for(path):
    """The mode a plain open() would give a new file (0o666 less the umask), or the old file's."""
    try:
        return os.stat(path).st_mode & 0o777
    except FileNotFoundError:
        umask = os.umask(0)
        os.umask(umask)
        return 0o666 & ~umask
