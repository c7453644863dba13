"""``probe extract``: embed a data source with a frozen backbone into the store."""

from __future__ import annotations

from enum import Enum
from typing import Annotated

import typer

from cli._common import command_line, emit_json, split_list, user_errors
from cli.options import Blank, ImageSize, LabelColumns, SliceAxis, Slices, Uncertain, backbone_request, source_request


class Resolution(str, Enum):
    resize = "resize"
    pad = "pad"


class Precision(str, Enum):
    auto = "auto"
    fp32 = "fp32"
    bf16 = "bf16"
    fp16 = "fp16"


class OnError(str, Enum):
    raise_ = "raise"
    skip = "skip"


class Rgba(str, Enum):
    composite = "composite"
    reject = "reject"


class StoreDtype(str, Enum):
    auto = "auto"
    float32 = "float32"
    float16 = "float16"


class Decode(str, Enum):
    exact = "exact"
    fast = "fast"


class Compression(str, Enum):
    none = "none"
    lz4 = "lz4"


@user_errors
def extract_command(
    data: Annotated[str, typer.Argument(help="medmnist:<name>[@size], folder:<dir> or csv:<manifest.csv>")],
    backbone: Annotated[
        str, typer.Option(help="registered name (probe models), timm:<model> or hf:<repo>")
    ] = "efficientnet_lite0",
    pooling: Annotated[
        str | None, typer.Option(help="comma list, e.g. cls,mean,cls+mean,last4 (default: the backbone's)")
    ] = None,
    data_root: Annotated[
        str | None, typer.Option(envvar="PROBE_DATA_ROOT", help="folder holding dataset files")
    ] = None,
    weights: Annotated[str | None, typer.Option(help="local .safetensors/.pth weights (air-gapped sites)")] = None,
    random_weights: Annotated[bool, typer.Option(help="random init instead of pretrained (smoke tests)")] = False,
    image_size: ImageSize = None,
    resolution: Annotated[
        Resolution, typer.Option(help="resize the whole image, or pad it onto a canvas")
    ] = Resolution.resize,
    batch_size: Annotated[int, typer.Option(help="images per forward pass")] = 64,
    num_workers: Annotated[
        int | None, typer.Option(help="DataLoader workers (default: up to 8 on CUDA; 0 on CPUs with <= 4 cores)")
    ] = None,
    device: Annotated[str, typer.Option(help="auto, cpu, cuda or cuda:N")] = "auto",
    precision: Annotated[
        Precision, typer.Option(help="autocast precision (auto: bf16 on CUDA, fp32 on CPU)")
    ] = Precision.auto,
    store_root: Annotated[str, typer.Option(envvar="PROBE_STORE_ROOT", help="folder holding stores")] = "embeddings",
    store: Annotated[
        str | None, typer.Option(help="explicit store path (default: derived from the fingerprint)")
    ] = None,
    store_dtype: Annotated[
        StoreDtype, typer.Option(help="feature dtype on disk (auto: float16 for patch grids)")
    ] = StoreDtype.auto,
    compression: Annotated[Compression, typer.Option(help="chunk compression")] = Compression.none,
    chunk_rows: Annotated[
        int | None, typer.Option(help="rows per chunk (default 4096, a multiple of --batch-size)")
    ] = None,
    on_error: Annotated[
        OnError, typer.Option(help="corrupt image: raise, or skip (row masked in the store)")
    ] = OnError.raise_,
    rgba: Annotated[Rgba, typer.Option(help="alpha channel: composite on black, or reject")] = Rgba.composite,
    decode: Annotated[
        Decode, typer.Option(help="JPEG files: exact (full size), or fast (reduced-size decode; a new store)")
    ] = Decode.exact,
    limit: Annotated[int | None, typer.Option(help="keep the first N samples of each split")] = None,
    slice_axis: SliceAxis = None,
    slices: Slices = None,
    label_columns: LabelColumns = None,
    uncertain: Uncertain = None,
    blank: Blank = None,
    overwrite: Annotated[bool, typer.Option(help="replace an existing store")] = False,
    repair: Annotated[
        bool, typer.Option(help="read back every chunk of the store and recompute only the damaged ones")
    ] = False,
    progress: Annotated[bool, typer.Option(help="progress bar on stderr")] = True,
    shard: Annotated[
        str | None,
        typer.Option(help="i/n: compute chunks c with c % n == i (job arrays); the last shard completes the store"),
    ] = None,
    json_out: Annotated[bool, typer.Option("--json", help="print one JSON object instead of prose")] = False,
) -> None:
    """Extract pooled features of DATA with a frozen backbone into an embedding store (resumable)."""
    from probe.extraction import ExtractConfig, extract

    config = ExtractConfig(
        poolings=split_list(pooling),
        batch_size=batch_size,
        num_workers=num_workers,
        device=device,
        precision=precision.value,
        store_root=store_root,
        store=store,
        store_dtype=store_dtype.value,
        compression=compression.value,
        chunk_rows=chunk_rows,
        on_error=on_error.value,
        overwrite=overwrite,
        repair=repair,
        progress=progress,
        shard=shard,
        decode=decode.value,
    )
    result = extract(
        source_request(
            data, data_root=data_root, rgba=rgba.value, limit=limit, slices=slices, slice_axis=slice_axis,
            label_columns=label_columns, uncertain=uncertain, blank=blank,
        ),
        backbone=backbone_request(
            backbone, weights=weights, random_weights=random_weights, image_size=image_size,
            resolution=resolution.value,
        ),
        config=config,
        command=command_line(),
    )  # fmt: skip
    if json_out:
        emit_json(result.to_json())
        return
    dims = ", ".join(f"{k} ({v})" for k, v in result.poolings.items())
    if result.noop:
        state = "every chunk reads back intact" if repair else "already complete, nothing to do"
        typer.echo(f"{state}: {result.store} ({result.rows} rows; {dims})")
        return
    if not result.complete:
        typer.echo(
            f"shard {result.writer} wrote its chunks of {result.store} ({result.rows_computed} rows); "
            f"{result.pending} chunk(s) of other shards remain: the last shard to finish marks the store complete"
        )
        return
    resumed = f", resumed at row {result.resumed_from}" if result.resumed_from else ""
    skipped = f", {result.skipped} skipped" if result.skipped else ""
    if result.repaired:
        resumed = f", recomputed damaged chunks {','.join(map(str, result.repaired))}"
    typer.echo(
        f"wrote {result.store}: {result.rows} rows{skipped}; poolings {dims}{resumed}; "
        f"{result.images_computed} images in {result.seconds:.1f} s ({result.images_per_second:.1f} img/s, "
        f"{result.device}, {result.precision})"
    )
