"""The trainable classifier: a backbone pooling plus a linear head, with the mode's parameters unfrozen.

Modes decide which parameters train: ``full`` and ``lp-ft`` everything, ``bitfit`` every bias
(plus the head), ``lora`` low-rank adapters injected with peft (plus the head). LoRA targets are
discovered when not given: the attention and MLP projections of a ViT (timm ``qkv/proj/fc1/fc2``,
transformers ``query/key/value/dense``), else the pointwise (1x1) convolutions of a CNN.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from torch import nn
from torch.utils.checkpoint import checkpoint

from probe.errors import ConfigError
from probe.finetune.config import FinetuneConfig

#: Leaf names of the linear layers LoRA adapts in ViTs (timm, transformers, open_clip styles).
VIT_LORA_NAMES = frozenset(
    {"qkv", "proj", "fc1", "fc2", "query", "key", "value", "dense", "q_proj", "k_proj", "v_proj", "out_proj"}
    | {"c_fc", "c_proj"}  # open_clip MLPs (their attention is an nn.MultiheadAttention, adapted whole)
)
_BLOCK_RE = re.compile(
    r"(?:^|\.)(?:blocks|resblocks|layers|layer|stages|encoder\.layer)\.(\d+)(?:\.|$)|(?:^|\.)layer(\d+)\."
)
_STEM_RE = re.compile(r"(embed|stem|cls_token|reg_token|register|pos_|mask_token|(^|\.)conv1\.|(^|\.)bn1\.)")
_NO_DECAY_RE = re.compile(r"(cls_token|reg_token|register_tokens|pos_embed|position_embedding|mask_token)")


#: View images per backbone forward of a multi-view batch. B samples of V views would otherwise go
#: through one forward with gradients as B x V images (32 volumes x 28-64 slices on a ViT-B/L: 45 to
#: over 80 GB of activations). Above this count the present views are embedded in chunks of this
#: size under activation checkpointing: peak activation memory is one chunk's (plus the (B x V, dim)
#: features), at the cost of a second forward per chunk. The result is the same mean over present
#: views; with ``norm="train"`` BatchNorm normalises each chunk by its own statistics (and, being
#: recomputed, updates its running statistics twice per chunk).
VIEW_CHUNK = 32


class Classifier(nn.Module):
    """``head(fuse(pooler(views)[pooling]))``: logits (B, n_outputs) for a (B, V, 3, S, S) batch of view stacks.

    Plain images are one view. Multi-view samples (slices, modalities) are embedded view by view with
    the same backbone and fused by the mean over their present views before the head.
    """

    def __init__(self, pooler: nn.Module, *, pooling: str, dim: int, n_classes: int, freeze_norm: bool) -> None:
        super().__init__()
        self.pooler = pooler
        self.pooling = pooling
        self.head = nn.Linear(dim, n_classes)
        self.freeze_norm = freeze_norm
        self.channels_last = False

    def embed(self, x: torch.Tensor) -> torch.Tensor:
        """(B, dim) pooled backbone features of (B, 3, S, S) images."""
        if self.channels_last:
            x = x.contiguous(memory_format=torch.channels_last)
        out: torch.Tensor = self.pooler(x)[self.pooling]
        return out

    def embed_views(self, x: torch.Tensor) -> torch.Tensor:
        """(n, dim) features of the (n, 3, S, S) present views of a batch, at most ``VIEW_CHUNK`` per forward.

        Training runs each chunk under activation checkpointing, so only one chunk's activations are
        alive at a time (its forward is recomputed in the backward pass); evaluation simply chunks.
        """
        if x.shape[0] <= VIEW_CHUNK:
            return self.embed(x)
        grad = torch.is_grad_enabled() and any(p.requires_grad for p in self.pooler.parameters())
        parts = []
        for chunk in x.split(VIEW_CHUNK):
            part = checkpoint(self.embed, chunk, use_reentrant=False) if grad else self.embed(chunk)
            parts.append(part)
        return torch.cat(parts)

    def features(self, x: torch.Tensor, present: torch.Tensor | None = None) -> torch.Tensor:
        """(B, dim) features of (B, V, 3, S, S) view stacks: the mean over present views (V = 1: the image)."""
        if x.ndim == 4:
            return self.embed(x)
        if x.shape[1] == 1:
            return self.embed(x[:, 0])
        b, v = x.shape[:2]
        mask = present if present is not None else torch.ones(b, v, dtype=torch.bool, device=x.device)
        feats = self.embed_views(x[mask])
        full = feats.new_zeros(b, v, feats.shape[1])
        full[mask] = feats
        return full.sum(1) / mask.sum(1, keepdim=True).clamp_min(1).to(feats.dtype)

    def forward(self, x: torch.Tensor, present: torch.Tensor | None = None) -> torch.Tensor:
        out: torch.Tensor = self.head(self.features(x, present))
        return out

    def train(self, mode: bool = True) -> Classifier:
        """Train mode, keeping BatchNorm running statistics fixed when ``freeze_norm`` (tiny few-shot batches)."""
        super().train(mode)
        if mode and self.freeze_norm:
            for m in self.modules():
                if isinstance(m, nn.modules.batchnorm._BatchNorm):
                    m.eval()
        return self


@dataclass(frozen=True)
class ParamCounts:
    """Parameter counts recorded in each row."""

    trainable: int  # parameters the optimiser updates (head included)
    total: int  # every parameter of the classifier (adapters included)
    backbone: int  # parameters of the pretrained backbone alone

    def to_dict(self) -> dict[str, Any]:
        return {"trainable_params": self.trainable, "total_params": self.total, "backbone_params": self.backbone}


def build_classifier(
    pooler: nn.Module, *, dim: int, n_classes: int, config: FinetuneConfig, pooling: str, seed: int
) -> Classifier:
    """Wrap a (frozen) backbone pooler into a classifier whose trainable parameters follow ``config.mode``.

    Args:
        pooler: the backbone module returning ``{pooling: (B, dim)}``.
        dim: feature width of ``pooling``.
        n_classes: number of classes.
        config: the recipe (mode, LoRA settings, norm policy).
        pooling: which pooled output feeds the head.
        seed: seeds the head's initialisation.

    Raises:
        ConfigError: LoRA targets that match no module, or a backbone with nothing LoRA can adapt.
    """
    backbone_params = sum(p.numel() for p in pooler.parameters())
    for p in pooler.parameters():
        p.requires_grad_(False)
    if config.mode == "lora":
        pooler = inject_lora(pooler, config)
    model = Classifier(pooler, pooling=pooling, dim=dim, n_classes=n_classes, freeze_norm=config.norm == "frozen")
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        model.head.weight.copy_(torch.randn(model.head.weight.shape, generator=gen) * 0.01)
        model.head.bias.zero_()
    for name, p in model.pooler.named_parameters():
        if config.mode in ("full", "lp-ft"):
            p.requires_grad_(True)
        elif config.mode == "bitfit":
            p.requires_grad_(name.endswith("bias"))
        else:  # lora: adapters only
            p.requires_grad_("lora_" in name)
    model.head.requires_grad_(True)
    model.backbone_params = backbone_params  # type: ignore[assignment]
    return model


def count_params(model: Classifier) -> ParamCounts:
    """Trainable, total and pretrained-backbone parameter counts."""
    trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
    total = sum(p.numel() for p in model.parameters())
    return ParamCounts(trainable=trainable, total=total, backbone=int(getattr(model, "backbone_params", 0)))


def discover_lora_targets(module: nn.Module) -> list[str]:
    """Names of the modules LoRA adapts by default (see the module docstring).

    Raises:
        ConfigError: neither ViT projections nor pointwise convolutions exist.
    """
    mha = [n for n, m in module.named_modules() if isinstance(m, nn.MultiheadAttention)]
    linear = [
        n
        for n, m in module.named_modules()
        if isinstance(m, nn.Linear)
        and n.rsplit(".", 1)[-1] in VIT_LORA_NAMES
        and not any(n.startswith(a + ".") for a in mha)  # inside an nn.MultiheadAttention: adapted with it
    ]
    if linear or mha:
        return mha + linear
    convs = [
        n
        for n, m in module.named_modules()
        if isinstance(m, nn.Conv2d) and m.groups == 1 and tuple(m.kernel_size) == (1, 1)
    ]
    if convs:
        return convs
    raise ConfigError(
        "found no ViT projection (qkv/proj/fc1/fc2, query/key/value/dense) and no 1x1 convolution to adapt; "
        "name the modules with LoraSettings(targets=NAMES) (module names or name suffixes)"
    )


def resolve_lora_targets(module: nn.Module, targets: Sequence[str] | None) -> list[str]:
    """Expand user targets (names or suffixes) to module names, or discover them.

    Raises:
        ConfigError: a target matches no Linear/Conv layer (the message lists some candidates).
    """
    if targets is None:
        return discover_lora_targets(module)
    kinds = (nn.Linear, nn.Conv2d, nn.Conv1d, nn.MultiheadAttention)
    layers = [n for n, m in module.named_modules() if isinstance(m, kinds)]
    names: list[str] = []
    for t in targets:
        hit = [n for n in layers if n == t or n.endswith("." + t)]
        if not hit:
            leaves = sorted({n.rsplit(".", 1)[-1] for n in layers})[:12]
            raise ConfigError(
                f"LoraSettings(targets={t!r}) matches no Linear/Conv layer of this backbone; layer names end in e.g. "
                f"{', '.join(leaves)}"
            )
        names += [n for n in hit if n not in names]
    return names


def inject_lora(module: nn.Module, config: FinetuneConfig) -> nn.Module:
    """Add peft LoRA adapters to ``module`` in place (its own parameters stay frozen)."""
    from peft import LoraConfig, inject_adapter_in_model

    targets = resolve_lora_targets(module, config.lora.targets)
    lora = LoraConfig(
        r=config.lora.rank,
        lora_alpha=config.lora.alpha,
        lora_dropout=config.lora.dropout,
        target_modules=targets,
        bias="none",
    )
    out: nn.Module = inject_adapter_in_model(lora, module)
    out.lora_targets = targets  # type: ignore[assignment]
    return out


def init_head_from_probe(head: nn.Linear, *, coef: np.ndarray, intercept: np.ndarray, classes: np.ndarray) -> None:
    """LP-FT: start the head from a fitted logistic probe (raw-feature coefficients).

    Args:
        head: the classifier's (n_classes, dim) linear layer.
        coef: (k, dim) probe coefficients, or (1, dim) for two classes (sigmoid form).
        intercept: (k,) or (1,) intercepts.
        classes: (k,) class indices the probe saw (absent classes get zero weights and a low bias).
    """
    n_classes = head.weight.shape[0]
    w = np.zeros((n_classes, coef.shape[1]))
    b = np.zeros(n_classes)
    if coef.shape[0] == 1 and classes.size == 2:  # sigmoid form: logit(c1) - logit(c0) = z
        w[classes[1]], b[classes[1]] = coef[0], intercept[0]
    else:
        w[classes], b[classes] = coef, intercept
    missing = np.setdiff1d(np.arange(n_classes), classes)
    if missing.size:
        b[missing] = b[classes].min() - 10.0
    with torch.no_grad():
        head.weight.copy_(torch.as_tensor(w, dtype=head.weight.dtype))
        head.bias.copy_(torch.as_tensor(b, dtype=head.bias.dtype))


def layer_index(name: str) -> int | None:
    """Block index of a backbone parameter name (None outside numbered blocks)."""
    m = _BLOCK_RE.search(name)
    if m is None:
        return None
    return int(m.group(1) if m.group(1) is not None else m.group(2))


def param_groups(model: Classifier, config: FinetuneConfig) -> list[dict[str, Any]]:
    """AdamW parameter groups: head vs backbone learning rate, layer-wise decay, no decay on 1-D/tokens.

    With ``layer_decay = d`` and L numbered blocks, block i trains at ``lr * d ** (L - i)``, the stem at
    ``lr * d ** (L + 1)`` and the layers after the last block at ``lr``.
    """
    named = [(n, p) for n, p in model.pooler.named_parameters() if p.requires_grad]
    ids = [layer_index(n) for n, _ in named]
    n_layers = max((i for i in ids if i is not None), default=-1) + 1
    groups: dict[tuple[float, bool], list[nn.Parameter]] = {}
    for (name, p), idx in zip(named, ids, strict=True):
        if idx is None:
            idx = -1 if _STEM_RE.search(name) else n_layers
        scale = 1.0 if config.layer_decay is None else config.layer_decay ** (n_layers - idx)
        decay = p.ndim > 1 and not _NO_DECAY_RE.search(name)
        groups.setdefault((config.backbone_lr * scale, decay), []).append(p)
    out = [
        {"params": ps, "lr": lr, "weight_decay": config.weight_decay if decay else 0.0}
        for (lr, decay), ps in sorted(groups.items(), key=lambda kv: (kv[0][0], kv[0][1]))
    ]
    out.append({"params": [model.head.weight], "lr": config.head_lr, "weight_decay": config.weight_decay})
    out.append({"params": [model.head.bias], "lr": config.head_lr, "weight_decay": 0.0})
    return out
