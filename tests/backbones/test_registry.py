"""Registry, prefixes, poolings details and weights files (every alias is built in test_families.py)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import torch

from probe.backbones import (
    BackboneSpec,
    PreprocessConfig,
    backbone_from_hf_model,
    load_backbone,
    register_backbone,
    registered_backbones,
)
from probe.errors import RegistryError, UnknownBackboneError, WeightsError

TINY_VIT = {"depth": 4, "embed_dim": 32, "num_heads": 2}
#: A tiny transformers ViT: 4 layers of width 32, patches of 14 px.
TINY_HF: dict[str, Any] = {
    "hidden_size": 32,
    "num_hidden_layers": 4,
    "num_attention_heads": 2,
    "intermediate_size": 64,
    "patch_size": 14,
}
# Every registered alias is built from a tiny config and pooled in test_families.py.


def test_dinov2_defaults_to_224_and_imagenet_norm() -> None:
    spec = registered_backbones()["dinov2_vitb14_reg"]
    assert spec.image_size == 224 and spec.poolings["last4"] == 3072
    bb = load_backbone("dinov2_vits14_reg", pretrained=False, model_args=TINY_VIT)
    assert bb.preprocess.image_size == 224 and bb.preprocess.mean == (0.485, 0.456, 0.406)
    assert bb.pooler.n_prefix == 5  # CLS + 4 registers are excluded from "mean"


def test_mean_excludes_register_tokens() -> None:
    bb = load_backbone("dinov2_vits14_reg", pretrained=False, model_args=TINY_VIT, image_size=28)
    model = bb.pooler.model
    x = torch.randn(1, 3, 28, 28)
    with torch.no_grad():
        tokens = model.forward_features(x)
        out = bb.pooler(x)
    torch.testing.assert_close(out["mean"], tokens[:, 5:].mean(1))


def test_hf_dinov2_from_config() -> None:
    from transformers import Dinov2WithRegistersConfig, Dinov2WithRegistersModel

    cfg = Dinov2WithRegistersConfig(**TINY_HF, image_size=56, num_register_tokens=4)
    bb = backbone_from_hf_model(
        Dinov2WithRegistersModel(cfg), name="hf:tiny", preprocess=PreprocessConfig(image_size=56)
    )
    with torch.no_grad():
        out = bb.pooler(torch.randn(3, 3, 56, 56))
    assert bb.poolings == {"cls": 32, "mean": 32, "cls+mean": 64, "last4": 128}
    assert all(v.shape == (3, bb.poolings[k]) for k, v in out.items() if k in bb.poolings)
    assert bb.dense_poolings == {"patch": 32, "patch-last4": 128}  # registers and CLS dropped: a 4 x 4 grid
    assert {k: out[k].shape for k in bb.dense_poolings} == {"patch": (3, 4, 4, 32), "patch-last4": (3, 4, 4, 128)}
    assert bb.weights_fingerprint.startswith("sha256:")


def test_unknown_backbone_suggests_close_names() -> None:
    with pytest.raises(UnknownBackboneError, match="did you mean dinov2_vitb14"):
        load_backbone("dinov2_vitb4")
    with pytest.raises(UnknownBackboneError, match="timm has no model 'resnet5O'.*timm:resnet50"):
        load_backbone("timm:resnet5O")


def test_registry_refuses_duplicates() -> None:
    spec = registered_backbones()["efficientnet_lite0"]
    with pytest.raises(RegistryError, match="already registered"):
        register_backbone(
            BackboneSpec(
                name=spec.name, family="x", source="x", license="x", image_size=1, poolings={}, build=spec.build
            )
        )


def test_random_init_is_seeded_and_weights_change_fingerprint(tiny_vit_weights: Path) -> None:
    a = load_backbone("timm:test_vit", pretrained=False)
    b = load_backbone("timm:test_vit", pretrained=False)
    c = load_backbone("timm:test_vit", weights=str(tiny_vit_weights))
    assert a.weights_fingerprint == b.weights_fingerprint != c.weights_fingerprint
    assert c.meta["weights"] == str(tiny_vit_weights)


def test_weights_file_errors(tmp_path: Path, tiny_vit_weights: Path) -> None:
    with pytest.raises(WeightsError, match="file not found"):
        load_backbone("timm:test_vit", weights=str(tmp_path / "none.pth"))
    (tmp_path / "junk.pth").write_bytes(b"junk")
    with pytest.raises(WeightsError, match="cannot read a state dict"):
        load_backbone("timm:test_vit", weights=str(tmp_path / "junk.pth"))
    with pytest.raises(WeightsError, match=r"do not fit timm:test_resnet.*check that the architecture name"):
        load_backbone("timm:test_resnet", weights=str(tiny_vit_weights))


def test_download_failure_is_a_clear_error(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(WeightsError, match=r"pretrained weights for timm:test_vit.*BackboneRequest\(weights=FILE\)"):
        load_backbone("timm:test_vit")


def test_rad_dino_alias_needs_the_hub_and_says_so(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    spec = registered_backbones()["rad_dino"]
    assert spec.source == "hf:microsoft/rad-dino" and spec.poolings["cls"] == 768 and spec.image_size == 518
    with pytest.raises(WeightsError, match="could not load hf:microsoft/rad-dino.*HF cache"):
        load_backbone("rad_dino")


def test_avg_pooled_vits_normalise_with_fc_norm() -> None:
    bb = load_backbone("eva02_small", pretrained=False, model_args=TINY_VIT, image_size=28)
    model = bb.pooler.model
    assert isinstance(model.norm, torch.nn.Identity)
    x = torch.randn(2, 3, 28, 28)
    with torch.no_grad():
        tokens = model.forward_features(x)
        out = bb.pooler(x)
        torch.testing.assert_close(out["cls"], model.fc_norm(tokens[:, 0]))
        torch.testing.assert_close(out["mean"], model.fc_norm(tokens[:, model.num_prefix_tokens :].mean(1)))


def test_hf_models_without_cls_or_hierarchical_and_resized() -> None:
    from transformers import SiglipVisionConfig, SiglipVisionModel, SwinConfig, SwinModel, ViTConfig, ViTModel

    pp = PreprocessConfig(image_size=56)
    siglip = SiglipVisionModel(SiglipVisionConfig(**TINY_HF, image_size=56))
    swin = SwinModel(
        SwinConfig(image_size=56, patch_size=4, embed_dim=16, depths=[1, 1], num_heads=[1, 2], window_size=7)
    )
    vit28 = ViTModel(ViTConfig(**TINY_HF, image_size=28))
    expected = {
        "siglip": {"mean": 32},
        "swin": {"gap": 32},
        "vit28": {"cls": 32, "mean": 32, "cls+mean": 64, "last4": 128},
    }
    for key, model in (("siglip", siglip), ("swin", swin), ("vit28", vit28)):
        bb = backbone_from_hf_model(model, name=key, preprocess=pp)
        assert bb.poolings == expected[key]
        with torch.no_grad():
            out = bb.pooler(torch.randn(2, 3, 56, 56))  # vit28 runs at 56 px by interpolating positions
        assert {k: v.shape[1] for k, v in out.items() if v.ndim == 2} == expected[key]
