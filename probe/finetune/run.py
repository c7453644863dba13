"""``probe finetune``: fine-tune a backbone on the probes' own training draws and write the same rows.

The draws come from :func:`probe.evaluate.build_tasks` over the source's train split (ids, labels,
groups), exactly as the probes draw them from a store of the same source, so a fine-tune row and a
probe row with the same dataset, seed and shots have the same ``sample_digest``.

Model selection follows the probe protocol: with the whole train split ("all") the validation split
drives early stopping and the best epoch is kept; n-shot and fraction runs never read validation
labels and train for a fixed budget (``epochs``, raised to at least ``min_steps`` optimiser steps),
keeping the final weights.
"""

from __future__ import annotations

import copy
import os
import time
import uuid
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np

from probe.backbones import Preprocessor
from probe.backbones.request import BackboneRequest
from probe.errors import ConfigError, ImageDecodeError, ProtocolError
from probe.evaluate import EvalData, Evaluation, PlanConfig, Pool, build_tasks, plan_metrics, score, task_kind
from probe.evaluate.data import input_setup
from probe.finetune import checkpoint as ckpt
from probe.finetune.config import FinetuneConfig
from probe.finetune.model import build_classifier, count_params, resolve_lora_targets
from probe.finetune.train import EpochHook, TrainSetup, peak_memory, predict_proba, train_classifier
from probe.provenance import library_versions
from probe.results import DEFAULT_DIR, ResultRow, append_results, check_results_location, results_location
from probe.sources import SPLITS, Source, SourceRequest
from probe.store import slug

#: Bumped when training code changes the weights it produces (old checkpoints are then never resumed).
FINETUNE_VERSION = 1
VERSIONED = ("numpy", "scipy", "torch", "torchvision", "timm", "transformers", "peft", "scikit-learn")


@dataclass(frozen=True)
class FinetunePlan:
    """Which draws to fine-tune on (the probe protocol's shots × seeds) and how to score them."""

    shots: tuple[int | str, ...] = (8, 64, "all")  # labels per class; "all" = the whole train split
    fractions: tuple[float, ...] = ()  # stratified label fractions in (0, 1]
    seeds: int = 3  # seeds seed .. seed+seeds-1
    seed: int = 0  # first seed
    metrics: tuple[str, ...] | None = None  # None: the probes' default metrics
    bootstrap: int = 1000  # bootstrap resamples for each row's CI
    strict: bool = False  # error instead of capping a class smaller than the shots
    eval_split: str = "test"  # scored split

    def probe_plan(self) -> PlanConfig:
        """The equivalent probing plan (its draws are the fine-tune draws)."""
        plan = PlanConfig(
            shots=self.shots,
            fractions=self.fractions,
            seeds=self.seeds,
            seed=self.seed,
            bootstrap=self.bootstrap,
            strict=self.strict,
        )
        return plan if self.metrics is None else replace(plan, metrics=self.metrics)


@dataclass(frozen=True)
class FinetuneRun:
    """What ``probe finetune`` did."""

    rows: list[ResultRow]
    results_file: str | None
    run_id: str
    checkpoints: list[str] = field(default_factory=list)
    reused: int = 0  # draws whose finished checkpoint was reused instead of trained again


def _pool(source: Source, rows: np.ndarray) -> Pool:
    ids = np.asarray(source.ids, dtype=object)[rows].astype(str)
    groups = None if source.groups is None else np.asarray(source.groups, dtype=object)[rows].astype(str)
    y = source.labels[rows].astype(np.int64)
    return Pool(X=np.zeros((rows.size, 0), np.float32), y=y, ids=ids, groups=groups)


def source_eval_data(
    source: Source,
    *,
    backbone: str,
    pooling: str,
    fingerprint: str,
    eval_split: str,
    setup: dict[str, Any] | None = None,
) -> tuple[EvalData, dict[str, np.ndarray]]:
    """The source's splits as an :class:`EvalData` without features (for drawing and scoring).

    ``setup`` is the rows' setup besides the head name (:func:`finetune_setup`).

    Returns:
        The data, and the source row indices of each split.

    Raises:
        ProtocolError: no training rows, or an empty evaluation split.
    """
    if eval_split not in ("val", "test"):
        raise ProtocolError(f"FinetunePlan(eval_split={eval_split!r}): use test or val")
    rows = {name: np.flatnonzero(source.splits == code) for code, name in enumerate(SPLITS)}
    if rows["train"].size == 0:
        raise ProtocolError(f"{source.spec} has no train split; fine-tuning needs training rows")
    if rows[eval_split].size == 0:
        raise ProtocolError(
            f"{source.spec} has no {eval_split} rows to evaluate; pass FinetunePlan(eval_split=val) or split it"
        )
    val_rows = rows["val"] if eval_split == "test" and rows["val"].size else None
    data = EvalData(
        dataset=source.name,
        backbone=backbone,
        pooling=pooling,
        store_path="",
        store_fingerprint=fingerprint,
        classes=tuple(source.classes),
        task=source.task,
        train=_pool(source, rows["train"]),
        val=None if val_rows is None else _pool(source, val_rows),
        test=_pool(source, rows[eval_split]),
        eval_split=eval_split,
        views=tuple(source.views or ()),
        view_kind=source.view_kind,
        fusion="mean" if source.views else "",
        dataset_fingerprint=source.fingerprint(),  # as a store of this source records it: same dataset identity
        dataset_spec=source.spec,
        setup=dict(setup or {}),
    )
    return data, {
        "train": rows["train"],
        "val": val_rows if val_rows is not None else np.zeros(0, np.int64),
        "eval": rows[eval_split],
    }


