"""``probe finetune``: full / LoRA / BitFit / LP-FT fine-tuning on the probes' draws, as result rows."""

from __future__ import annotations

from typing import Annotated

import typer

from cli._common import emit_json, split_list, user_errors
from cli.options import (
    Blank,
    ImageSize,
    LabelColumns,
    SliceAxis,
    Slices,
    Uncertain,
    backbone_request,
    parse_numbers,
    parse_shots,
    source_request,
)
from probe.errors import ConfigError
from probe.evaluate.defaults import DEFAULT_METRICS


@user_errors
def finetune_command(
    data: Annotated[str, typer.Argument(help="medmnist:<name>[@size], folder:<dir> or csv:<manifest.csv>")],
    backbone: Annotated[
        str, typer.Option(help="registered name (probe models), timm:<model> or hf:<repo>")
    ] = "efficientnet_lite0",
    mode: Annotated[str, typer.Option(help="full, lora, bitfit (biases + head) or lp-ft (probe, then full)")] = "full",
    shots: Annotated[str, typer.Option(help="labels per class, comma list; 'all' = whole train split")] = "8,64,all",
    fractions: Annotated[str | None, typer.Option(help="stratified label fractions, e.g. 0.01,0.1")] = None,
    seeds: Annotated[int, typer.Option(help="draws per shot level (the probes' seeds)")] = 3,
    seed: Annotated[int, typer.Option(help="first seed")] = 0,
    epochs: Annotated[int, typer.Option(help="epochs (upper bound with early stopping)")] = 20,
    min_steps: Annotated[int, typer.Option(help="n-shot runs: at least this many optimiser steps")] = 50,
    batch_size: Annotated[int, typer.Option(help="samples per forward pass (x views for volumes/modalities)")] = 32,
    grad_accum: Annotated[int, typer.Option(help="forward passes per optimiser step")] = 1,
    lr: Annotated[
        float | None, typer.Option(help="peak backbone lr (default 1e-4 full/lp-ft, 1e-3 lora/bitfit)")
    ] = None,
    head_lr: Annotated[float, typer.Option(help="peak learning rate of the linear head")] = 1e-3,
    weight_decay: Annotated[float, typer.Option(help="AdamW weight decay (not on biases/norms)")] = 0.05,
    warmup_frac: Annotated[float, typer.Option(help="share of steps with linear warm-up before cosine decay")] = 0.1,
    layer_decay: Annotated[float | None, typer.Option(help="layer-wise lr decay, e.g. 0.75 (default off)")] = None,
    label_smoothing: Annotated[float, typer.Option(help="cross-entropy label smoothing")] = 0.0,
    class_balanced: Annotated[bool, typer.Option(help="weight the loss by inverse class frequency")] = False,
    norm: Annotated[str, typer.Option(help="BatchNorm statistics: frozen or train")] = "frozen",
    patience: Annotated[int, typer.Option(help="'all' shots: epochs without val gain before stopping (0: off)")] = 5,
    select_metric: Annotated[
        str, typer.Option(help="val metric for early stopping (multi-label: macro-AUROC)")
    ] = "balanced_accuracy",
    augment: Annotated[bool, typer.Option(help="flip / small rotation / conservative resized crop")] = True,
    hflip: Annotated[float, typer.Option(help="left-right flip probability")] = 0.5,
    vflip: Annotated[float, typer.Option(help="up-down flip probability")] = 0.0,
    rotate: Annotated[float, typer.Option(help="max rotation in degrees")] = 10.0,
    crop_scale: Annotated[str, typer.Option(help="resized-crop area range low,high")] = "0.85,1.0",
    lora_rank: Annotated[int, typer.Option(help="LoRA rank r")] = 8,
    lora_alpha: Annotated[int, typer.Option(help="LoRA alpha (updates scaled by alpha/r)")] = 16,
    lora_dropout: Annotated[float, typer.Option(help="LoRA dropout")] = 0.0,
    lora_targets: Annotated[
        str | None, typer.Option(help="comma list of module names/suffixes (default: discovered)")
    ] = None,
    pooling: Annotated[str | None, typer.Option(help="backbone pooling fed to the head")] = None,
    image_size: ImageSize = None,
    precision: Annotated[str, typer.Option(help="auto (bf16 on CUDA), fp32 or bf16")] = "auto",
    device: Annotated[str, typer.Option(help="auto, cpu or cuda[:N]")] = "auto",
    num_workers: Annotated[int | None, typer.Option(help="DataLoader workers")] = None,
    data_root: Annotated[
        str | None, typer.Option(envvar="PROBE_DATA_ROOT", help="folder holding dataset files")
    ] = None,
    weights: Annotated[str | None, typer.Option(help="local .safetensors/.pth weights (air-gapped sites)")] = None,
    random_weights: Annotated[bool, typer.Option(help="random init instead of pretrained (smoke tests)")] = False,
    limit: Annotated[int | None, typer.Option(help="use only the first N samples of each split")] = None,
    slices: Slices = None,
    slice_axis: SliceAxis = None,
    label_columns: LabelColumns = None,
    uncertain: Uncertain = None,
    blank: Blank = None,
    checkpoints: Annotated[str, typer.Option(help="folder of per-epoch checkpoints (resume)")] = "checkpoints",
    keep_checkpoints: Annotated[
        bool, typer.Option(help="keep finished draws' weights (default: only done.json)")
    ] = False,
    results: Annotated[str, typer.Option(help="results folder the rows are appended to")] = "results",
    no_save: Annotated[bool, typer.Option(help="do not append the rows to the results table")] = False,
    metrics: Annotated[str, typer.Option(help="comma list; qwk is added for ordinal sets")] = ",".join(DEFAULT_METRICS),
    bootstrap: Annotated[int, typer.Option(help="bootstrap resamples for each row's 95 % CI")] = 1000,
    strict: Annotated[bool, typer.Option(help="error when a class has fewer samples than the shots")] = False,
    split: Annotated[str, typer.Option(help="evaluated split: test, or val while developing")] = "test",
    progress: Annotated[bool, typer.Option(help="progress bar with loss and val metric")] = True,
    json_out: Annotated[bool, typer.Option("--json", help='print {"results": [row, ...]}')] = False,
) -> None:
    """Fine-tune BACKBONE on DATA on the probes' own draws (same ids per seed and shots); head=finetune-<mode>."""
    from probe.finetune import AugmentConfig, FinetuneConfig, FinetunePlan, LoraSettings, parse_targets, run_finetune

    low_high = parse_numbers(crop_scale, option="--crop-scale")
    if len(low_high) != 2:
        raise ConfigError(f"--crop-scale {crop_scale!r} must be two numbers low,high such as 0.85,1.0")
    config = FinetuneConfig(
        mode=mode,
        pooling=pooling,
        epochs=epochs,
        min_steps=min_steps,
        batch_size=batch_size,
        grad_accum=grad_accum,
        lr=lr,
        head_lr=head_lr,
        weight_decay=weight_decay,
        warmup_frac=warmup_frac,
        layer_decay=layer_decay,
        label_smoothing=label_smoothing,
        class_balanced=class_balanced,
        norm=norm,
        patience=patience,
        select_metric=select_metric,
        precision=precision,
        device=device,
        num_workers=num_workers,
        image_size=image_size,
        augment=AugmentConfig(
            enabled=augment,
            hflip=hflip,
            vflip=vflip,
            rotate_degrees=rotate,
            crop_scale=(low_high[0], low_high[1]),
        ),
        lora=LoraSettings(rank=lora_rank, alpha=lora_alpha, dropout=lora_dropout, targets=parse_targets(lora_targets)),
        progress=progress and not json_out,
    )
    plan = FinetunePlan(
        shots=parse_shots(shots),
        fractions=parse_numbers(fractions, option="--fractions"),
        seeds=seeds,
        seed=seed,
        metrics=split_list(metrics),
        bootstrap=bootstrap,
        strict=strict,
        eval_split=split,
    )
    run = run_finetune(
        source_request(
            data,
            data_root=data_root,
            limit=limit,
            slices=slices,
            slice_axis=slice_axis,
            label_columns=label_columns,
            uncertain=uncertain,
            blank=blank,
        ),
        backbone=backbone_request(backbone, weights=weights, random_weights=random_weights),
        config=config,
        plan=plan,
        results_dir=None if no_save else results,
        checkpoint_dir=checkpoints,
        keep_checkpoints=keep_checkpoints,
    )
    rows = [r.to_dict() for r in run.rows]
    if json_out:
        emit_json(
            {"results": rows, "results_file": run.results_file, "checkpoints": run.checkpoints, "run_id": run.run_id}
        )
        return
    from probe.report.summary import format_table

    typer.echo(format_table(rows))
    where = f"appended {len(rows)} rows to {run.results_file}" if run.results_file else f"{len(rows)} rows (not saved)"
    typer.echo(f"{where}; {run.reused} finished draw(s) reused from {checkpoints}/")
