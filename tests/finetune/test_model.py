"""Trainable parameters per mode, LoRA target discovery, parameter groups and the LP-FT head."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

from probe.backbones import load_backbone
from probe.errors import ConfigError
from probe.finetune import FinetuneConfig, LoraSettings
from probe.finetune.model import (
    build_classifier,
    count_params,
    discover_lora_targets,
    init_head_from_probe,
    layer_index,
    param_groups,
)


def _classifier(name: str, mode: str, **kw: object):
    bb = load_backbone(name, pretrained=False, image_size=32)
    pooling = bb.default_poolings[0]
    cfg = FinetuneConfig(mode=mode, **kw)  # type: ignore[arg-type]
    model = build_classifier(bb.pooler, dim=bb.poolings[pooling], n_classes=3, config=cfg, pooling=pooling, seed=0)
    return bb, model


@pytest.mark.parametrize("name", ["timm:test_vit", "timm:test_efficientnet"])
def test_trainable_counts_full_bitfit_lora(name: str) -> None:
    bb, full = _classifier(name, "full")
    backbone = sum(p.numel() for p in load_backbone(name, pretrained=False, image_size=32).pooler.parameters())
    dim = bb.poolings[bb.default_poolings[0]]
    head = dim * 3 + 3
    c = count_params(full)
    assert c.trainable == c.total == backbone + head and c.backbone == backbone

    _, bitfit = _classifier(name, "bitfit")
    biases = sum(p.numel() for n, p in bitfit.pooler.named_parameters() if n.endswith("bias"))
    c = count_params(bitfit)
    assert biases > 0 and c.trainable == biases + head and c.total == backbone + head

    rank = 4
    _, lora = _classifier(name, "lora", lora=LoraSettings(rank=rank, alpha=8))
    base = load_backbone(name, pretrained=False, image_size=32).pooler
    expected = 0
    for target in discover_lora_targets(base):
        m = base.get_submodule(target)
        if isinstance(m, nn.Linear):
            expected += rank * (m.in_features + m.out_features)
        else:
            assert isinstance(m, nn.Conv2d)
            expected += rank * (m.in_channels + m.out_channels)
    c = count_params(lora)
    assert c.trainable == expected + head and c.total == backbone + head + expected
    assert c.trainable < count_params(full).trainable / 3
    trainable = {n for n, p in lora.named_parameters() if p.requires_grad}
    assert all("lora_" in n or n.startswith("head.") for n in trainable)


def test_lora_targets_discovered_for_vit_and_cnn() -> None:
    vit = load_backbone("timm:test_vit", pretrained=False, image_size=32).pooler
    names = discover_lora_targets(vit)
    assert {n.rsplit(".", 1)[-1] for n in names} == {"qkv", "proj", "fc1", "fc2"}
    assert all(isinstance(vit.get_submodule(n), nn.Linear) for n in names)  # patch_embed.proj is a conv
    cnn = load_backbone("timm:test_efficientnet", pretrained=False, image_size=32).pooler
    convs = [cnn.get_submodule(n) for n in discover_lora_targets(cnn)]
    assert convs and all(isinstance(m, nn.Conv2d) and m.kernel_size == (1, 1) and m.groups == 1 for m in convs)


def test_lora_targets_override_and_bad_name() -> None:
    _, model = _classifier("timm:test_vit", "lora", lora=LoraSettings(rank=2, targets=("qkv",)))
    adapted = {n.split(".lora_")[0] for n, _ in model.named_parameters() if "lora_A" in n}
    assert adapted and all(n.endswith("attn.qkv") for n in adapted)
    with pytest.raises(ConfigError, match=r"LoraSettings\(targets='nope'\) matches no Linear/Conv layer"):
        _classifier("timm:test_vit", "lora", lora=LoraSettings(targets=("nope",)))


def test_lora_starts_as_the_pretrained_function() -> None:
    torch.manual_seed(0)
    x = torch.randn(2, 3, 32, 32)
    _, full = _classifier("timm:test_vit", "full")
    _, lora = _classifier("timm:test_vit", "lora")
    lora.pooler.load_state_dict(full.pooler.state_dict(), strict=False)  # same base weights
    full.eval(), lora.eval()
    with torch.no_grad():  # B is zero-initialised: adapters add nothing before training
        assert torch.allclose(full.features(x), lora.features(x), atol=1e-6)


def test_layer_decay_groups() -> None:
    assert layer_index("model.blocks.3.attn.qkv.weight") == 3
    assert layer_index("model.layer2.0.conv1.weight") == 2
    assert layer_index("model.norm.weight") is None
    _, model = _classifier("timm:test_vit", "full", layer_decay=0.5, lr=1.0, head_lr=10.0, weight_decay=0.1)
    groups = param_groups(model, FinetuneConfig(layer_decay=0.5, lr=1.0, head_lr=10.0, weight_decay=0.1))
    lr_of = {id(p): g["lr"] for g in groups for p in g["params"]}
    wd_of = {id(p): g["weight_decay"] for g in groups for p in g["params"]}
    named = dict(model.named_parameters())
    n_blocks = 1 + max(i for n in named if (i := layer_index(n)) is not None)
    last = f"pooler.model.blocks.{n_blocks - 1}.mlp.fc1.weight"
    assert lr_of[id(named[last])] == pytest.approx(0.5)
    assert lr_of[id(named["pooler.model.blocks.0.mlp.fc1.weight"])] == pytest.approx(0.5**n_blocks)
    assert lr_of[id(named["pooler.model.patch_embed.proj.weight"])] == pytest.approx(0.5 ** (n_blocks + 1))
    assert lr_of[id(named["pooler.model.norm.weight"])] == pytest.approx(1.0)
    assert lr_of[id(named["head.weight"])] == 10.0
    assert wd_of[id(named["pooler.model.blocks.0.mlp.fc1.bias"])] == 0.0
    assert wd_of[id(named["pooler.model.cls_token"])] == 0.0
    assert wd_of[id(named[last])] == 0.1
    assert sum(len(g["params"]) for g in groups) == len(named)


@pytest.mark.parametrize("n_classes", [2, 4])
def test_lp_ft_head_reproduces_the_probe(n_classes: int) -> None:
    from probe.heads import LinearProbe

    rng = np.random.default_rng(0)
    X = rng.normal(size=(80, 6)).astype(np.float32)
    y = np.arange(80) % n_classes
    X[:, 0] += y
    probe = LinearProbe(C=1.0).fit(X, y)
    head = nn.Linear(6, n_classes)
    init_head_from_probe(head, coef=probe.coef_, intercept=probe.intercept_, classes=probe.classes_)
    with torch.no_grad():
        ours = torch.softmax(head(torch.from_numpy(X)).double(), dim=1).numpy()
    np.testing.assert_allclose(ours, probe.predict_proba(X), atol=1e-5)


def test_frozen_norm_keeps_batchnorm_in_eval() -> None:
    _, model = _classifier("timm:test_efficientnet", "full")
    model.train()
    bns = [m for m in model.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]
    assert bns and not any(m.training for m in bns) and model.head.training
    _, model = _classifier("timm:test_efficientnet", "full", norm="train")
    model.train()
    assert all(m.training for m in model.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm))


def test_bad_config_names_the_value() -> None:
    with pytest.raises(ConfigError, match=r"FinetuneConfig\(mode='ft'\) is unknown"):
        FinetuneConfig(mode="ft")
    with pytest.raises(ConfigError, match=r"FinetuneConfig\(layer_decay=1.5\)"):
        FinetuneConfig(layer_decay=1.5)
    with pytest.raises(ConfigError, match=r"LoraSettings\(rank=0\)"):
        LoraSettings(rank=0)


def test_open_clip_style_attention_and_mlp_are_lora_targets() -> None:
    class Block(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.attn = nn.MultiheadAttention(16, 2, batch_first=True)
            self.mlp = nn.Sequential()
            self.mlp.add_module("c_fc", nn.Linear(16, 32))
            self.mlp.add_module("c_proj", nn.Linear(32, 16))

    tower = nn.Module()
    tower.resblocks = nn.Sequential(Block(), Block())  # type: ignore[assignment]
    names = discover_lora_targets(tower)
    assert names == ["resblocks.0.attn", "resblocks.1.attn", "resblocks.0.mlp.c_fc", "resblocks.0.mlp.c_proj",
                     "resblocks.1.mlp.c_fc", "resblocks.1.mlp.c_proj"]  # fmt: skip
    assert layer_index("pooler.model.transformer.resblocks.1.mlp.c_fc.weight") == 1
