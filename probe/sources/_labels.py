"""Class labels that spell a missing value ("NaN", "None", "null") are refused unless allowed.

A label column exported from pandas or a database writes a missing label as ``NaN`` or ``None``;
read as text it would silently become a class of its own. Such labels are rejected like empty
ones, unless the source specification keeps them on purpose with the ``allow_label`` option
(``csv:/data/m.csv?allow_label=none``, a comma list, case-insensitive).
"""

from __future__ import annotations

import numpy as np

from probe.errors import SourceError
from probe.sources._base import Source
from probe.sources._options import with_options

#: Label spellings (compared case-insensitively) that mean "no label" rather than a class.
MISSING_LABELS: tuple[str, ...] = ("nan", "none", "null")
#: Spec option keeping some of :data:`MISSING_LABELS` as real classes.
ALLOW_LABEL_OPTION = "allow_label"


def pop_allowed_labels(options: dict[str, str]) -> frozenset[str]:
    """Remove ``allow_label`` from spec options; the lower-cased labels it names (empty when absent)."""
    text = options.pop(ALLOW_LABEL_OPTION, "")
    return frozenset(p.strip().lower() for p in text.split(",") if p.strip())


def check_labels(source: Source, allowed: frozenset[str]) -> Source:
    """Refuse class labels that spell a missing value, unless ``allowed``; record ``allowed`` in the spec.

    Multi-label sources are skipped: their cells are validated as 1/0/-1/blank where they are read.

    Returns:
        ``source``, its spec carrying ``allow_label`` when labels were allowed (so the probing commands
        find the store made with it).

    Raises:
        SourceError: a class is named ``NaN``, ``None`` or ``null`` (any case) and is not allowed; the
            message names the first sample with it and how to fix or keep it.
    """
    if source.task != "multilabel":
        for code, name in enumerate(source.classes):
            key = name.strip().lower()
            if key in MISSING_LABELS and key not in allowed:
                row = int(np.flatnonzero(np.asarray(source.labels) == code)[0])
                keep = with_options(source.spec, {ALLOW_LABEL_OPTION: key})
                raise SourceError(
                    f"{source.spec}: sample {source.ids[row]!r} ({source.location(row)}) has the label {name!r}, "
                    f"which reads as a missing value; give that row its class or drop it, or keep {name!r} as a "
                    f"class with the data specification {keep}"
                )
    if allowed:
        source.spec = with_options(source.spec, {ALLOW_LABEL_OPTION: ",".join(sorted(allowed))})
    return source
