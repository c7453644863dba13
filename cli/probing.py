"""``probe curve``, ``probe linear``, ``probe knn`` and ``probe fewshot``: heads on stored features."""

from __future__ import annotations

from typing import TYPE_CHECKING, Annotated

import typer

from cli._common import command_line, emit_json, split_list, user_errors
from cli.options import (
    Backbone,
    Blank,
    Bootstrap,
    Device,
    ImageSize,
    Json,
    K,
    LabelColumns,
    Metrics,
    NoSave,
    Pooling,
    Preprocessing,
    Progress,
    Results,
    Seed,
    Seeds,
    SliceAxis,
    Slices,
    Split,
    Store,
    StoreImageSize,
    StoreRoot,
    Strict,
    Uncertain,
    Vote,
    backbone_request,
    parse_numbers,
    parse_shots,
    source_request,
)
from probe.errors import ConfigError
from probe.evaluate.defaults import DEFAULT_METRICS, DEFAULT_PREPROCESSING, DEFAULT_SEEDS

if TYPE_CHECKING:
    from probe.evaluate import ProbeRun, StoreChoice


def finish(run: ProbeRun, *, json_out: bool) -> None:
    """Print the rows as JSON, or a short table and where they went."""
    rows = [r.to_dict() for r in run.rows]
    if json_out:
        emit_json({"results": rows, "results_file": run.results_file, "stores": run.stores, "run_id": run.run_id})
        return
    from probe.report.summary import format_table

    typer.echo(format_table(rows))
    where = f"appended {len(rows)} rows to {run.results_file}" if run.results_file else f"{len(rows)} rows (not saved)"
    typer.echo(f"{where}; `probe report {run.results_file or 'results/'}` draws the curves")


def _choice(store: str | None, store_root: str, image_size: int | None, pooling: str | None, split: str) -> StoreChoice:
    from probe.evaluate import StoreChoice

    return StoreChoice(store=store, store_root=store_root, image_size=image_size, pooling=pooling, eval_split=split)


