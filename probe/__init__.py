"""probe: extract frozen-backbone embeddings once, probe them many times.

The public Python API, for notebooks and scripts (``docs/architecture.md`` maps the packages)::

    import probe

    result = probe.extract(probe.SourceRequest("medmnist:breastmnist"), backbone="efficientnet_lite0")
    store = probe.open_store(result.store)                    # numpy arrays, no torch needed
    run = probe.run_curve("medmnist:breastmnist", backbones=["efficientnet_lite0"], plan=probe.PlanConfig())
    probe.write_report(probe.load_results("results"), "report")

Public names load lazily, so reading a store (``probe.open_store``) never imports torch.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # the names as mypy and IDEs see them; at run time they load on first use
    from probe.backbones import Backbone, BackboneRequest, load_backbone, registered_backbones
    from probe.errors import ProbeError
    from probe.evaluate import (
        KNNConfig,
        LabelSpreadConfig,
        LinearConfig,
        PlanConfig,
        PrototypeConfig,
        StoreChoice,
        ViewConfig,
        load_eval_data,
        run_curve,
        run_plan,
        run_probes,
    )
    from probe.extraction import ExtractConfig, ExtractResult, extract, extract_embeddings
    from probe.finetune import FinetuneConfig, FinetunePlan, run_finetune
    from probe.heads import KNNProbe, LabelSpreadingProbe, LinearProbe, MultiLabelLinearProbe, PrototypeProbe
    from probe.report import write_report
    from probe.results import ResultRow, load_results
    from probe.sources import Source, SourceRequest, canonical_spec, open_source
    from probe.store import EmbeddingStore, list_stores, open_store

__all__ = [
    "Backbone",
    "BackboneRequest",
    "EmbeddingStore",
    "ExtractConfig",
    "ExtractResult",
    "FinetuneConfig",
    "FinetunePlan",
    "KNNConfig",
    "KNNProbe",
    "LabelSpreadConfig",
    "LabelSpreadingProbe",
    "LinearConfig",
    "LinearProbe",
    "MultiLabelLinearProbe",
    "PlanConfig",
    "ProbeError",
    "PrototypeConfig",
    "PrototypeProbe",
    "ResultRow",
    "Source",
    "SourceRequest",
    "StoreChoice",
    "ViewConfig",
    "canonical_spec",
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
    "run_finetune",
    "run_plan",
    "run_probes",
    "write_report",
]

_HOME = {
    "Backbone": "probe.backbones",
    "BackboneRequest": "probe.backbones",
    "EmbeddingStore": "probe.store",
    "ExtractConfig": "probe.extraction",
    "ExtractResult": "probe.extraction",
    "FinetuneConfig": "probe.finetune",
    "FinetunePlan": "probe.finetune",
    "KNNConfig": "probe.evaluate",
    "KNNProbe": "probe.heads",
    "LabelSpreadConfig": "probe.evaluate",
    "LabelSpreadingProbe": "probe.heads",
    "LinearConfig": "probe.evaluate",
    "LinearProbe": "probe.heads",
    "MultiLabelLinearProbe": "probe.heads",
    "PlanConfig": "probe.evaluate",
    "ProbeError": "probe.errors",
    "PrototypeConfig": "probe.evaluate",
    "PrototypeProbe": "probe.heads",
    "ResultRow": "probe.results",
    "Source": "probe.sources",
    "SourceRequest": "probe.sources",
    "StoreChoice": "probe.evaluate",
    "ViewConfig": "probe.evaluate",
    "canonical_spec": "probe.sources",
    "extract": "probe.extraction",
    "extract_embeddings": "probe.extraction",
    "list_stores": "probe.store",
    "load_backbone": "probe.backbones",
    "load_eval_data": "probe.evaluate",
    "load_results": "probe.results",
    "open_source": "probe.sources",
    "open_store": "probe.store",
    "registered_backbones": "probe.backbones",
    "run_curve": "probe.evaluate",
    "run_finetune": "probe.finetune",
    "run_plan": "probe.evaluate",
    "run_probes": "probe.evaluate",
    "write_report": "probe.report",
}


def __getattr__(name: str) -> Any:
    if name in _HOME:
        return getattr(importlib.import_module(_HOME[name]), name)
    raise AttributeError(f"module 'probe' has no attribute {name!r}")