def run_finetune(
    source: str | SourceRequest,
    *,
    backbone: str | BackboneRequest,
    config: FinetuneConfig = FinetuneConfig(),
    plan: FinetunePlan = FinetunePlan(),
    results_dir: str | os.PathLike[str] | None = DEFAULT_DIR,
    checkpoint_dir: str | os.PathLike[str] = ckpt.DEFAULT_DIR,
    keep_checkpoints: bool = False,
    on_epoch_end: EpochHook | None = None,
) -> FinetuneRun:
    """Fine-tune ``backbone`` on every draw of ``plan`` and append one row per (draw, metric).

    ``source`` is a specification or a :class:`~probe.sources.SourceRequest` (data root, limit, slices of
    volumes, multi-label manifest options); ``backbone`` a name or a :class:`~probe.backbones.BackboneRequest`
    (local weights, random weights); the input size is ``config.image_size``. Multi-label sources train
    per-label sigmoid outputs with a masked BCE loss;
    multi-view sources (volumes, modalities) embed every present view and average the features.

    Each draw trains from the pretrained weights in its own checkpoint folder; a finished draw is
    not trained again (its stored test probabilities are scored), an interrupted one resumes at its
    last finished epoch. Finished draws drop their weight files unless ``keep_checkpoints``.

    Raises:
        ConfigError: bad options (unknown pooling, device, LoRA targets, ...).
        ProtocolError: a source fine-tuning cannot use.
    """
    from probe.runtime import default_workers, resolve_device, resolve_precision

    device = resolve_device(config.device, owner="FinetuneConfig")
    # Training needs loss scaling for fp16, so "auto" on a GPU that emulates bf16 trains in fp32.
    precision = resolve_precision(config.precision, device, allow_fp16=False, owner="FinetuneConfig")
    bb_req = _backbone_request(backbone, config)
    bb_req.check()
    src = SourceRequest.of(source).open()
    bb = bb_req.load()
    pooling = config.pooling or bb.default_poolings[0]
    if pooling not in bb.poolings:
        raise ConfigError(
            f"FinetuneConfig(pooling={pooling!r}) is not offered by {bb.name}; use one of {', '.join(bb.poolings)}"
        )
    if config.mode == "lora":
        resolve_lora_targets(bb.pooler, config.lora.targets)  # fail before any training starts
    probe_plan = plan.probe_plan()
    if results_dir is not None:
        check_results_location(results_dir)  # before any training
    base = _checkpoint_base(src, bb, config, pooling=pooling, precision=precision, eval_split=plan.eval_split)
    ev_data, rows = source_eval_data(
        src,
        backbone=bb.name,
        pooling=pooling,
        fingerprint="finetune:" + ckpt.run_key(base),
        eval_split=plan.eval_split,
        setup=finetune_setup(src, bb, config, pooling=pooling, precision=precision, key=ckpt.run_key(base)),
    )
    job = _Job(
        source=src, backbone=bb, pooling=pooling, config=config, rows=rows, n_classes=ev_data.n_classes,
        multilabel=task_kind(ev_data).family == "multi-label", device=device, precision=precision,
        workers=config.num_workers if config.num_workers is not None else default_workers(device),
        base=base, checkpoint_dir=Path(checkpoint_dir), keep_checkpoints=keep_checkpoints, on_epoch_end=on_epoch_end,
    )  # fmt: skip
    names = plan_metrics(ev_data, probe_plan)
    versions = library_versions(*VERSIONED)
    run_id = uuid.uuid4().hex[:12]
    out: list[ResultRow] = []
    saved: str | None = None
    folders: list[str] = []
    reused = 0
    for task in build_tasks(ev_data, probe_plan):
        folder, done, was_reused = _finished_draw(job, task)
        folders.append(str(folder))
        reused += was_reused
        params, proba, seconds = done["params"], np.asarray(done["proba"]), float(done["seconds"])
        ev = Evaluation(task=task, head=config.head_name, params=params, proba=proba, seconds=seconds)
        new = score(ev_data, ev, names=names, plan=probe_plan, run_id=run_id, versions=versions)
        if results_dir is not None:
            saved = results_location(results_dir, append_results(new, results_dir))  # per draw: kept on interruption
        out += new
    return FinetuneRun(rows=out, results_file=saved, run_id=run_id, checkpoints=folders, reused=reused)