@user_errors
def curve_command(
    data: Annotated[
        list[str], typer.Argument(help="one or more sources: medmnist:<name>[@size], folder:<dir>, csv:<manifest.csv>")
    ],
    backbone: Annotated[
        str, typer.Option(help="comma list of backbones; each is extracted once")
    ] = "efficientnet_lite0",
    heads: Annotated[
        str, typer.Option(help="comma list of knn, linear, prototype, labelspread (semi-supervised)")
    ] = "knn,linear,prototype",
    shots: Annotated[str, typer.Option(help="labels per class, comma list; 'all' = whole train split")] = (
        "1,2,4,8,16,32,64,all"
    ),
    fractions: Annotated[str | None, typer.Option(help="stratified label fractions, e.g. 0.01,0.1,1.0")] = None,
    seeds: Seeds = DEFAULT_SEEDS,
    k: K = "20",
    spread_neighbors: Annotated[int, typer.Option(help="labelspread: kNN-graph neighbours per train row")] = 20,
    spread_alpha: Annotated[float, typer.Option(help="labelspread: spreading strength in (0, 1)")] = 0.99,
    data_root: Annotated[
        str | None, typer.Option(envvar="PROBE_DATA_ROOT", help="folder holding dataset files")
    ] = None,
    image_size: ImageSize = None,
    weights: Annotated[str | None, typer.Option(help="local .safetensors/.pth weights (air-gapped sites)")] = None,
    random_weights: Annotated[bool, typer.Option(help="random init instead of pretrained (smoke tests)")] = False,
    limit: Annotated[int | None, typer.Option(help="extract only the first N samples of each split")] = None,
    batch_size: Annotated[int, typer.Option(help="extraction: images per forward pass")] = 64,
    on_error: Annotated[str, typer.Option(help="extraction: a corrupt image raises, or skip (row masked)")] = "raise",
    precision: Annotated[str, typer.Option(help="extraction: auto (bf16 on CUDA, fp32 on CPU), fp32, bf16, fp16")] = (
        "auto"
    ),
    resolution: Annotated[str, typer.Option(help="extraction: resize the whole image, or pad it onto a canvas")] = (
        "resize"
    ),
    label_columns: LabelColumns = None,
    uncertain: Uncertain = None,
    blank: Blank = None,
    slice_axis: SliceAxis = None,
    slices: Slices = None,
    fusion: Annotated[
        str | None,
        typer.Option(
            help="multi-view stores: mean, max, meanmax or concat (default: mean for slices, concat for modalities)"
        ),
    ] = None,
    modality_dropout: Annotated[
        float, typer.Option(help="multi-modal: the linear head also trains on copies with modalities dropped (p)")
    ] = 0.0,
    ablate: Annotated[
        bool, typer.Option(help="multi-modal: also score the test split with each modality removed")
    ] = True,
    pooling: Pooling = None,
    store_root: StoreRoot = "embeddings",
    results: Results = "results",
    no_save: NoSave = False,
    seed: Seed = 0,
    preprocessing: Preprocessing = DEFAULT_PREPROCESSING,
    metrics: Metrics = ",".join(DEFAULT_METRICS),
    bootstrap: Bootstrap = 1000,
    strict: Strict = False,
    device: Device = "auto",
    split: Split = "test",
    progress: Progress = True,
    json_out: Json = False,
) -> None:
    """Label-efficiency curve: extract each DATA once per backbone (when missing), then every head × shots × seeds."""
    from probe.evaluate import KNNConfig, LabelSpreadConfig, PlanConfig, ViewConfig, run_curves
    from probe.extraction import ExtractConfig

    plan = PlanConfig(
        heads=split_list(heads) or (),
        shots=parse_shots(shots),
        fractions=parse_numbers(fractions, option="--fractions"),
        seeds=seeds,
        seed=seed,
        preprocessing=preprocessing,
        metrics=split_list(metrics) or DEFAULT_METRICS,
        bootstrap=bootstrap,
        strict=strict,
        device=device,
        knn=KNNConfig(k=parse_numbers(k, option="--k", kind=int)),
        labelspread=LabelSpreadConfig(n_neighbors=spread_neighbors, alpha=spread_alpha),
        views=ViewConfig(fusion=fusion, modality_dropout=modality_dropout, ablate=ablate),
    )
    run = run_curves(
        [
            source_request(
                spec, data_root=data_root, limit=limit, slices=slices, slice_axis=slice_axis,
                label_columns=label_columns, uncertain=uncertain, blank=blank,
            )
            for spec in data
        ],
        backbones=[
            backbone_request(
                name, weights=weights, random_weights=random_weights, image_size=image_size, resolution=resolution
            )
            for name in split_list(backbone) or ()
        ],
        plan=plan,
        choice=_choice(None, store_root, image_size, pooling, split),
        results_dir=None if no_save else results,
        extract_config=ExtractConfig(
            device=device, precision=precision, batch_size=batch_size, poolings=(pooling,) if pooling else None,
            on_error=on_error,
            progress=progress,
        ),
        command=command_line(),
        progress=progress,
    )  # fmt: skip
    finish(run, json_out=json_out)


@user_errors
def linear_command(
    data: Annotated[str, typer.Argument(help="source the store was extracted from")],
    backbone: Backbone = "efficientnet_lite0",
    c: Annotated[
        str, typer.Option("--c", "--C", help="inverse L2 strength C, or auto (val grid, coarse to fine)")
    ] = "auto",
    refit: Annotated[str, typer.Option(help="after choosing C on val: refit on train or train+val")] = "train",
    shots: Annotated[str, typer.Option(help="labels per class (all = full data)")] = "all",
    seeds: Seeds = DEFAULT_SEEDS,
    pooling: Pooling = None,
    store: Store = None,
    store_root: StoreRoot = "embeddings",
    image_size: StoreImageSize = None,
    results: Results = "results",
    no_save: NoSave = False,
    seed: Seed = 0,
    preprocessing: Preprocessing = DEFAULT_PREPROCESSING,
    metrics: Metrics = ",".join(DEFAULT_METRICS),
    bootstrap: Bootstrap = 1000,
    device: Device = "auto",
    split: Split = "test",
    progress: Progress = True,
    json_out: Json = False,
) -> None:
    """Linear probe (multinomial logistic regression) on stored features; full data by default."""
    from probe.evaluate import LinearConfig, PlanConfig, run_probes

    C: float | str = "auto" if c == "auto" else parse_numbers(c, option="--c")[0]
    plan = PlanConfig(
        heads=("linear",),
        shots=parse_shots(shots),
        seeds=seeds,
        seed=seed,
        preprocessing=preprocessing,
        bootstrap=bootstrap,
        device=device,
        metrics=split_list(metrics) or DEFAULT_METRICS,
        linear=LinearConfig(C=C, refit=refit, selection="auto" if C == "auto" else "fixed"),
    )
    run = run_probes(
        data,
        backbone=backbone,
        plan=plan,
        choice=_choice(store, store_root, image_size, pooling, split),
        results_dir=None if no_save else results,
        command=command_line(),
        progress=progress,
    )
    finish(run, json_out=json_out)


