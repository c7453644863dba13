"""timm adapter: any ``timm.create_model`` name becomes a frozen :class:`Backbone`."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import timm
import torch
from torch import nn

from probe.backbones._base import Backbone, freeze, read_state_dict, state_dict_sha256
from probe.backbones._pooling import (
    GlobalPooler,
    MambaOutPooler,
    TimmViTPooler,
    cnn_stages,
    vit_dense_dims,
    vit_pooling_dims,
)
from probe.backbones._preprocess import PreprocessConfig
from probe.errors import WeightsError

RANDOM_INIT_SEED = 0


def _is_token_model(model: nn.Module) -> bool:
    from timm.models.eva import Eva
    from timm.models.vision_transformer import VisionTransformer

    return isinstance(model, (VisionTransformer, Eva))


def timm_pooler(model: nn.Module) -> tuple[nn.Module, dict[str, int], tuple[str, ...], bool]:
    """How a timm model is pooled: (pooler module, pooling widths, default poolings, channels_last).

    Builds nothing heavy and runs no forward pass, so it also works on a ``meta``-device model (the
    registry tests check the documented full-size widths that way).
    """
    from timm.models.mambaout import MambaOut

    if _is_token_model(model):
        vit = TimmViTPooler(model)
        poolings = vit_pooling_dims(int(getattr(model, "embed_dim")), has_cls=vit.has_cls)  # noqa: B009
        return vit, poolings, ("cls", "mean") if vit.has_cls else ("mean",), False
    if isinstance(model, MambaOut):
        head = model.head
        widths = {"gap": int(head.num_features), "gap_trunk": int(head.in_features)}
        return MambaOutPooler(model), widths, ("gap",), True  # as GlobalPooler ran it before: same numbers
    width = getattr(model, "head_hidden_size", None) or getattr(model, "num_features")  # noqa: B009
    return GlobalPooler(model), {"gap": int(width)}, ("gap",), True


def timm_dense_poolings(model: nn.Module) -> dict[str, int]:
    """Dense poolings (patch grids) a timm model offers and their channel widths (none for MambaOut)."""
    from timm.models.mambaout import MambaOut

    if _is_token_model(model):
        return vit_dense_dims(int(getattr(model, "embed_dim")))  # noqa: B009
    if isinstance(model, MambaOut):
        return {}
    stages = {f"patch-s{k}": ch for k, (_, ch) in enumerate(cnn_stages(model), start=1)}
    return {"patch": int(getattr(model, "num_features")), **stages}  # noqa: B009


def create_timm_model(
    model_name: str,
    *,
    pretrained: bool,
    weights_file: str | None = None,
    image_size: int | None = None,
    model_args: Mapping[str, Any] | None = None,
) -> nn.Module:
    """``timm.create_model`` with clear errors for unknown names, failed downloads and bad files.

    ``image_size`` is passed as ``img_size`` to models that take it (ViTs resample their position
    embeddings, also those of a ``weights_file``); CNNs accept any input size and ignore it.
    ``weights_file`` is loaded through timm's own checkpoint filter, as a download would be.

    Raises:
        UnknownBackboneError: timm does not know ``model_name`` (close names suggested).
        WeightsError: pretrained weights could not be downloaded, or the file does not fit.
    """
    from probe.backbones._registry import check_backbone_name

    check_backbone_name(f"timm:{model_name}")
    kwargs = dict(model_args or {})
    if weights_file is not None:
        read_state_dict(weights_file)  # a clear error for a missing or unreadable file
        kwargs["pretrained_cfg_overlay"] = {"file": str(weights_file)}
    try:
        # Random init is seeded (RANDOM_INIT_SEED) so random-weight stores are reproducible.
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(RANDOM_INIT_SEED)
            load = pretrained or weights_file is not None
            try:
                if image_size is not None:
                    return timm.create_model(model_name, pretrained=load, img_size=image_size, **kwargs)
            except TypeError:
                pass  # this architecture has no img_size argument (CNNs); any input size works
            return timm.create_model(model_name, pretrained=load, **kwargs)
    except (RuntimeError, OSError, ValueError, ConnectionError) as exc:
        first = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        if weights_file is not None:
            raise WeightsError(
                f"BackboneRequest(weights={weights_file}): weights do not fit timm:{model_name} ({first[:300]}); "
                "check that the architecture name matches the weights file"
            ) from None
        if not pretrained:
            raise
        raise WeightsError(
            f"could not load pretrained weights for timm:{model_name} ({type(exc).__name__}: {first[:200]}); "
            "without network access download them elsewhere and pass BackboneRequest(weights=FILE) "
            "(.safetensors or .pth)"
        ) from None


def backbone_from_timm_model(
    model: nn.Module,
    *,
    name: str,
    image_size: int | None = None,
    resolution: str = "resize",
    mean: tuple[float, float, float] | None = None,
    std: tuple[float, float, float] | None = None,
    weights_fingerprint: str | None = None,
    meta: Mapping[str, Any] | None = None,
) -> Backbone:
    """Wrap an already built timm model (pretrained or random) as a frozen backbone."""
    cfg = timm.data.resolve_model_data_config(model)
    size = int(image_size or cfg["input_size"][-1])
    preprocess = PreprocessConfig(
        image_size=size,
        mean=tuple(mean or cfg["mean"]),  # type: ignore[arg-type]
        std=tuple(std or cfg["std"]),  # type: ignore[arg-type]
        interpolation=cfg.get("interpolation", "bicubic")
        if cfg.get("interpolation") in ("bicubic", "bilinear", "nearest")
        else "bicubic",
        resolution=resolution,
    )
    freeze(model)
    pooler, poolings, defaults, channels_last = timm_pooler(model)
    dense = timm_dense_poolings(model)
    info = dict(meta or {})
    info.setdefault("library", f"timm {timm.__version__}")
    return Backbone(
        name=name,
        pooler=pooler.eval(),
        preprocess=preprocess,
        poolings=poolings,
        default_poolings=defaults,
        dense_poolings=dense,
        weights_fingerprint=weights_fingerprint or state_dict_sha256(model),
        channels_last=channels_last,
        meta=info,
    )


def build_timm(
    model_name: str,
    *,
    name: str | None = None,
    pretrained: bool = True,
    weights: str | None = None,
    image_size: int | None = None,
    resolution: str = "resize",
    model_args: Mapping[str, Any] | None = None,
    meta: Mapping[str, Any] | None = None,
) -> Backbone:
    """Build ``timm:<model_name>``: downloaded weights, a local ``weights`` file, or random init."""
    model = create_timm_model(
        model_name, pretrained=pretrained, weights_file=weights, image_size=image_size, model_args=model_args
    )
    info = {"source": f"timm:{model_name}", "weights": weights or ("pretrained" if pretrained else "random")}
    info.update(meta or {})
    return backbone_from_timm_model(
        model, name=name or f"timm:{model_name}", image_size=image_size, resolution=resolution, meta=info
    )
