"""transformers adapter: ``hf:<repo>`` (AutoModel, or the vision tower of CLIP-like models)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import torch
from torch import nn

from probe.backbones._base import Backbone, freeze, load_weights, read_state_dict, state_dict_sha256
from probe.backbones._pooling import HFPooledOutput, HFTokenPooler, vit_dense_dims, vit_pooling_dims
from probe.backbones._preprocess import PreprocessConfig
from probe.backbones._timm import RANDOM_INIT_SEED
from probe.errors import WeightsError

_PIL_RESAMPLE = {0: "nearest", 2: "bilinear", 3: "bicubic"}
RAD_DINO_REPO = "microsoft/rad-dino"
#: RAD-DINO as published: a DINOv2 ViT-B/14 (``Dinov2Model``, no registers) at 518 px.
RAD_DINO_CONFIG: dict[str, Any] = {
    "model_type": "dinov2",
    "hidden_size": 768,
    "num_hidden_layers": 12,
    "num_attention_heads": 12,
    "mlp_ratio": 4,
    "patch_size": 14,
    "image_size": 518,
}
#: Its image processor (BitImageProcessor): 518 px, bicubic, chest X-ray mean/std (grey, so equal per channel).
RAD_DINO_PREPROCESS = PreprocessConfig(image_size=518, mean=(0.5307,) * 3, std=(0.2583,) * 3, interpolation="bicubic")


def float32_kwargs() -> dict[str, Any]:
    """``dtype=torch.float32`` in this transformers' spelling (``dtype`` from 4.56, ``torch_dtype`` before).

    transformers 5 builds and loads a model in the dtype its config declares, so a repository saved
    in bf16 would otherwise be extracted in bf16 while the store says fp32; probe loads every hub
    model in float32 and leaves reduced precision to autocast (``ExtractConfig(precision=...)``).
    """
    import transformers

    major, minor = (
        int("".join(c for c in part if c.isdigit()) or 0) for part in transformers.__version__.split(".")[:2]
    )
    return {"dtype": torch.float32} if (major, minor) >= (4, 56) else {"torch_dtype": torch.float32}


def vision_tower(model: nn.Module) -> nn.Module:
    """The image encoder of a model: itself, or ``vision_model`` of CLIP/SigLIP-style models."""
    return getattr(model, "vision_model", None) or model


def backbone_from_hf_model(
    model: nn.Module,
    *,
    name: str,
    preprocess: PreprocessConfig,
    weights_fingerprint: str | None = None,
    meta: Mapping[str, Any] | None = None,
) -> Backbone:
    """Wrap a transformers vision model (pretrained or built from a config) as a frozen backbone."""
    import transformers

    tower = freeze(vision_tower(model))
    config = getattr(tower, "config", None)
    hidden = getattr(config, "hidden_size", None)
    embeddings = getattr(tower, "embeddings", None)
    hierarchical = bool(getattr(config, "hidden_sizes", None)) or len(getattr(config, "depths", None) or []) > 1
    pooler: nn.Module
    if hidden is not None and embeddings is not None and not hierarchical:
        clip_like = hasattr(embeddings, "class_embedding")  # CLIP: CLS, last_hidden_state before post-norm
        has_cls = clip_like or getattr(embeddings, "cls_token", None) is not None
        n_prefix = int(has_cls) + int(getattr(config, "num_register_tokens", 0) or 0)
        n_prefix += int(hasattr(embeddings, "distillation_token"))  # DeiT
        final_norm = getattr(tower, "post_layernorm", None) if clip_like else None
        pooler = HFTokenPooler(tower, n_prefix=n_prefix, has_cls=has_cls, final_norm=final_norm)
        poolings = vit_pooling_dims(int(hidden), has_cls=has_cls)
        dense = vit_dense_dims(int(hidden)) if has_cls else {"patch": int(hidden)}
        defaults: tuple[str, ...] = ("cls", "mean") if has_cls else ("mean",)
    else:  # CNNs and hierarchical transformers (Swin, ...): the model's own pooled output
        sizes = getattr(config, "hidden_sizes", None)
        width = int(sizes[-1]) if sizes else hidden
        if width is None:
            raise WeightsError(
                f"{name}: cannot tell the feature width of {type(tower).__name__}; use a timm: name instead"
            )
        pooler = HFPooledOutput(tower)
        poolings, defaults, dense = {"gap": int(width)}, ("gap",), {}
    info = {"library": f"transformers {transformers.__version__}"}
    info.update(meta or {})
    return Backbone(
        name=name,
        pooler=pooler.eval(),
        preprocess=preprocess,
        poolings=poolings,
        default_poolings=defaults,
        dense_poolings=dense,
        weights_fingerprint=weights_fingerprint or state_dict_sha256(tower),
        meta=info,
    )


def _preprocess_from_processor(processor: Any, *, image_size: int | None, resolution: str) -> PreprocessConfig:
    size: Any = getattr(processor, "crop_size", None) or getattr(processor, "size", None) or {}
    # a dict (slow processors) or transformers 5's SizeDict (fast ones; it has .get but is no dict)
    side = (size.get("height") or size.get("shortest_edge") or 224) if hasattr(size, "get") else int(size)
    try:
        resample = int(getattr(processor, "resample", 3))
    except (TypeError, ValueError):  # a torchvision InterpolationMode in some fast processors
        resample = 3
    return PreprocessConfig(
        image_size=int(image_size or side),
        mean=tuple(processor.image_mean),
        std=tuple(processor.image_std),
        interpolation=_PIL_RESAMPLE.get(resample, "bicubic"),
        resolution=resolution,
    )


def build_hf_written(
    repo: str,
    *,
    config: Mapping[str, Any],
    preprocess: PreprocessConfig,
    name: str,
    pretrained: bool = True,
    weights: str | None = None,
    image_size: int | None = None,
    resolution: str = "resize",
    model_args: Mapping[str, Any] | None = None,
    meta: Mapping[str, Any] | None = None,
) -> Backbone:
    """A hub model whose config and preprocessing are written in probe (so it also builds offline).

    Downloaded weights read the repository itself (its config and image processor, as the authors
    published them); a ``weights`` file or random init uses the written ``config`` (with
    ``model_args`` overrides, e.g. a tiny test config) and ``preprocess``.
    """
    if weights is None and pretrained:
        return build_hf(repo, name=name, pretrained=True, image_size=image_size, resolution=resolution, meta=meta)
    from transformers import AutoConfig, AutoModel

    args = {**config, **dict(model_args or {})}
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(RANDOM_INIT_SEED)
        model = AutoModel.from_config(AutoConfig.for_model(**args), **float32_kwargs())
    if weights is not None:
        load_weights(vision_tower(model), read_state_dict(weights), origin=f"BackboneRequest(weights={weights})")
    pp = preprocess.replace(resolution=resolution, image_size=int(image_size or preprocess.image_size))
    info = {"source": f"hf:{repo}", "weights": weights or "random"}
    info.update(meta or {})
    return backbone_from_hf_model(model, name=name, preprocess=pp, meta=info)


def build_hf(
    repo: str,
    *,
    name: str | None = None,
    pretrained: bool = True,
    weights: str | None = None,
    image_size: int | None = None,
    resolution: str = "resize",
    meta: Mapping[str, Any] | None = None,
) -> Backbone:
    """Download (or read from the local HF cache) ``repo`` and its image processor.

    Raises:
        WeightsError: the repository cannot be reached or loaded.
    """
    from transformers import AutoConfig, AutoImageProcessor, AutoModel

    try:
        processor = AutoImageProcessor.from_pretrained(repo)
        if weights is None and pretrained:
            model = AutoModel.from_pretrained(repo, **float32_kwargs())
        else:  # architecture from the repository's config; weights from a file, or seeded random init
            with torch.random.fork_rng(devices=[]):
                torch.manual_seed(RANDOM_INIT_SEED)
                model = AutoModel.from_config(AutoConfig.from_pretrained(repo), **float32_kwargs())
            if weights is not None:
                load_weights(
                    vision_tower(model), read_state_dict(weights), origin=f"BackboneRequest(weights={weights})"
                )
    except (OSError, ValueError, ImportError) as exc:
        raise WeightsError(
            f"could not load hf:{repo} ({str(exc).splitlines()[0]}); check the repository id, or on a "
            "machine without network copy the repository into the HF cache (HF_HOME) first"
        ) from None
    preprocess = _preprocess_from_processor(processor, image_size=image_size, resolution=resolution)
    info = {"source": f"hf:{repo}", "weights": weights or ("pretrained" if pretrained else "random")}
    info.update(meta or {})
    return backbone_from_hf_model(model, name=name or f"hf:{repo}", preprocess=preprocess, meta=info)