def finetune_setup(
    source: Source, bb: Any, config: FinetuneConfig, *, pooling: str, precision: str, key: str
) -> dict[str, Any]:
    """The setup of a fine-tuning run's rows (:mod:`probe.setups`): what a store's rows name about their
    input (source resolution, image size, weights, precision, pooling; ``store`` is the run's checkpoint
    key) and every recipe setting that changes the trained weights (lr, epochs, LoRA rank, augmentation, ...)."""
    backbone = {"meta": bb.meta, "weights_fingerprint": bb.weights_fingerprint, "preprocess": bb.preprocess.to_dict()}
    inputs = input_setup(
        store=key, spec=source.spec, backbone=backbone, precision=None, pooling=pooling,
        decode=source.decode_options(),
    )  # fmt: skip
    recipe = {k: v for k, v in config.recipe().items() if k not in ("pooling", "image_size")}
    return {**inputs, **recipe, "precision": precision}  # the resolved training autocast precision


def _backbone_request(backbone: str | BackboneRequest, config: FinetuneConfig) -> BackboneRequest:
    """The backbone at the recipe's input size (``config.image_size``; a request's own size must agree)."""
    request = BackboneRequest.of(backbone)
    if config.image_size is None or request.image_size == config.image_size:
        return request
    if request.image_size is not None:
        raise ConfigError(
            f"BackboneRequest(image_size={request.image_size}) and FinetuneConfig(image_size={config.image_size}) "
            "differ; give the input size once, in FinetuneConfig"
        )
    return replace(request, image_size=config.image_size)


@dataclass(frozen=True)
class _Job:
    """What every draw of one ``run_finetune`` call shares."""

    source: Source
    backbone: Any  # probe.backbones.Backbone
    pooling: str
    config: FinetuneConfig
    rows: dict[str, np.ndarray]  # source rows of "train", "val" and "eval"
    n_classes: int
    multilabel: bool
    device: Any  # torch.device
    precision: str
    workers: int
    base: dict[str, Any]  # checkpoint-key inputs shared by every draw
    checkpoint_dir: Path
    keep_checkpoints: bool
    on_epoch_end: EpochHook | None


def _checkpoint_base(
    source: Source, bb: Any, config: FinetuneConfig, *, pooling: str, precision: str, eval_split: str
) -> dict[str, Any]:
    """Everything besides the draw that changes a run's weights or its stored predictions."""
    return {
        "finetune_version": FINETUNE_VERSION,
        "source": {
            "spec": source.spec,
            "content": source.fingerprint(),
            "decode": source.decode_options(),
            "views": None if source.views is None else {"kind": source.view_kind, "names": list(source.views)},
        },
        "weights": bb.weights_fingerprint,
        "preprocess": bb.preprocess.to_dict(),
        "pooling": pooling,
        "recipe": config.recipe(),
        "precision": precision,
        "eval_split": eval_split,
        "versions": library_versions("torch", "timm", "transformers", "peft", "open_clip_torch"),
    }


def _finished_draw(job: _Job, task: Any) -> tuple[Path, dict[str, Any], bool]:
    """(checkpoint folder, done payload, reused?) of one draw: its finished result, or a (resumed) training."""
    val_rows = job.rows["val"] if task.protocol == "full" and job.rows["val"].size else None
    key = ckpt.run_key(
        {**job.base, "draw": task.draw.digest, "seed": task.draw.seed, "early_stopping": val_rows is not None}
    )
    name = slug(f"{job.source.name}-{job.backbone.name}-{job.config.mode}")
    folder = ckpt.run_dir(job.checkpoint_dir, name=name, key=key)
    done = ckpt.read_done(folder)
    if done is not None and len(done["proba"]) == job.rows["eval"].size:
        return folder, done, True
    setup = TrainSetup(
        source=job.source, train_rows=job.rows["train"][task.draw.rows], val_rows=val_rows, n_classes=job.n_classes,
        preprocess=Preprocessor(job.backbone.preprocess), device=job.device, precision=job.precision,
        workers=job.workers, seed=task.draw.seed, folder=folder, multilabel=job.multilabel,
    )  # fmt: skip
    try:
        done = _train_one(
            job.backbone,
            setup,
            job.config,
            pooling=job.pooling,
            eval_rows=job.rows["eval"],
            on_epoch_end=job.on_epoch_end,
        )
    except ImageDecodeError as exc:  # the source's hint names extraction's --on-error, which fine-tuning lacks
        raise ImageDecodeError(
            f"{exc} (that option is probe extract's; fine-tuning reads every drawn image: replace the file "
            "or remove it from the data)"
        ) from None
    ckpt.write_done(folder, done)
    if not job.keep_checkpoints:
        ckpt.remove_states(folder)  # done.json keeps what the rows need; weights are GBs for ViTs
    return folder, done, False


