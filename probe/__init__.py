"""probe: extract frozen-backbone embeddings once, probe them many times.

Public names load lazily, so reading a store (``probe.open_store``) never imports torch.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # the names as mypy and IDEs see them; at run time they load on first use
    from probe.backbones import Backbone, load_backbone, registered_backbones
    from probe.errors import ProbeError
    from probe.evaluate import run_curve, run_probes
    from probe.evaluate.data import load_eval_data
    from probe.extract import ExtractConfig, ExtractResult, extract, extract_embeddings
    from probe.heads.knn import KNNProbe
    from probe.heads.linear import LinearProbe
    from probe.heads.prototype import PrototypeProbe
    from probe.protocols import PlanConfig, run_plan
    from probe.report import write_report
    from probe.results import load_results
    from probe.sources import Source, open_source
    from probe.store import EmbeddingStore, list_stores, open_store

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
    "StoreChoice",
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
    "load_eval_data": "probe.evaluate.data",
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
