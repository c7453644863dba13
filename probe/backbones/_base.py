"""The backbone contract: a frozen module, its preprocessing, pooling widths and a weights fingerprint."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn

from probe.backbones._preprocess import PreprocessConfig
from probe.errors import WeightsError


@dataclass(frozen=True)
class Backbone:
    """A frozen feature extractor ready for :func:`probe.extraction.extract_embeddings`.

    ``pooler(x)`` maps a (B, 3, S, S) batch to ``{pooling: (B, dim)}`` for every pooling in
    ``poolings`` in one forward pass.
    """

    name: str  # canonical name, e.g. "efficientnet_lite0" or "timm:resnet50.a1_in1k"
    pooler: nn.Module  # frozen, eval-mode module returning a dict of pooled features
    preprocess: PreprocessConfig  # exact input preprocessing
    poolings: dict[str, int]  # pooling name -> feature width
    default_poolings: tuple[str, ...]  # stored when the user names none
    weights_fingerprint: str  # "sha256:<hex>" of the state dict, or "random:<seed>"
    channels_last: bool = False  # CNNs run faster in NHWC memory format
    # dense poolings (patch grids, (B, h, w, C) from the same forward pass) -> channel width
    dense_poolings: dict[str, int] = field(default_factory=dict)
    meta: dict[str, Any] = field(default_factory=dict)  # source, weights id, licence, library versions


def state_dict_sha256(module: nn.Module) -> str:
    """sha256 over names, dtypes, shapes and bytes of a module's state dict, in key order."""
    h = hashlib.sha256()
    for name, tensor in module.state_dict().items():
        t = tensor.detach().cpu().contiguous()
        h.update(f"{name}|{t.dtype}|{tuple(t.shape)}|".encode())
        if t.numel():
            h.update(t.reshape(-1).view(torch.uint8).numpy().tobytes())
    return "sha256:" + h.hexdigest()


def freeze(module: nn.Module) -> nn.Module:
    """Put a module in eval mode with gradients off."""
    module.eval()
    for p in module.parameters():
        p.requires_grad_(False)
    return module


def read_state_dict(path: str | Path) -> dict[str, torch.Tensor]:
    """Read a ``.safetensors`` or ``.pth``/``.pt``/``.bin`` state dict (unwrapping ``state_dict``/``model`` keys).

    Raises:
        WeightsError: missing file or unreadable contents.
    """
    p = Path(path).expanduser()
    if not p.is_file():
        raise WeightsError(f"BackboneRequest(weights={path}): file not found; pass a .safetensors or .pth state dict")
    try:
        if p.suffix == ".safetensors":
            from safetensors.torch import load_file

            sd: Any = load_file(str(p))
        else:
            sd = torch.load(p, map_location="cpu", weights_only=True)
    except Exception as exc:
        raise WeightsError(
            f"BackboneRequest(weights={path}): cannot read a state dict ({exc}); save it with torch.save or safetensors"
        ) from None
    for key in ("state_dict", "model", "module"):
        if isinstance(sd, dict) and key in sd and isinstance(sd[key], dict):
            sd = sd[key]
    if not isinstance(sd, dict):
        raise WeightsError(f"BackboneRequest(weights={path}): expected a dict of tensors, found {type(sd).__name__}")
    return {k.removeprefix("module."): v for k, v in sd.items()}


def load_weights(model: nn.Module, state: dict[str, torch.Tensor], *, origin: str) -> None:
    """Load a state dict strictly, with an error that counts and names the mismatched keys.

    Raises:
        WeightsError: missing or unexpected keys, or shape mismatches.
    """
    own = model.state_dict()
    missing = [k for k in own if k not in state]
    unexpected = [k for k in state if k not in own]
    wrong = [k for k in own if k in state and tuple(state[k].shape) != tuple(own[k].shape)]
    if missing or unexpected or wrong:
        raise WeightsError(
            f"{origin}: weights do not fit the architecture ({len(missing)} missing, e.g. {missing[:3]}; "
            f"{len(unexpected)} unexpected, e.g. {unexpected[:3]}; {len(wrong)} with other shapes, "
            f"e.g. {wrong[:3]}); check that the architecture name matches the weights file"
        )
    model.load_state_dict(state, strict=True)
