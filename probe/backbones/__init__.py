"""Frozen backbones: a registry of names -> model + exact preprocessing + pooling widths."""

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

__all__ = [
    "RESOLUTION_POLICIES",
    "VIT_POOLINGS",
    "Backbone",
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
