"""Train one classifier on one training draw: AdamW, warm-up + cosine, checkpoints, early stopping.

The loop is resumable at epoch granularity: the model's trainable state, the optimiser, the
scheduler, the RNG states and the early-stopping state are saved after every epoch, and every
random choice of an epoch is keyed by (seed, epoch), so a resumed run ends with the same weights
as an uninterrupted one on the same device.
"""

from __future__ import annotations

import math
import resource
import time
import warnings
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn
from torch.utils.data import DataLoader

from probe import metrics as M
from probe.backbones import Preprocessor
from probe.errors import ConfigError
from probe.finetune import checkpoint as ckpt
from probe.finetune.config import FinetuneConfig
from probe.finetune.data import EpochSampler, SourceImages, make_loader, seeded_generator
from probe.finetune.model import Classifier, init_head_from_probe, param_groups
from probe.runtime import autocast
from probe.sources import Source

EpochHook = Callable[[int], None]


@dataclass(frozen=True)
class TrainSetup:
    """Where and how one draw is trained."""

    source: Source
    train_rows: np.ndarray  # (m,) source rows of the training draw
    val_rows: np.ndarray | None  # (v,) source rows used for early stopping (None: fixed budget)
    n_classes: int
    preprocess: Preprocessor
    device: torch.device
    precision: str  # resolved: "fp32" or "bf16"
    workers: int
    seed: int
    folder: Path  # checkpoint folder of this run
    multilabel: bool = False  # (n, C) 1/0/-1 targets: per-label sigmoid outputs, masked BCE loss


@dataclass
class TrainOutcome:
    """What training did, recorded in the rows' params."""

    epochs_planned: int
    epochs_run: int
    best_epoch: int  # epoch whose weights were kept (the last one without early stopping)
    steps: int
    resumed_from_epoch: int  # 0 for a fresh run
    train_seconds: float
    history: list[dict[str, float]] = field(default_factory=list)
    lp: dict[str, Any] = field(default_factory=dict)  # lp-ft: the linear probe that initialised the head


def plan_epochs(n_train: int, config: FinetuneConfig, *, early_stopping: bool) -> tuple[int, int]:
    """(epochs, optimiser steps per epoch); n-shot budgets grow to at least ``min_steps`` steps."""
    batches = math.ceil(n_train / config.batch_size)
    steps = math.ceil(batches / config.grad_accum)
    epochs = config.epochs if early_stopping else max(config.epochs, math.ceil(config.min_steps / steps))
    return epochs, steps


def cosine_with_warmup(total: int, warmup: int) -> Callable[[int], float]:
    """LR multiplier: linear warm-up over ``warmup`` steps, then cosine decay to 0 at ``total``."""

    def factor(step: int) -> float:
        if step < warmup:
            return (step + 1) / (warmup + 1)
        progress = (step - warmup) / max(1, total - warmup)
        return 0.5 * (1.0 + math.cos(math.pi * min(1.0, progress)))

    return factor


def _autocast(precision: str, device: torch.device) -> Any:
    return autocast(precision, device)


def _outputs(logits: torch.Tensor, multilabel: bool) -> torch.Tensor:
    return torch.sigmoid(logits.float()) if multilabel else torch.softmax(logits.float(), dim=1)


def eval_loader(setup: TrainSetup, rows: np.ndarray, *, batch_size: int, persistent: bool = False) -> DataLoader[Any]:
    """Batches of ``rows`` in order, without augmentation (``persistent``: for repeated passes)."""
    data = SourceImages(setup.source, rows, setup.preprocess, augment=None, seed=setup.seed)
    pin = setup.device.type == "cuda"
    return make_loader(data, batch_size=batch_size, order=None, workers=setup.workers, pin=pin, persistent=persistent)


def predict_proba(
    model: Classifier, setup: TrainSetup, rows: np.ndarray, *, batch_size: int, loader: DataLoader[Any] | None = None
) -> np.ndarray:
    """Class probabilities (softmax), or per-label probabilities (sigmoid) for multi-label, of ``rows``.

    Args:
        loader: an :func:`eval_loader` of ``rows`` to reuse (None: one is made for this call).

    Returns:
        (len(rows), n_outputs) float64; no augmentation, eval mode.
    """
    loader = loader if loader is not None else eval_loader(setup, rows, batch_size=batch_size)
    model.eval()
    out = []
    with torch.inference_mode(), _autocast(setup.precision, setup.device):
        for x, _, present in loader:
            logits = model(x.to(setup.device, non_blocking=True), present.to(setup.device))
            out.append(_outputs(logits, setup.multilabel).cpu().double().numpy())
    return np.concatenate(out) if out else np.zeros((0, setup.n_classes))


