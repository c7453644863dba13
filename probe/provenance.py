"""Fingerprints and library versions recorded with every store (and later every result row)."""

from __future__ import annotations

import functools
import hashlib
import json
from importlib import metadata
from typing import Any

PROBE_DISTRIBUTION = "probe-embeddings"


def canonical_hash(obj: Any) -> str:
    """sha256 hex of the canonical JSON form of ``obj`` (sorted keys, no whitespace)."""
    text = json.dumps(obj, sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(text.encode()).hexdigest()


@functools.cache  # reading a distribution's metadata costs milliseconds; it does not change while running
def package_version(name: str) -> str | None:
    """Installed version of a distribution, or ``None`` when absent."""
    try:
        return metadata.version(name)
    except metadata.PackageNotFoundError:
        return None


def library_versions(*names: str) -> dict[str, str]:
    """Versions of the named distributions that are installed (probe's own always included)."""
    out = {"probe": package_version(PROBE_DISTRIBUTION) or "dev"}
    for name in names:
        v = package_version(name)
        if v is not None:
            out[name] = v
    return out
