"""Frozen backbones: a registry of names -> model + exact preprocessing + pooling widths.

Names load lazily, so that reading a request or a name list never imports torch, timm or transformers.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # the names as mypy and IDEs see them; at run time they load on first use
    from probe.backbones._base import Backbone, read_state_dict, state_dict_sha256
    from probe.backbones._hf import backbone_from_hf_model
    from probe.backbones._lite0 import rename_lite0_keys
    from probe.backbones._open_clip import build_open_clip
    from probe.backbones._pooling import VIT_POOLINGS, vit_pooling_dims
    from probe.backbones._preprocess import RESOLUTION_POLICIES, PreprocessConfig, Preprocessor
    from probe.backbones._registry import (
        BackboneSpec,
        check_backbone_name,
        load_backbone,
        register_backbone,
        registered_backbones,
    )
    from probe.backbones._table import models_markdown
    from probe.backbones._timm import backbone_from_timm_model
    from probe.backbones.request import BackboneRequest

__all__ = [
    "RESOLUTION_POLICIES",
    "VIT_POOLINGS",
    "Backbone",
    "BackboneRequest",
    "BackboneSpec",
    "PreprocessConfig",
    "Preprocessor",
    "backbone_from_hf_model",
    "backbone_from_timm_model",
    "build_open_clip",
    "check_backbone_name",
    "load_backbone",
    "models_markdown",
    "read_state_dict",
    "register_backbone",
    "registered_backbones",
    "rename_lite0_keys",
    "state_dict_sha256",
    "vit_pooling_dims",
]

_HOME = {
    "Backbone": "probe.backbones._base",
    "BackboneRequest": "probe.backbones.request",
    "BackboneSpec": "probe.backbones._registry",
    "PreprocessConfig": "probe.backbones._preprocess",
    "Preprocessor": "probe.backbones._preprocess",
    "RESOLUTION_POLICIES": "probe.backbones._preprocess",
    "VIT_POOLINGS": "probe.backbones._pooling",
    "backbone_from_hf_model": "probe.backbones._hf",
    "backbone_from_timm_model": "probe.backbones._timm",
    "build_open_clip": "probe.backbones._open_clip",
    "check_backbone_name": "probe.backbones._registry",
    "load_backbone": "probe.backbones._registry",
    "models_markdown": "probe.backbones._table",
    "read_state_dict": "probe.backbones._base",
    "register_backbone": "probe.backbones._registry",
    "registered_backbones": "probe.backbones._registry",
    "rename_lite0_keys": "probe.backbones._lite0",
    "state_dict_sha256": "probe.backbones._base",
    "vit_pooling_dims": "probe.backbones._pooling",
}


def __getattr__(name: str) -> Any:
    if name in _HOME:
        return getattr(importlib.import_module(_HOME[name]), name)
    raise AttributeError(f"module 'probe.backbones' has no attribute {name!r}")
