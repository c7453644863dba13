"""Options written into a source specification: ``PREFIX:ARGUMENT?key=value&key=value``.

Options that change the data (a DICOM window, probe-made splits) belong to the data, not to one
command, so they travel inside the specification: they reach ``extract``, ``curve`` and
``data check`` alike, and the canonical form is recorded in the store.
"""

from __future__ import annotations

import os

from probe.errors import ConfigError


def split_spec_options(arg: str, *, prefix: str) -> tuple[str, dict[str, str]]:
    """Split ``"/data/ct?window=lung&frames=all"`` into the argument and its options.

    A ``?`` that belongs to an existing path is left alone.

    Raises:
        ConfigError: an option is not ``key=value`` or is given twice.
    """
    base, sep, query = arg.partition("?")
    if not sep or os.path.exists(os.path.expanduser(arg)):
        return arg, {}
    options: dict[str, str] = {}
    for part in query.split("&"):
        key, eq, value = part.partition("=")
        key = key.strip().lower().replace("-", "_")
        if not eq or not key or not value.strip():
            raise ConfigError(
                f"{prefix}:{arg}: option {part!r} is not key=value; write e.g. {prefix}:{base}?split=70,10,20"
            )
        if key in options:
            raise ConfigError(f"{prefix}:{arg}: option {key!r} is given twice; keep one")
        options[key] = value.strip()
    return base, options


def check_option_keys(options: dict[str, str], allowed: tuple[str, ...], *, spec: str) -> None:
    """Refuse options a source does not understand, naming those it does."""
    bad = sorted(set(options) - set(allowed))
    if bad:
        hint = ", ".join(allowed) if allowed else "none besides split, split_seed and allow_label"
        raise ConfigError(f"{spec}: unknown option(s) {', '.join(bad)}; this source accepts: {hint}")


def with_options(spec: str, options: dict[str, str]) -> str:
    """``spec`` with ``options`` appended in sorted key order (the canonical form); unchanged when empty."""
    if not options:
        return spec
    query = "&".join(f"{k}={options[k]}" for k in sorted(options))
    return f"{spec}&{query}" if "?" in spec.partition(":")[2] else f"{spec}?{query}"