@user_errors
def knn_command(
    data: Annotated[str, typer.Argument(help="source the store was extracted from")],
    backbone: Backbone = "efficientnet_lite0",
    k: K = "20",
    vote: Vote = "temperature",
    temperature: Annotated[float, typer.Option(help="T of the temperature vote")] = 0.07,
    shots: Annotated[str, typer.Option(help="labels per class (all = full data)")] = "all",
    seeds: Seeds = DEFAULT_SEEDS,
    pooling: Pooling = None,
    store: Store = None,
    store_root: StoreRoot = "embeddings",
    image_size: StoreImageSize = None,
    results: Results = "results",
    no_save: NoSave = False,
    seed: Seed = 0,
    metrics: Metrics = ",".join(DEFAULT_METRICS),
    bootstrap: Bootstrap = 1000,
    device: Device = "auto",
    split: Split = "test",
    progress: Progress = True,
    json_out: Json = False,
) -> None:
    """k-nearest-neighbour probe (cosine, FAISS) on stored features; every k from one search."""
    from probe.evaluate import KNNConfig, PlanConfig, run_probes

    plan = PlanConfig(
        heads=("knn",),
        shots=parse_shots(shots),
        seeds=seeds,
        seed=seed,
        bootstrap=bootstrap,
        device=device,
        metrics=split_list(metrics) or DEFAULT_METRICS,
        knn=KNNConfig(k=parse_numbers(k, option="--k", kind=int), vote=vote, temperature=temperature),
    )
    run = run_probes(
        data,
        backbone=backbone,
        plan=plan,
        choice=_choice(store, store_root, image_size, pooling, split),
        results_dir=None if no_save else results,
        command=command_line(),
        progress=progress,
    )
    finish(run, json_out=json_out)


@user_errors
def fewshot_command(
    data: Annotated[str, typer.Argument(help="source the store was extracted from")],
    backbone: Backbone = "efficientnet_lite0",
    shots: Annotated[str, typer.Option(help="support samples per class, comma list")] = "1,5,10",
    episodes: Annotated[int, typer.Option(help="episodes per shot level (mean and CI across them)")] = 100,
    queries: Annotated[int | None, typer.Option(help="query samples per class per episode (default: all)")] = None,
    heads: Annotated[str, typer.Option(help="comma list of prototype, knn, linear, labelspread")] = "prototype",
    method: Annotated[
        str, typer.Option(help="prototype: simpleshot (published CL2N), cosine or centroid")
    ] = "simpleshot",
    pooling: Pooling = None,
    store: Store = None,
    store_root: StoreRoot = "embeddings",
    image_size: StoreImageSize = None,
    results: Results = "results",
    no_save: NoSave = False,
    seed: Seed = 0,
    preprocessing: Preprocessing = DEFAULT_PREPROCESSING,
    metrics: Metrics = ",".join(DEFAULT_METRICS),
    bootstrap: Annotated[
        int, typer.Option(help="bootstrap resamples of each episode's query set for a per-row CI (0: none)")
    ] = 0,
    strict: Strict = False,
    device: Device = "auto",
    split: Split = "test",
    progress: Progress = True,
    json_out: Json = False,
) -> None:
    """Few-shot episodes: seeded support draws and query sets, scored per episode."""
    from probe.evaluate import PlanConfig, PrototypeConfig, run_probes

    if episodes < 1:
        raise ConfigError(f"--episodes {episodes}: use at least 1 episode (100 give a tight mean)")
    plan = PlanConfig(
        heads=split_list(heads) or (),
        shots=parse_shots(shots),
        seeds=1,
        seed=seed,
        preprocessing=preprocessing,
        episodes=episodes,
        queries=queries,
        metrics=split_list(metrics) or DEFAULT_METRICS,
        bootstrap=bootstrap,
        strict=strict,
        device=device,
        prototype=PrototypeConfig(method=method),
    )
    run = run_probes(
        data,
        backbone=backbone,
        plan=plan,
        choice=_choice(store, store_root, image_size, pooling, split),
        results_dir=None if no_save else results,
        command=command_line(),
        progress=progress,
    )
    finish(run, json_out=json_out)
