"""A JSON cache of per-file values keyed by (size, mtime, ctime, inode): content digests, DICOM headers."""

from __future__ import annotations

import contextlib
import json
import os
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

FRESH_NS = 2_000_000_000  # files changed within 2 s are not cached (coarse file-system timestamps)


def cached_per_file(
    paths: Sequence[str],
    *,
    cache_file: Path,
    compute: Callable[[str], Any],
    missing: Any,
    cacheable: Callable[[Any], bool] = lambda value: True,
) -> list[Any]:
    """``compute(path)`` for every path, reusing ``cache_file`` entries whose file status still matches.

    The cache is JSON ``{path: [size, mtime_ns, ctime_ns, inode, value]}``; ctime cannot be set by copy
    tools, so a replaced file is always recomputed. The cache only saves time: an unreadable cache is
    rebuilt, and a read-only one is not written.

    Args:
        paths: file paths.
        cache_file: the JSON cache.
        compute: the value of one file (JSON-able).
        missing: the value of a path that cannot be stat-ed.
        cacheable: whether a computed value may be cached (e.g. not an "unreadable" marker).

    Returns:
        One value per path, in order.
    """
    try:
        cache: dict[str, list[Any]] = json.loads(cache_file.read_text())
        if not isinstance(cache, dict):
            cache = {}
    except (OSError, ValueError):
        cache = {}
    out, changed, now = [], False, time.time_ns()
    for path in paths:
        try:
            st = os.stat(path)
        except OSError:
            out.append(missing)
            continue
        key = [st.st_size, st.st_mtime_ns, st.st_ctime_ns, st.st_ino]
        entry = cache.get(path)
        if isinstance(entry, list) and len(entry) == 5 and entry[:4] == key:
            out.append(entry[4])
            continue
        value = compute(path)
        if now - max(st.st_mtime_ns, st.st_ctime_ns) > FRESH_NS and cacheable(value):
            cache[path], changed = [*key, value], True
        out.append(value)
    if changed:
        with contextlib.suppress(OSError):  # a read-only cache only costs time
            cache_file.parent.mkdir(parents=True, exist_ok=True)
            tmp = cache_file.with_suffix(f".{os.getpid()}.tmp")
            tmp.write_text(json.dumps(cache))
            os.replace(tmp, cache_file)
    return out