def features_of(model: Classifier, setup: TrainSetup, rows: np.ndarray, *, batch_size: int) -> np.ndarray:
    """(len(rows), dim) float32 pooled (view-fused) features of the current backbone, eval mode."""
    data = SourceImages(setup.source, rows, setup.preprocess, augment=None, seed=setup.seed)
    loader = make_loader(data, batch_size=batch_size, order=None, workers=setup.workers, pin=False)
    model.eval()
    with torch.inference_mode(), _autocast(setup.precision, setup.device):
        parts = [model.features(x.to(setup.device), p.to(setup.device)).float().cpu().numpy() for x, _, p in loader]
    return np.concatenate(parts).astype(np.float32)


def val_score(
    model: Classifier, setup: TrainSetup, config: FinetuneConfig, *, loader: DataLoader[Any] | None = None
) -> float:
    """The early-stopping score on the validation rows (higher is better; macro-AUROC for multi-label)."""
    assert setup.val_rows is not None
    proba = predict_proba(model, setup, setup.val_rows, batch_size=config.batch_size * 2, loader=loader)
    y = setup.source.labels[setup.val_rows].astype(np.int64)
    if setup.multilabel:
        from probe.metrics.multilabel import compute_multilabel_metrics

        labels = [str(i) for i in range(setup.n_classes)]
        return compute_multilabel_metrics(y, proba, metrics=["macro_auroc"], labels=labels)["macro_auroc"]
    if config.select_metric == "neg_log_loss":
        return float(np.mean(np.log(np.clip(proba[np.arange(y.size), y], 1e-12, None))))
    return M.compute_metrics(y, proba, metrics=[config.select_metric], n_classes=setup.n_classes)[config.select_metric]


def fit_linear_init(model: Classifier, setup: TrainSetup, config: FinetuneConfig) -> dict[str, Any]:
    """LP-FT's first stage: a logistic probe on frozen features (one-vs-rest for multi-label), copied into the head."""
    from probe.heads import LinearProbe, MultiLabelLinearProbe

    bs = config.batch_size * 2
    X = features_of(model, setup, setup.train_rows, batch_size=bs)
    y = setup.source.labels[setup.train_rows].astype(np.int64)
    kw: dict[str, Any] = {}
    if setup.val_rows is not None:
        Xv, yv = features_of(model, setup, setup.val_rows, batch_size=bs), setup.source.labels[setup.val_rows]
        kw = {"X_val": Xv, "Y_val": yv} if setup.multilabel else {"X_val": Xv, "y_val": yv}
    if setup.multilabel:
        ml = MultiLabelLinearProbe(seed=setup.seed, device="cpu").fit(X, y, **kw)
        with torch.no_grad():
            model.head.weight.copy_(torch.as_tensor(ml.coef_, dtype=model.head.weight.dtype))
            model.head.bias.copy_(torch.as_tensor(ml.intercept_, dtype=model.head.bias.dtype))
        return {"C": [float(c) for c in ml.C_], "selection": sorted(set(ml.selection_))}
    probe = LinearProbe(seed=setup.seed, device="cpu").fit(X, y, **kw)
    init_head_from_probe(model.head, coef=probe.coef_, intercept=probe.intercept_, classes=probe.classes_)
    return {"C": float(probe.C_), "selection": probe.selection_}


