"""Writing files safely: atomic replacement, locks for builders of one cache entry, and moving a
corrupt file aside.

- :func:`atomic_write` writes through a unique temporary file in the target's folder and
  ``os.replace``s it onto the target: a reader sees the old file or the new one, never half of
  one, and two writers never share a temporary name.
- :func:`entry_lock` serialises processes that build the same cache entry (``filelock``, a
  well-kept cross-platform library: the lock is released when its holder exits, even killed).
- :func:`move_aside` renames a corrupt file to ``<name>.corrupt-<time>`` (kept for inspection)
  and warns in one line naming it.
"""

from __future__ import annotations

import contextlib
import os
import tempfile
import time
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import IO, Union

from filelock import FileLock

Content = Union[str, bytes, Callable[[IO[bytes]], object]]


class CacheWarning(UserWarning):
    """A cache entry was corrupt or did not verify; it was moved aside and is rebuilt."""


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def atomic_write(path: str | os.PathLike[str], content: Content) -> Path:
    """Write ``content`` (text, bytes, or a function that writes to a binary file object, such
    as ``lambda f: torch.save(obj, f)``) to ``path`` atomically; parent folders are created.
    Returns the path."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            if callable(content):
                content(f)
            else:
                f.write(content.encode() if isinstance(content, str) else content)
            f.flush()
            os.fsync(f.fileno())
        os.chmod(tmp, 0o666 & ~_umask())  # mkstemp makes 0600; give the usual permissions
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise
    return path


def entry_lock(path: str | os.PathLike[str], timeout: float = -1) -> FileLock:
    """An inter-process lock for the cache entry ``path`` (the file ``<path>.lock``); use as
    ``with entry_lock(path): ...``. ``timeout`` in seconds, -1 waits for ever."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    return FileLock(str(path) + ".lock", timeout=timeout)


def move_aside(path: str | os.PathLike[str], reason: str) -> Path:
    """Rename a corrupt ``path`` to ``<name>.corrupt-<unix time>`` (``-2``, ``-3``... appended
    when that exists: an earlier copy is never overwritten) and warn (one line) with ``reason``;
    returns the new path."""
    path = Path(path)
    stem = f"{path.name}.corrupt-{time.time():.0f}"
    target, n = path.with_name(stem), 1
    while target.exists():
        n += 1
        target = path.with_name(f"{stem}-{n}")
    os.replace(path, target)
    warnings.warn(f"{path}: {reason}; moved aside to {target.name} and rebuilding",
                  CacheWarning, stacklevel=2)
    return target