def _train_one(
    bb: Any,
    setup: TrainSetup,
    config: FinetuneConfig,
    *,
    pooling: str,
    eval_rows: np.ndarray,
    on_epoch_end: EpochHook | None,
) -> dict[str, Any]:
    """Train a fresh copy of the backbone on one draw and predict the evaluation rows."""
    from probe.runtime import deterministic_training, device_scope

    # Same device, same result (a resumed run equals a straight one): deterministic kernels for this
    # draw only, the flags restored afterwards; the chosen GPU is the current one (pin-memory thread).
    with device_scope(setup.device), deterministic_training(setup.device, owner="FinetuneConfig"):
        try:
            return _train_and_predict(
                bb, setup, config, pooling=pooling, eval_rows=eval_rows, on_epoch_end=on_epoch_end
            )
        except RuntimeError as exc:
            if setup.device.type != "cuda" or "does not have a deterministic implementation" not in str(exc):
                raise
            raise ConfigError(
                f"FinetuneConfig(device={str(setup.device)!r}): {str(exc).splitlines()[0]} - fine-tuning on CUDA runs "
                "in strict deterministic mode so that a resumed run equals an uninterrupted one; the usual cause is a "
                "ViT whose position embeddings are interpolated (bicubic) to another image size: use "
                "FinetuneConfig(image_size=None) (the backbone's own size) or FinetuneConfig(device=cpu)"
            ) from None


def _train_and_predict(
    bb: Any,
    setup: TrainSetup,
    config: FinetuneConfig,
    *,
    pooling: str,
    eval_rows: np.ndarray,
    on_epoch_end: EpochHook | None,
) -> dict[str, Any]:
    import torch

    if setup.device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(setup.device)
    torch.manual_seed(setup.seed)  # LoRA's own initialisation draws from the global generator
    model = build_classifier(
        copy.deepcopy(bb.pooler),
        dim=bb.poolings[pooling],
        n_classes=setup.n_classes,
        config=config,
        pooling=pooling,
        seed=setup.seed,
    )
    model.to(setup.device)
    if bb.channels_last:
        model.to(memory_format=torch.channels_last)
        model.channels_last = True
    counts = count_params(model)
    outcome = train_classifier(model, setup, config, on_epoch_end=on_epoch_end)
    t0 = time.perf_counter()
    proba = predict_proba(model, setup, eval_rows, batch_size=config.batch_size * 2)
    extra = _thresholds(model, setup, config) if setup.multilabel else {}
    params: dict[str, Any] = {
        **config.recipe(),
        "pooling": pooling,
        "image_size": bb.preprocess.image_size,
        "precision": setup.precision,
        "device": str(setup.device),
        "selection": "val-early-stopping" if setup.val_rows is not None else "fixed-budget",
        "epochs_planned": outcome.epochs_planned,
        "epochs_run": outcome.epochs_run,
        "best_epoch": outcome.best_epoch,
        "steps": outcome.steps,
        "resumed_from_epoch": outcome.resumed_from_epoch,
        "train_seconds": outcome.train_seconds,
        "history": outcome.history,
        **counts.to_dict(),
        **peak_memory(setup.device),
    }
    if config.mode == "lora":
        params["lora_targets"] = len(getattr(model.pooler, "lora_targets", []))
    if outcome.lp:
        params["lp"] = outcome.lp
    if setup.source.views:
        params["views"] = {"kind": setup.source.view_kind, "n": len(setup.source.views), "fusion": "mean"}
    params.update(extra)
    return {"proba": proba.tolist(), "params": params, "seconds": outcome.train_seconds + time.perf_counter() - t0}


def _thresholds(model: Any, setup: TrainSetup, config: FinetuneConfig) -> dict[str, Any]:
    """Multi-label F1 thresholds: tuned on validation for full data, else on the training draw itself."""
    from probe.metrics.multilabel import tune_thresholds

    rows, source = (setup.val_rows, "val") if setup.val_rows is not None else (setup.train_rows, "train-draw")
    proba = predict_proba(model, setup, rows, batch_size=config.batch_size * 2)
    y = setup.source.labels[rows].astype(np.int64)
    return {"thresholds": tune_thresholds(y, proba).tolist(), "threshold_source": source}


def parse_targets(text: str | None) -> tuple[str, ...] | None:
    """``"qkv,fc1"`` → ``("qkv", "fc1")``; empty → None (discover)."""
    if not text:
        return None
    return tuple(t.strip() for t in text.split(",") if t.strip())
