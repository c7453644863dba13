"""Pooled features from one forward pass: ``cls``, ``mean``, ``cls+mean``, ``last4`` and ``gap``.

* ``cls``: the class token after the final norm.
* ``mean``: mean of the patch tokens after the final norm (register / prefix tokens excluded).
* ``cls+mean``: the two concatenated.
* ``last4``: the class tokens of the last four blocks, each after the final norm, concatenated.
* ``gap``: global average pooling of a CNN's last feature map (the model's own pre-logits pooling).
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import nn

VIT_POOLINGS: tuple[str, ...] = ("cls", "mean", "cls+mean", "last4")


def vit_pooling_dims(dim: int, *, has_cls: bool) -> dict[str, int]:
    """Output width of each ViT pooling for token width ``dim``."""
    if not has_cls:
        return {"mean": dim}
    return {"cls": dim, "mean": dim, "cls+mean": 2 * dim, "last4": 4 * dim}


def _token_poolings(
    tokens: torch.Tensor,
    block_tokens: list[torch.Tensor],
    norm: Callable[[torch.Tensor], torch.Tensor],
    n_prefix: int,
    has_cls: bool,
) -> dict[str, torch.Tensor]:
    mean = tokens[:, n_prefix:].mean(dim=1)
    if not has_cls:
        return {"mean": mean}
    cls = tokens[:, 0]
    out = {"cls": cls, "mean": mean, "cls+mean": torch.cat([cls, mean], dim=1)}
    if len(block_tokens) >= 4:
        out["last4"] = torch.cat([norm(t[:, :1])[:, 0] for t in block_tokens[-4:]], dim=1)
    return out


class TimmViTPooler(nn.Module):
    """Token poolings for timm ViT-style models (``VisionTransformer``, ``Eva``): hooks on the last 4 blocks."""

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.model = model
        self.n_prefix = int(getattr(model, "num_prefix_tokens", 1))
        self.has_cls = getattr(model, "cls_token", None) is not None
        self._captured: list[torch.Tensor] = []
        blocks = list(model.blocks)  # type: ignore[arg-type]
        for block in blocks[-4:]:
            block.register_forward_hook(self._capture)

    def _capture(self, module: nn.Module, inputs: object, output: torch.Tensor) -> None:
        self._captured.append(output)

    def forward(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        self._captured = []
        tokens = self.model.forward_features(x)  # type: ignore[operator]
        captured, self._captured = self._captured, []
        return _token_poolings(tokens, captured, self.model.norm, self.n_prefix, self.has_cls)  # type: ignore[arg-type]


class GlobalPooler(nn.Module):
    """``gap``: a model's own global pooling of its final feature map (CNNs, SAM's encoder)."""

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.model = model

    def forward(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        feats = self.model.forward_features(x)  # type: ignore[operator]
        pooled = self.model.forward_head(feats, pre_logits=True)  # type: ignore[operator]
        return {"gap": pooled.flatten(1)}


class HFTokenPooler(nn.Module):
    """Token poolings for transformers vision models (DINOv2, ViT, CLIP vision tower, ...)."""

    def __init__(self, model: nn.Module, *, n_prefix: int, final_norm: nn.Module | None) -> None:
        super().__init__()
        self.model = model
        self.n_prefix = n_prefix
        # DINOv2 / ViT outputs are already normed; CLIP's post_layernorm is applied here.
        self.final_norm = final_norm
        self.last_norm = final_norm or getattr(model, "layernorm", None) or nn.Identity()

    def forward(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        out = self.model(pixel_values=x, output_hidden_states=True)
        tokens = out.last_hidden_state
        if self.final_norm is not None:
            tokens = self.final_norm(tokens)
        hidden = list(out.hidden_states[1:]) if out.hidden_states is not None else []
        return _token_poolings(tokens, hidden, self.last_norm, self.n_prefix, True)


class HFPooledOutput(nn.Module):
    """``gap``: the pooled output of a transformers CNN (ResNet, ConvNeXt, ...)."""

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.model = model

    def forward(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        return {"gap": self.model(pixel_values=x).pooler_output.flatten(1)}
