"""probe: extract frozen-backbone embeddings once, probe them many times.

Public names load lazily, so reading a store (``probe.open_store``) never imports torch.
"""

from __future__ import annotations

import importlib
from typing import Any

__all__ = [
    "Backbone",
    "EmbeddingStore",
    "ExtractConfig",
    "ExtractResult",
    "ProbeError",
    "Source",
    "extract",
    "extract_embeddings",
    "list_stores",
    "load_backbone",
    "open_source",
    "open_store",
    "registered_backbones",
]

_HOME = {
    "Backbone": "probe.backbones",
    "load_backbone": "probe.backbones",
    "registered_backbones": "probe.backbones",
    "EmbeddingStore": "probe.store",
    "open_store": "probe.store",
    "list_stores": "probe.store",
    "ExtractConfig": "probe.extract",
    "ExtractResult": "probe.extract",
    "extract": "probe.extract",
    "extract_embeddings": "probe.extract",
    "ProbeError": "probe.errors",
    "Source": "probe.sources",
    "open_source": "probe.sources",
}


def __getattr__(name: str) -> Any:
    if name in _HOME:
        return getattr(importlib.import_module(_HOME[name]), name)
    raise AttributeError(f"module 'probe' has no attribute {name!r}")
