"""Result setups: what makes a row's curve its own, a key to group by, and labels that show only what differs.

A row's ``setup`` (a :class:`~probe.results.ResultRow` field) holds the store fingerprint, the fields of
the store a reader can name (source resolution, image size, resolution policy, weights, storage
precision, pooling, fusion, slices) and the head's settings that change numbers (k, vote,
temperature, C rule, prototype rule, feature preprocessing, ...). Two rows belong to one curve only
when their setups are equal; a label names a setup by the fields in which it differs from the other
setups of the same dataset and backbone (``efficientnet_lite0 @128px from 28px``).
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import pandas as pd

#: Setup fields that describe the store (the rest describe the head), in label order.
STORE_FIELDS: tuple[str, ...] = (
    "image_size",
    "source_resolution",
    "resolution",
    "weights",
    "weights_sha256",
    "extract_precision",
    "pooling",
    "fusion",
    "slices",
    "store",
)
#: Fields never shown in a label: the pooling (and its fusion) has its own column, the head its name.
UNLABELLED = frozenset({"pooling", "fusion", "head", "weights_sha256"})  # hash: the store label tells apart
NO_SETUP = "(no setup)"  # label of rows written before rows carried a setup (results schema 1)


def setup_key(setup: Mapping[str, Any] | None) -> str:
    """A short stable key of a setup ("" for a row without one)."""
    if not setup:
        return ""
    text = json.dumps(dict(setup), sort_keys=True, default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def _format(name: str, value: Any) -> str:
    if name == "image_size":
        return f"@{value}px"
    if name == "source_resolution":
        return f"from {value}px"
    if name == "weights":
        return f"[{value}]"
    if name == "store":
        return f"store {str(value)[:8]}"
    if name in ("resolution", "extract_precision"):
        return str(value)
    return f"{name}={value}"


def _labels(setups: Mapping[str, Mapping[str, Any]], names: tuple[str, ...] | None) -> dict[str, str]:
    """key → label made of the fields (of ``names``, or every non-store field) whose values differ."""
    keys = list(setups)
    if len(keys) < 2:
        return dict.fromkeys(keys, "")
    every = names or tuple(
        sorted({f for s in setups.values() for f in s if f not in STORE_FIELDS and f not in UNLABELLED})
    )
    shown = [f for f in every if f not in UNLABELLED and f != "store"]
    present = [s for s in setups.values() if s]  # schema-1 rows (no setup) are labelled apart, not compared
    differ = [f for f in shown if len({json.dumps(s.get(f), default=str) for s in present}) > 1]
    out: dict[str, str] = {}
    for key, setup in setups.items():
        parts = [_format(f, setup[f]) for f in differ if setup.get(f) not in (None, "")]
        out[key] = " ".join(parts) if setup else NO_SETUP
    labels = list(out.values())
    for key, setup in setups.items():  # same visible fields, different stores: the store tells them apart
        if setup and labels.count(out[key]) > 1 and "store" in setup:
            out[key] = f"{out[key]} {_format('store', setup['store'])}".strip()
    return out


def label_setups(frame: pd.DataFrame) -> pd.DataFrame:
    """Display columns that keep every setup apart: ``backbone`` and ``head_name`` get the differing fields.

    Per dataset and backbone the store fields that differ between setups are appended to the backbone
    (``efficientnet_lite0 @128px from 28px``); per (dataset, backbone, pooling, head) the differing head
    settings are appended to the head (``prototype method=cosine``). Nothing is appended when a name
    holds one setup, so single-setup tables read as before. ``backbone_name`` and ``head_base`` keep the
    rows' own names and ``setup_id`` the key of each setup.

    Args:
        frame: result rows (a ``setup`` column of dicts; missing or empty for schema-1 rows).

    Returns:
        A copy with the columns above.
    """
    out = frame.copy()
    setups = [s if isinstance(s, Mapping) else {} for s in out.get("setup", [{}] * len(out))]
    out["setup"] = setups
    out["setup_id"] = [setup_key(s) for s in setups]
    out["backbone_name"] = out["backbone"].astype(str)
    out["head_base"] = out["head_name"].astype(str)
    store_part = [{k: v for k, v in s.items() if k in STORE_FIELDS} for s in setups]
    store_ids = [setup_key(s) for s in store_part]
    backbone = out["backbone_name"].tolist()
    for _, idx in out.groupby(["dataset", "backbone_name"], sort=False).groups.items():
        pos = [out.index.get_loc(i) for i in idx]
        labels = _labels({store_ids[p]: store_part[p] for p in pos}, STORE_FIELDS)
        for p in pos:
            backbone[p] = _join(backbone[p], labels[store_ids[p]])
    out["backbone"] = backbone
    head = out["head_base"].tolist()
    keys = [out["dataset"], out["backbone"], out["pooling"], out["head_base"]]
    for _, idx in out.groupby(keys, sort=False).groups.items():
        pos = [out.index.get_loc(i) for i in idx]
        labels = _labels({out["setup_id"].iloc[p]: setups[p] for p in pos}, None)
        for p in pos:
            head[p] = _join(head[p], labels[out["setup_id"].iloc[p]])
    out["head_name"] = head
    return out


def _join(name: str, label: str) -> str:
    return f"{name} {label}" if label else name


def describe_store_setup(backbone: str, setup: Mapping[str, Any]) -> str:
    """Every named store field of a setup, e.g. ``efficientnet_lite0 @128px from 28px resize [weights] fp32``."""
    if not setup:
        return f"{backbone} {NO_SETUP}"
    names = [f for f in STORE_FIELDS if f not in UNLABELLED and f != "store" and setup.get(f) not in (None, "")]
    return " ".join([backbone, *(_format(f, setup[f]) for f in names)])
