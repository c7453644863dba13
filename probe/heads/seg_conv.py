"""Light convolutional decoder on frozen patch features: the "beyond linear" segmentation point."""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from probe.errors import ConfigError, DeviceError, HeadError
from probe.heads._seg_targets import (
    BATCH_BYTES,
    IGNORE,
    SegHead,
    check_fitted,
    check_grid,
    check_masks,
    check_patch_features,
    infer_n_classes,
    positive,
)

__all__ = ["SegConvProbe"]

OWNER = "SegConvProbe"


class SegConvProbe(SegHead):
    """Conv3x3 -> BatchNorm -> ReLU -> Conv1x1 decoder, trained with upsampled-logit cross-entropy.

    The (n, d, h, w) features go through ``Conv2d(d, hidden, 3, padding=1)``, ``BatchNorm2d``,
    ``ReLU`` and ``Conv2d(hidden, K, 1)``; the logits are upsampled bilinearly
    (``align_corners=False``) to the mask resolution and trained with pixel cross-entropy
    (``ignore_index=255``, mean over the valid pixels of a batch) by AdamW for a fixed number of
    epochs, without validation. Batches whose pixels are all ignored are skipped.

    Seeding: the weights are initialised from ``seed`` and the epochs shuffled by a
    ``torch.Generator`` seeded with ``seed``, inside ``torch.random.fork_rng`` with the CPU generator
    only, so the global RNG is left untouched. On the CPU two fits with the same seed give identical
    weights; on CUDA the bilinear upsampling's backward pass is not deterministic, so results may
    differ in the last bits.

    Args:
        hidden: channels of the hidden layer (>= 1).
        epochs: passes over the training images (>= 1).
        lr: AdamW learning rate (> 0).
        weight_decay: AdamW weight decay (>= 0).
        batch_size: images per step (>= 1).
        seed: seed of the initialisation and the shuffling.
        device: ``"auto"`` (CUDA when available), ``"cpu"``, ``"cuda"`` or ``"cuda:N"``.

    Attributes:
        decoder_: the trained ``nn.Sequential``, on the CPU in eval mode.
        classes_: (K',) int64 classes present in the training masks.
        n_classes_: K, the number of output channels.
        n_features_in_: feature width d.
        grid_: (h, w) patch grid seen at ``fit``.
        mask_size_: (H, W) mask resolution seen at ``fit``; the default ``size`` of predictions.
        loss_curve_: mean training loss of each epoch.
        device_: the device it trained on (``"cpu"``, ``"cuda:0"``, ...).
    """

    def __init__(
        self,
        *,
        hidden: int = 128,
        epochs: int = 30,
        lr: float = 1e-3,
        weight_decay: float = 1e-4,
        batch_size: int = 16,
        seed: int = 0,
        device: str = "auto",
    ) -> None:
        self.hidden = hidden
        self.epochs = epochs
        self.lr = lr
        self.weight_decay = weight_decay
        self.batch_size = batch_size
        self.seed = seed
        self.device = device

    def fit(self, X: Any, masks: Any, *, n_classes: int | None = None) -> SegConvProbe:
        """Train the decoder.

        Args:
            X: (n, h, w, d) patch features, float16 or float32.
            masks: (n, H, W) integer class maps (255 = ignore), H >= h and W >= w.
            n_classes: K; None takes the largest label + 1 (at least 2).

        Returns:
            self.

        Raises:
            HeadError: invalid parameters or inputs, or masks that are ignored everywhere.
            DeviceError: ``device="cuda"`` without CUDA.
        """
        dev = self._check_params()
        x = check_patch_features(X, owner=OWNER)
        k = infer_n_classes(masks, n_classes, owner=OWNER)
        m = check_masks(masks, n_classes=k, owner=OWNER, n_images=x.shape[0])
        grid = check_grid(x.shape[1:3], m.shape[1:], owner=OWNER)
        if not (m != IGNORE).any():
            raise HeadError(f"{OWNER}: every mask pixel is 255 (ignore); pass masks with labelled pixels.")
        with torch.random.fork_rng(devices=[]):
            torch.default_generator.manual_seed(int(self.seed))  # the CPU generator alone: init is on the CPU
            decoder = _decoder(x.shape[3], int(self.hidden), k)
        shuffle = torch.Generator().manual_seed(int(self.seed))
        self.loss_curve_ = _train(decoder.to(dev), x, m, self, shuffle, dev)
        self.decoder_ = decoder.cpu().eval()
        self.classes_ = np.flatnonzero(np.bincount(m[m != IGNORE].ravel(), minlength=k)).astype(np.int64)
        self.n_classes_ = k
        self.n_features_in_ = x.shape[3]
        self.grid_ = grid
        self.mask_size_ = (int(m.shape[1]), int(m.shape[2]))
        self.device_ = str(dev)
        return self

    def _patch_scores(self, X: Any) -> np.ndarray:
        return self.decision_function(X)

    def decision_function(self, X: Any) -> np.ndarray:
        """Per-patch logits of the decoder.

        Args:
            X: (n, h, w, d) patch features (any grid).

        Returns:
            (n, h, w, K) float32 logits.
        """
        check_fitted(self, "decoder_")
        x = check_patch_features(X, owner=OWNER, n_features=self.n_features_in_)
        dev = _resolve(self.device_)
        decoder = self.decoder_.to(dev)
        out = np.empty((*x.shape[:3], self.n_classes_), np.float32)
        step = max(1, BATCH_BYTES // (int(np.prod(x.shape[1:3])) * 4 * (x.shape[3] + int(self.hidden))))
        try:
            with torch.no_grad():
                for s in range(0, x.shape[0], step):
                    xb = torch.from_numpy(x[s : s + step]).to(dev).permute(0, 3, 1, 2)
                    out[s : s + step] = decoder(xb).permute(0, 2, 3, 1).cpu().numpy()
        finally:
            self.decoder_ = decoder.cpu()
        return out

    def predict_patch_proba(self, X: Any) -> np.ndarray:
        """Per-patch class probabilities (softmax of :meth:`decision_function`).

        Args:
            X: (n, h, w, d) patch features.

        Returns:
            (n, h, w, K) float32 probabilities.
        """
        return torch.softmax(torch.from_numpy(self.decision_function(X)), dim=-1).numpy()

    def _check_params(self) -> torch.device:
        positive(self.hidden, owner=OWNER, name="hidden", hint="e.g. 128", integer=True)
        positive(self.epochs, owner=OWNER, name="epochs", hint="e.g. 30", integer=True)
        positive(self.lr, owner=OWNER, name="lr", hint="e.g. 1e-3")
        positive(self.weight_decay, owner=OWNER, name="weight_decay", hint="e.g. 1e-4", zero=True)
        positive(self.batch_size, owner=OWNER, name="batch_size", hint="e.g. 16", integer=True)
        positive(self.seed, owner=OWNER, name="seed", hint="e.g. 0", integer=True, zero=True)
        return _resolve(self.device)


def _resolve(device: str) -> torch.device:
    from probe.runtime import resolve_device

    try:
        dev = resolve_device(device, owner=OWNER)
    except DeviceError:
        raise
    except ConfigError as exc:  # not a device string
        raise HeadError(str(exc)) from None
    if dev.type not in ("cpu", "cuda"):
        raise HeadError(f"{OWNER}(device={device!r}): the decoder trains on the CPU or CUDA; use {OWNER}(device=cpu)")
    return dev


def _decoder(d: int, hidden: int, k: int) -> nn.Sequential:
    return nn.Sequential(nn.Conv2d(d, hidden, 3, padding=1), nn.BatchNorm2d(hidden), nn.ReLU(), nn.Conv2d(hidden, k, 1))


def _train(
    decoder: nn.Sequential,
    x: np.ndarray,
    m: np.ndarray,
    params: SegConvProbe,
    shuffle: torch.Generator,
    dev: torch.device,
) -> list[float]:
    """AdamW on the upsampled-logit cross-entropy for ``params.epochs`` epochs; the mean loss of each."""
    opt = torch.optim.AdamW(decoder.parameters(), lr=float(params.lr), weight_decay=float(params.weight_decay))
    size = (m.shape[1], m.shape[2])
    bs = int(params.batch_size)
    decoder.train()
    curve = []
    for _ in range(int(params.epochs)):
        order = torch.randperm(x.shape[0], generator=shuffle).numpy()
        total, steps = 0.0, 0
        for s in range(0, order.size, bs):
            idx = order[s : s + bs]
            yb = torch.from_numpy(m[idx].astype(np.int64)).to(dev)
            # BatchNorm needs two values per channel; a batch of ignored pixels has no loss to follow.
            if not (yb != IGNORE).any() or idx.size * x.shape[1] * x.shape[2] < 2:
                continue
            xb = torch.from_numpy(x[idx]).to(dev).permute(0, 3, 1, 2)
            logits = F.interpolate(decoder(xb), size=size, mode="bilinear", align_corners=False)
            loss = F.cross_entropy(logits, yb, ignore_index=IGNORE)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            total, steps = total + loss.detach().item(), steps + 1
        curve.append(total / max(steps, 1))
    return curve