class MaskedBCE(nn.Module):
    """Multi-label loss: binary cross-entropy over known entries only (targets of -1 are ignored)."""

    def __init__(self, pos_weight: torch.Tensor | None, label_smoothing: float) -> None:
        super().__init__()
        self.pos_weight = pos_weight
        self.smoothing = label_smoothing

    def forward(self, logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        known = target >= 0
        y = target.clamp_min(0.0) * (1.0 - self.smoothing) + 0.5 * self.smoothing
        loss = nn.functional.binary_cross_entropy_with_logits(logits, y, pos_weight=self.pos_weight, reduction="none")
        return (loss * known).sum() / known.sum().clamp_min(1)


def _loss_fn(setup: TrainSetup, config: FinetuneConfig) -> nn.Module:
    labels = setup.source.labels[setup.train_rows].astype(np.int64)
    if setup.multilabel:
        pos_weight = None
        if config.class_balanced:  # negatives / positives per label, over known entries
            pos, neg = (labels == 1).sum(0), (labels == 0).sum(0)
            pos_weight = torch.as_tensor(np.where(pos > 0, neg / np.maximum(pos, 1), 1.0), dtype=torch.float32)
            pos_weight = pos_weight.to(setup.device)
        return MaskedBCE(pos_weight, config.label_smoothing)
    weight = None
    if config.class_balanced:
        counts = np.bincount(labels, minlength=setup.n_classes)
        w = np.where(counts > 0, counts.sum() / np.maximum(counts, 1) / max(1, (counts > 0).sum()), 0.0)
        weight = torch.as_tensor(w, dtype=torch.float32, device=setup.device)
    return nn.CrossEntropyLoss(weight=weight, label_smoothing=config.label_smoothing)


def peak_memory(device: torch.device) -> dict[str, Any]:
    """Peak memory of the run: CUDA max allocated, or this process's max RSS on a CPU."""
    if device.type == "cuda":
        return {
            "peak_memory_mb": round(torch.cuda.max_memory_allocated(device) / 2**20, 1),
            "peak_memory_kind": "cuda-max-allocated",
        }
    rss_kib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return {"peak_memory_mb": round(rss_kib / 1024, 1), "peak_memory_kind": "process-max-rss"}


class _Trainer:
    """State of one training run (kept small: one method per phase)."""

    def __init__(self, model: Classifier, setup: TrainSetup, config: FinetuneConfig) -> None:
        self.model, self.setup, self.config = model, setup, config
        early = setup.val_rows is not None
        self.epochs, self.steps_per_epoch = plan_epochs(setup.train_rows.size, config, early_stopping=early)
        total = self.epochs * self.steps_per_epoch
        self.optimizer = torch.optim.AdamW(param_groups(model, config))
        self.scheduler = torch.optim.lr_scheduler.LambdaLR(
            self.optimizer, cosine_with_warmup(total, round(config.warmup_frac * total))
        )
        self.loss_fn = _loss_fn(setup, config)
        self.data = SourceImages(
            setup.source, setup.train_rows, setup.preprocess, augment=config.augment, seed=setup.seed
        )
        # One loader (and one set of worker processes) for every epoch, and one for validation.
        self.sampler = EpochSampler(len(self.data), seed=setup.seed)
        pin = setup.device.type == "cuda"
        self.loader = make_loader(
            self.data, batch_size=config.batch_size, order=self.sampler, workers=setup.workers, pin=pin, persistent=True
        )
        self.val_loader: DataLoader[Any] | None = None
        self.start_epoch, self.best, self.best_epoch, self.bad = 0, -math.inf, -1, 0
        self.history: list[dict[str, float]] = []
        self.lp: dict[str, Any] = {}
        self.steps = 0
        self.seconds, self.t0 = 0.0, time.perf_counter()  # training time of earlier sessions, this session's start

    def state(self, epoch: int) -> dict[str, Any]:
        return {
            "epoch": epoch,
            "model": ckpt.trainable_state(self.model),
            "optimizer": self.optimizer.state_dict(),
            "scheduler": self.scheduler.state_dict(),
            "rng": ckpt.rng_state(),
            "best": self.best,
            "best_epoch": self.best_epoch,
            "bad": self.bad,
            "history": self.history,
            "lp": self.lp,
            "steps": self.steps,
            "seconds": self.seconds + time.perf_counter() - self.t0,
        }

    def restore(self, state: dict[str, Any]) -> None:
        missing = set(state["model"]) - set(self.model.state_dict())
        if missing:
            raise ConfigError(
                f"checkpoint in {self.setup.folder} does not fit this model ({len(missing)} unknown keys); "
                "delete that folder to train from scratch"
            )
        self.model.load_state_dict(state["model"], strict=False)
        self.optimizer.load_state_dict(state["optimizer"])
        self.scheduler.load_state_dict(state["scheduler"])
        ckpt.set_rng_state(state["rng"])
        self.start_epoch = int(state["epoch"]) + 1
        best = ckpt.load(self.setup.folder, ckpt.BEST_FILE)
        if best is not None and int(best["epoch"]) >= self.start_epoch:  # killed between the two saves
            (self.setup.folder / ckpt.BEST_FILE).unlink()
        self.seconds = float(state.get("seconds", 0.0))
        self.best, self.best_epoch, self.bad = float(state["best"]), int(state["best_epoch"]), int(state["bad"])
        self.history, self.lp, self.steps = list(state["history"]), dict(state["lp"]), int(state["steps"])

    def run_epoch(self, epoch: int) -> float:
        setup, cfg = self.setup, self.config
        torch.manual_seed(int(torch.randint(0, 2**62, (), generator=seeded_generator(setup.seed, epoch, -2))))
        self.data.set_epoch(epoch)
        self.sampler.set_epoch(epoch)
        loader = self.loader
        n_batches = len(loader)
        self.model.train()
        # Sum of per-sample losses, kept on the device: one host sync per epoch, not one per batch.
        total = torch.zeros((), dtype=torch.float32 if setup.device.type == "mps" else torch.float64)
        total = total.to(setup.device)
        count = 0
        self.optimizer.zero_grad(set_to_none=True)
        for i, (x, y, present) in enumerate(loader):
            x, y = x.to(setup.device, non_blocking=True), y.to(setup.device, non_blocking=True)
            group_start = (i // cfg.grad_accum) * cfg.grad_accum
            in_group = min(cfg.grad_accum, n_batches - group_start)
            with _autocast(setup.precision, setup.device):
                loss = self.loss_fn(self.model(x, present.to(setup.device)).float(), y)
            (loss / in_group).backward()
            total += loss.detach().to(total.dtype) * y.shape[0]
            count += int(y.shape[0])
            if i - group_start + 1 == in_group:
                self.optimizer.step()
                self.scheduler.step()
                self.optimizer.zero_grad(set_to_none=True)
                self.steps += 1
        return float(total) / count if count else math.nan

    def finish_epoch(self, epoch: int, loss: float) -> bool:
        """Record the epoch, update early stopping, checkpoint; True when training should stop."""
        record: dict[str, float] = {"epoch": epoch, "loss": round(loss, 6)}
        stop = False
        if self.setup.val_rows is not None:
            if self.val_loader is None:
                rows, bs = self.setup.val_rows, self.config.batch_size * 2
                self.val_loader = eval_loader(self.setup, rows, batch_size=bs, persistent=True)
            score = val_score(self.model, self.setup, self.config, loader=self.val_loader)
            record["val"] = round(score, 6)
            if not math.isfinite(score):
                warnings.warn(f"epoch {epoch}: validation score is {score}; it never counts as the best", stacklevel=2)
                score = -math.inf
            if score > self.best:
                self.best, self.best_epoch, self.bad = score, epoch, 0
                ckpt.save_best(self.setup.folder, ckpt.trainable_state(self.model), epoch=epoch)
            else:
                self.bad += 1
                stop = self.config.patience > 0 and self.bad >= self.config.patience
        else:
            self.best_epoch = epoch
        self.history.append(record)
        ckpt.save_epoch(self.setup.folder, self.state(epoch))
        return stop


def train_classifier(
    model: Classifier, setup: TrainSetup, config: FinetuneConfig, *, on_epoch_end: EpochHook | None = None
) -> TrainOutcome:
    """Train ``model`` in place on ``setup.train_rows``, resuming from ``setup.folder`` when it holds a checkpoint.

    Args:
        model: classifier from :func:`probe.finetune.model.build_classifier`, on ``setup.device``.
        setup: data, device and checkpoint folder.
        config: the recipe.
        on_epoch_end: called with the epoch index after each epoch's checkpoint is written.

    Returns:
        The outcome; with early stopping the model ends at its best epoch's weights.
    """
    from tqdm.auto import tqdm

    trainer = _Trainer(model, setup, config)
    state = ckpt.load(setup.folder)
    if state is not None:
        trainer.restore(state)
    elif config.mode == "lp-ft":
        trainer.lp = fit_linear_init(model, setup, config)
    resumed = trainer.start_epoch
    stopped = state is not None and trainer.history and _stopped_early(trainer)
    bar_options = {"unit": "epoch", "desc": config.head_name, "disable": not config.progress, "leave": False}
    with tqdm(total=trainer.epochs, initial=resumed, **bar_options) as bar:  # closed (cleared) on errors too
        for epoch in range(resumed, trainer.epochs if not stopped else resumed):
            loss = trainer.run_epoch(epoch)
            stop = trainer.finish_epoch(epoch, loss)
            bar.update(1)
            bar.set_postfix({k: v for k, v in trainer.history[-1].items() if k != "epoch"})
            if on_epoch_end is not None:
                on_epoch_end(epoch)
            if stop:
                break
    if setup.val_rows is not None:
        best = ckpt.load(setup.folder, ckpt.BEST_FILE)
        if best is not None and int(best["epoch"]) == trainer.best_epoch:
            model.load_state_dict(best["model"], strict=False)
        elif trainer.best_epoch >= 0:
            warnings.warn(
                f"{setup.folder}: best epoch {trainer.best_epoch} has no saved weights; keeping the last epoch's",
                stacklevel=2,
            )
    return TrainOutcome(
        epochs_planned=trainer.epochs,
        epochs_run=len(trainer.history),
        best_epoch=trainer.best_epoch,
        steps=trainer.steps,
        resumed_from_epoch=resumed,
        train_seconds=round(trainer.seconds + time.perf_counter() - trainer.t0, 3),
        history=trainer.history,
        lp=trainer.lp,
    )


def _stopped_early(trainer: _Trainer) -> bool:
    return trainer.config.patience > 0 and trainer.setup.val_rows is not None and trainer.bad >= trainer.config.patience
