"""Atomic file writes: a reader (or a crash) never sees a half-written output file."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

_UMASK = os.umask(0)  # read once at import (reading it means setting it)
os.umask(_UMASK)


def write_atomic(path: str | os.PathLike[str], data: bytes | str, *, encoding: str = "utf-8") -> Path:
    """Write ``data`` to a temporary file beside ``path``, flush it to disk, then rename it over ``path``.

    The temporary file lives in the same folder, so the final :func:`os.replace` is atomic: ``path``
    holds either its old content or the whole new content, never a part of it.

    Args:
        path: the file to (re)write; its folder must exist.
        data: bytes, or text encoded with ``encoding``.
        encoding: text encoding.

    Returns:
        ``path`` as a :class:`~pathlib.Path`.
    """
    target = Path(path)
    payload = data.encode(encoding) if isinstance(data, str) else data
    fd, tmp = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".tmp", dir=target.parent)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(payload)
            f.flush()
            os.fsync(f.fileno())
        os.chmod(tmp, 0o666 & ~_UMASK)  # mkstemp makes 0600; give the file the mode open() would
        os.replace(tmp, target)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return target
