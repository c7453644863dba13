"""Pooled features from one forward pass: ``cls``, ``mean``, ``cls+mean``, ``last4`` and ``gap``.

* ``cls``: the class token after the final norm.
* ``mean``: mean of the patch tokens after the final norm (register / prefix tokens excluded).
* ``cls+mean``: the two concatenated.
* ``last4``: the class tokens of the last four blocks, each after the final norm, concatenated.
* ``gap``: global average pooling of a CNN's last feature map (the model's own pre-logits pooling).
* ``gap_trunk``: MambaOut only: the normalised global average of the last stage, before the
  classifier head's hidden MLP (``gap`` is that MLP's output, timm's pre-logits).

Dense poolings (segmentation) keep the spatial grid, (B, h, w, D):

* ``patch``: ViTs: the final-norm patch tokens (class and register tokens dropped) on their grid;
  CNNs: the last feature map (timm's ``forward_features``).
* ``patch-last4``: ViTs: the patch tokens of the last four blocks, each after the final norm,
  concatenated (DINOv2's multi-scale linear evaluation).
* ``patch-s<k>``: CNNs: the feature map of stage ``k`` (1-based, timm's ``feature_info`` order; e.g.
  ``patch-s4`` of EfficientNet-Lite0 is 112 channels at 1/16 of the input side).

open_clip towers add ``proj`` (the projected image embedding) and, for CoCa, ``attn`` (the
attentional pooler's contrastive token before the projection); see ``_open_clip.py``.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable
from typing import cast

import torch
from torch import nn

VIT_POOLINGS: tuple[str, ...] = ("cls", "mean", "cls+mean", "last4")


def vit_pooling_dims(dim: int, *, has_cls: bool) -> dict[str, int]:
    """Output width of each ViT pooling for token width ``dim``."""
    if not has_cls:
        return {"mean": dim}
    return {"cls": dim, "mean": dim, "cls+mean": 2 * dim, "last4": 4 * dim}


def vit_dense_dims(dim: int) -> dict[str, int]:
    """Channel width of each dense ViT pooling for token width ``dim``."""
    return {"patch": dim, "patch-last4": 4 * dim}


def _grid(patch: torch.Tensor) -> torch.Tensor:
    """(B, N, D) patch tokens of a square input as (B, h, w, D)."""
    b, n, d = patch.shape
    side = round(n**0.5)
    assert side * side == n, f"{n} patch tokens do not form a square grid"
    return patch.reshape(b, side, side, d)


def _token_poolings(
    tokens: torch.Tensor,
    block_tokens: list[torch.Tensor],
    norm: Callable[[torch.Tensor], torch.Tensor],
    n_prefix: int,
    has_cls: bool,
    post: Callable[[torch.Tensor], torch.Tensor] | None = None,
) -> dict[str, torch.Tensor]:
    """Poolings of (B, N, D) final tokens; ``post`` normalises pooled vectors (timm's ``fc_norm``)."""
    post = post or (lambda v: v)
    mean = post(tokens[:, n_prefix:].mean(dim=1))
    dense = {"patch": _grid(tokens[:, n_prefix:])}
    if len(block_tokens) >= 4:
        dense["patch-last4"] = torch.cat([_grid(norm(t)[:, n_prefix:]) for t in block_tokens[-4:]], dim=-1)
    if not has_cls:
        return {"mean": mean, **dense}
    cls = post(tokens[:, 0])
    out = {"cls": cls, "mean": mean, "cls+mean": torch.cat([cls, mean], dim=1), **dense}
    if len(block_tokens) >= 4:
        out["last4"] = torch.cat([post(norm(t[:, :1])[:, 0]) for t in block_tokens[-4:]], dim=1)
    return out


class TimmViTPooler(nn.Module):
    """Token poolings for timm ViT-style models (``VisionTransformer``, ``Eva``): hooks on the last 4 blocks."""

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.model = model
        self.n_prefix = int(getattr(model, "num_prefix_tokens", 1))
        self.has_cls = getattr(model, "cls_token", None) is not None
        # Models pooled with "avg" keep norm = Identity and normalise the pooled vector with fc_norm
        # (EVA-02 MIM, AIMv2); apply it to every pooled vector so all poolings are normalised.
        fc_norm = getattr(model, "fc_norm", None)
        self.norm = cast(nn.Module, model.norm)
        self.post = fc_norm if isinstance(self.norm, nn.Identity) and isinstance(fc_norm, nn.Module) else None
        self._captured: list[torch.Tensor] = []
        blocks = list(model.blocks)  # type: ignore[arg-type]
        for block in blocks[-4:]:
            block.register_forward_hook(self._capture)

    def _capture(self, module: nn.Module, inputs: object, output: torch.Tensor) -> None:
        self._captured.append(output)

    def pool(self, x: torch.Tensor) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        """The final (B, N, D) tokens and their poolings (open_clip's timm towers add a projection)."""
        self._captured = []
        tokens = self.model.forward_features(x)  # type: ignore[operator]
        captured, self._captured = self._captured, []
        return tokens, _token_poolings(tokens, captured, self.norm, self.n_prefix, self.has_cls, self.post)

    def forward(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        return self.pool(x)[1]


def cnn_stages(model: nn.Module) -> list[tuple[str, int]]:
    """(module name, channels) of a timm CNN's feature stages (``feature_info``), shallow to deep."""
    info = getattr(model, "feature_info", None) or []
    return [(str(f["module"]), int(f["num_chs"])) for f in info if isinstance(f, dict) and "module" in f]


class GlobalPooler(nn.Module):
    """``gap``: a model's own global pooling of its final feature map (CNNs, SAM's encoder); ``patch``
    and ``patch-s<k>``: that map and the stage maps as (B, h, w, C) grids."""

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.model = model
        self._stages: dict[str, torch.Tensor] = {}
        self.widths: dict[str, int] = {}  # dense pooling -> channels, to tell NCHW maps from NHWC ones
        modules = dict(model.named_modules())
        for k, (name, channels) in enumerate(cnn_stages(model), start=1):
            if name in modules:
                modules[name].register_forward_hook(self._hook(f"patch-s{k}"))
                self.widths[f"patch-s{k}"] = channels

    def _hook(self, key: str) -> Callable[[nn.Module, object, torch.Tensor], None]:
        def capture(module: nn.Module, inputs: object, output: torch.Tensor) -> None:
            self._stages[key] = output

        return capture

    def forward(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        self._stages = {}
        feats = self.model.forward_features(x)  # type: ignore[operator]
        pooled = self.model.forward_head(feats, pre_logits=True)  # type: ignore[operator]
        stages, self._stages = self._stages, {}
        out = {"gap": pooled.flatten(1)}
        if feats.ndim == 4:  # the grids are views, free unless a store asks for them
            out["patch"] = _channels_last(feats, int(getattr(self.model, "num_features", feats.shape[1])))
            out |= {k: _channels_last(v, self.widths[k]) for k, v in stages.items() if v.ndim == 4}
        return out


def _channels_last(x: torch.Tensor, channels: int) -> torch.Tensor:
    """A (B, C, h, w) map as (B, h, w, C); maps already channels-last (SAM's, Swin's stages) pass as they are."""
    return x if x.shape[-1] == channels and x.shape[1] != channels else x.permute(0, 2, 3, 1)


class MambaOutPooler(nn.Module):
    """MambaOut (timm): ``gap`` = timm's pre-logits (the head's hidden MLP), ``gap_trunk`` = before that MLP."""

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.model = model

    def forward(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        feats = self.model.forward_features(x)  # type: ignore[operator]  # (B, H, W, C), channels last
        head = cast(nn.Module, self.model.head)
        trunk = head.norm(feats.mean(dim=(1, 2)))  # type: ignore[operator]
        return {"gap": head.pre_logits(trunk), "gap_trunk": trunk}  # type: ignore[operator]


class HFTokenPooler(nn.Module):
    """Token poolings for plain transformers ViTs (DINOv2, ViT, CLIP and SigLIP vision towers, ...).

    Args:
        model: the vision tower.
        n_prefix: leading non-patch tokens (CLS + registers), excluded from ``mean``.
        has_cls: whether token 0 is a class token (SigLIP has none: ``mean`` only).
        final_norm: a norm that ``last_hidden_state`` still lacks (CLIP's ``post_layernorm``).
    """

    def __init__(self, model: nn.Module, *, n_prefix: int, has_cls: bool, final_norm: nn.Module | None) -> None:
        super().__init__()
        self.model = model
        self.n_prefix = n_prefix
        self.has_cls = has_cls
        self.final_norm = final_norm
        self.last_norm = final_norm or getattr(model, "layernorm", None) or nn.Identity()
        params = inspect.signature(model.forward).parameters
        # lets ViTs run at an --image-size other than their native one
        self.kwargs = {"interpolate_pos_encoding": True} if "interpolate_pos_encoding" in params else {}

    def forward(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        out = self.model(pixel_values=x, output_hidden_states=self.has_cls, **self.kwargs)
        tokens = out.last_hidden_state
        if self.final_norm is not None:
            tokens = self.final_norm(tokens)
        hidden = list(out.hidden_states[1:]) if out.hidden_states is not None else []
        return _token_poolings(tokens, hidden, self.last_norm, self.n_prefix, self.has_cls)


class HFPooledOutput(nn.Module):
    """``gap``: the pooled output of a transformers CNN (ResNet, ConvNeXt, ...)."""

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.model = model

    def forward(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        return {"gap": self.model(pixel_values=x).pooler_output.flatten(1)}
