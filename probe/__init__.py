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
    "KNNProbe",
    "LinearProbe",
    "PlanConfig",
    "ProbeError",
    "PrototypeProbe",
    "Source",
    "extract",
    "extract_embeddings",
    "list_stores",
    "load_backbone",
    "load_eval_data",
    "load_results",
    "open_source",
    "open_store",
    "registered_backbones",
    "run_curve",
    "run_plan",
    "run_probes",
    "write_report",
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
    "KNNProbe": "probe.heads.knn",
    "LinearProbe": "probe.heads.linear",
    "PrototypeProbe": "probe.heads.prototype",
    "PlanConfig": "probe.protocols",
    "run_plan": "probe.protocols",
    "load_eval_data": "probe.evaldata",
    "load_results": "probe.results",
    "run_curve": "probe.evaluate",
    "run_probes": "probe.evaluate",
    "write_report": "probe.report",
    "Source": "probe.sources",
    "open_source": "probe.sources",
}


def __getattr__(name: str) -> Any:
    if name in _HOME:
        return getattr(importlib.import_module(_HOME[name]), name)
    raise AttributeError(f"module 'probe' has no attribute {name!r}")
