"""Run a source through a frozen backbone once, writing pooled features into an embedding store.

Batches never cross a chunk boundary and chunks are a whole number of batches, so a resumed run
feeds the model exactly the batches an uninterrupted run would, and its features are identical
(same device and precision). Finished chunks go to a background writer thread, so the model does
not wait on storage.
"""

from __future__ import annotations

import contextlib
import logging
import os
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from datetime import datetime, timezone
from typing import Any

import numpy as np
import torch

from probe.backbones import Backbone, BackboneRequest
from probe.distributed import RankGroup, Team, find_team, parse_shard, rank_device, rank_group
from probe.errors import ConfigError, StoreError
from probe.extract_loop import run_chunks, source_items
from probe.provenance import canonical_hash, library_versions
from probe.runtime import PRECISIONS, resolve_device, resolve_precision
from probe.sources import SPLITS, Source, SourceRequest
from probe.store import (
    COMPRESSIONS,
    DEFAULT_ROOT,
    FORMAT,
    STORE_DTYPES,
    StoreLayout,
    StoreWriter,
    check_writable,
    existing_store_attrs,
    open_store,
    store_lock,
    store_path,
    verify_store,
)
from probe.store_check import ROW_ARRAYS
from probe.store_url import check_url, is_url

__all__ = ["ExtractConfig", "ExtractResult", "extract", "extract_embeddings", "source_items"]

ON_ERROR: tuple[str, ...] = ("raise", "skip")
DECODES: tuple[str, ...] = ("exact", "fast")
MIN_CHUNK_ROWS = 4096
DENSE_CHUNK_BYTES = 64 * 2**20  # about this much per chunk of a store of patch grids
#: With several writers (torchrun ranks, shards) a store gets at least this many chunks per writer when it
#: has the rows for it, so that chunk ownership spreads the work (a 12k-row store at 4096 rows per chunk
#: would keep 5 of 8 GPUs idle) and the last chunk leaves at most a quarter of a writer's share unbalanced.
CHUNKS_PER_WRITER = 4
#: Bumped whenever decoding, preprocessing or pooling code changes the numbers it produces, so
#: stores made by older code get a new fingerprint instead of being reused.
EXTRACTION_VERSION = 2


@dataclass(frozen=True)
class ExtractConfig:
    """Options of one extraction run; those that change the numbers enter the store fingerprint."""

    poolings: tuple[str, ...] | None = None  # poolings to store; None: the backbone's defaults
    batch_size: int = 64  # images per forward pass
    num_workers: int | None = None  # DataLoader workers; None: see default_workers()
    device: str = "auto"  # "auto" (CUDA when present), "cpu", "cuda", "cuda:1", ...
    precision: str = "auto"  # autocast: "auto" (bf16 on CUDA >= 8.0, fp16 on older GPUs, fp32 on CPU), "fp32", ...
    store_root: str = DEFAULT_ROOT  # folder (or URL) holding stores
    store: str | None = None  # explicit store path, instead of one derived from the fingerprint
    store_dtype: str = "auto"  # on disk: float32, float16, or auto (float16 for patch grids, else float32)
    compression: str = "none"  # "none" or "lz4"
    chunk_rows: int | None = None  # rows per chunk; None: resolved_chunk_rows (about 4096 images, fewer per writer)
    on_error: str = "raise"  # corrupt/missing image: "raise", or "skip" (row masked invalid)
    overwrite: bool = False  # replace an existing store
    repair: bool = False  # read back every chunk of an existing store and recompute only the damaged ones
    progress: bool = True  # progress bar on stderr
    decode: str = "exact"  # JPEG files: "exact" (full-size decode), or "fast" (reduced-size decode; fingerprinted)
    shard: str | None = None  # "i/n": compute only chunks c with c % n == i (job arrays); None: all

    def __post_init__(self) -> None:
        if self.batch_size < 1:
            raise ConfigError(
                f"ExtractConfig(batch_size={self.batch_size}) is invalid; use a positive number such as 64"
            )
        if self.num_workers is not None and self.num_workers < 0:
            raise ConfigError(f"ExtractConfig(num_workers={self.num_workers}) is invalid; use 0 or more")
        if self.precision not in PRECISIONS:
            raise ConfigError(
                f"ExtractConfig(precision={self.precision!r}) is invalid; use one of {', '.join(PRECISIONS)}"
            )
        if self.store_dtype not in (*STORE_DTYPES, "auto"):
            raise ConfigError(
                f"ExtractConfig(store_dtype={self.store_dtype!r}) is invalid; use auto or {', '.join(STORE_DTYPES)}"
            )
        if self.compression not in COMPRESSIONS:
            raise ConfigError(
                f"ExtractConfig(compression={self.compression!r}) is invalid; use one of {', '.join(COMPRESSIONS)}"
            )
        if self.repair and self.overwrite:
            raise ConfigError(
                "ExtractConfig(repair=True) keeps a store's intact chunks and overwrite=True replaces them all; "
                "pass one of them"
            )
        if self.shard is not None:
            parse_shard(self.shard)
            if self.overwrite or self.repair:
                raise ConfigError(
                    f"ExtractConfig(shard={self.shard!r}) cannot replace or repair a store other shards write; "
                    "run the overwrite or repair once without a shard, then start the shards"
                )
        if self.decode not in DECODES:
            raise ConfigError(f"ExtractConfig(decode={self.decode!r}) is invalid; use one of {', '.join(DECODES)}")
        if self.on_error not in ON_ERROR:
            raise ConfigError(f"ExtractConfig(on_error={self.on_error!r}) is invalid; use one of {', '.join(ON_ERROR)}")
        if self.chunk_rows is not None and (self.chunk_rows < 1 or self.chunk_rows % self.batch_size):
            raise ConfigError(
                f"ExtractConfig(chunk_rows={self.chunk_rows}) must be a positive multiple of "
                f"ExtractConfig(batch_size={self.batch_size})"
            )

    def resolved_chunk_rows(self, n_views: int = 1, *, row_bytes: int = 0, n_rows: int = 0, writers: int = 1) -> int:
        """Rows per chunk: ``chunk_rows``, else about 4096 images (rows x views) rounded up to a multiple of
        ``batch_size`` (a chunk of a 28-slice volume store holds 160 volumes at batch 32, not 4096).

        Stores of patch grids (``row_bytes`` per row) keep a chunk near :data:`DENSE_CHUNK_BYTES` instead
        (whole batches, at least one): a ViT-B/14 grid is 390 KB per image in float16.

        A store of ``n_rows`` rows written by ``writers`` > 1 processes gets chunks small enough for
        :data:`CHUNKS_PER_WRITER` chunks per writer (whole batches, at least one), so every writer has work.

        With every view present a chunk then holds a whole number of batches of images, so the batches
        are those of one long run and the features do not depend on the chunk size.
        """
        if self.chunk_rows:
            return self.chunk_rows
        batches = -(-MIN_CHUNK_ROWS // max(1, n_views) // self.batch_size)  # whole batches per chunk, rounded up
        if row_bytes:
            batches = max(1, min(batches, DENSE_CHUNK_BYTES // row_bytes // self.batch_size))
        if writers > 1 and n_rows:
            batches = max(1, min(batches, -(-n_rows // (CHUNKS_PER_WRITER * writers * self.batch_size))))
        return batches * self.batch_size

    def resolved_store_dtype(self, dense: bool) -> str:
        """The feature dtype on disk: ``store_dtype``, where ``auto`` is float16 for patch grids, else float32."""
        if self.store_dtype != "auto":
            return self.store_dtype
        return "float16" if dense else "float32"


@dataclass(frozen=True)
class ExtractResult:
    """What one call did; ``to_json()`` is the ``probe extract --json`` object."""

    store: str
    rows: int
    complete: bool
    poolings: dict[str, int]
    fingerprint: str
    resumed_from: int  # first row computed by this run when it resumed a store, else 0
    seconds: float
    images_per_second: float
    noop: bool = False  # the store was already complete
    skipped: int = 0  # samples masked invalid by --on-error skip
    rows_computed: int = 0  # rows this run pushed through the model
    images_computed: int = 0  # images embedded (rows x their views for multi-view sources)
    write_seconds: float = 0.0  # time the writer thread spent writing chunks
    repaired: list[int] = field(default_factory=list)  # chunks --repair found damaged and recomputed
    device: str = ""
    precision: str = ""
    writer: str = ""  # "i/n" of a shard or torchrun rank, "" for one process
    pending: int = 0  # chunks still unwritten (by other shards) when this run ended
    extra: dict[str, Any] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        d = asdict(self)
        d.pop("extra")
        return d


def select_poolings(backbone: Backbone, requested: Sequence[str] | None) -> dict[str, int]:
    """The poolings to store, validated against what the backbone offers (pooled vectors or patch grids).

    Raises:
        ConfigError: a pooling the backbone does not offer, or pooled vectors mixed with patch grids.
    """
    names = list(requested) if requested else list(backbone.default_poolings)
    offered = {**backbone.poolings, **backbone.dense_poolings}
    bad = [p for p in names if p not in offered]
    if bad:
        raise ConfigError(
            f"ExtractConfig(poolings={','.join(bad)}) is not offered by {backbone.name}; choose from "
            f"{','.join(offered)}"
        )
    dense = [p for p in names if p in backbone.dense_poolings]
    if dense and len(dense) != len(names):
        raise ConfigError(
            f"ExtractConfig(poolings={','.join(names)}) mixes pooled vectors with patch grids; extract "
            f"{','.join(dense)} into a store of its own"
        )
    return {p: offered[p] for p in dict.fromkeys(names)}


def dense_grids(backbone: Backbone, poolings: Sequence[str]) -> dict[str, tuple[int, int]]:
    """(h, w) patch grid of each dense pooling at the backbone's input size (one forward of a blank image)."""
    dense = [p for p in poolings if p in backbone.dense_poolings]
    if not dense:
        return {}
    size = backbone.preprocess.image_size
    param = next(iter(backbone.pooler.parameters()), None)
    device = param.device if param is not None else torch.device("cpu")
    with torch.inference_mode():
        out = backbone.pooler(torch.zeros(1, 3, size, size, device=device))
    grids = {p: (int(out[p].shape[1]), int(out[p].shape[2])) for p in dense}
    for p in dense:
        assert out[p].shape[3] == backbone.dense_poolings[p], f"{p}: width {out[p].shape[3]} is not the declared one"
    return grids


def store_fingerprint(
    source: Source, backbone: Backbone, poolings: Sequence[str], precision: str, store_dtype: str
) -> tuple[str, dict[str, Any]]:
    """The fingerprint (sha256 hex) of everything that changes stored numbers, and its inputs."""
    library = str(backbone.meta.get("library", ""))
    inputs = {
        "format": FORMAT,
        "extraction_version": EXTRACTION_VERSION,
        "source": {"spec": source.spec, "content": source.fingerprint(), "decode": source.decode_options()},
        "backbone": {"name": backbone.name, "weights": backbone.weights_fingerprint},
        "preprocess": backbone.preprocess.to_dict(),
        "poolings": sorted(poolings),
        "precision": precision,
        "store_dtype": store_dtype,
        "versions": {"torch": torch.__version__, "model_library": library},
    }
    if source.views is not None:  # only multi-view stores carry the key: 2D fingerprints stay as they were
        inputs["views"] = {"kind": source.view_kind, "names": list(source.views)}
    return canonical_hash(inputs), inputs


@dataclass(frozen=True)
class _Job:
    """Everything one extraction call settled before touching the store."""

    source: Source  # the data
    backbone: Backbone  # the model
    cfg: ExtractConfig  # run options
    device: torch.device  # where the model runs
    precision: str  # resolved autocast precision
    poolings: dict[str, int]  # pooling -> width
    fingerprint: str  # the store key
    inputs: dict[str, Any]  # what the fingerprint hashes
    path: str  # the store
    command: str | None  # the command line, recorded for resume hints
    team: Team  # this process among the store's writers


def extract_embeddings(
    source: Source,
    backbone: Backbone,
    config: ExtractConfig | None = None,
    *,
    command: str | None = None,
) -> ExtractResult:
    """Extract (or resume, or confirm) the store of ``source`` x ``backbone``.

    Run under ``torchrun`` (``WORLD_SIZE`` > 1) the ranks share the chunks through a process group;
    with ``config.shard = "i/n"`` this process computes its share of the chunks only (see
    :mod:`probe.distributed`). Either way the features equal a single process's.

    Args:
        source: the data.
        backbone: the frozen model and its preprocessing.
        config: run options.
        command: the command line to record, shown when a user must resume.

    Returns:
        What was done, with throughput figures.

    Raises:
        StoreError: the store is locked, unwritable, or holds other settings without ``overwrite``.
        ImageDecodeError: a sample cannot be decoded and ``on_error`` is ``"raise"``.
        RankError: another torchrun rank failed, or the ranks disagree on the fingerprint.
    """
    cfg = config or ExtractConfig()
    team = find_team(cfg.shard)
    if team.kind == "ranks" and cfg.repair:
        raise ConfigError("ExtractConfig(repair=True) runs in one process; run it without torchrun")
    device = resolve_device(rank_device(cfg.device, team), owner="ExtractConfig")
    precision = resolve_precision(cfg.precision, device, owner="ExtractConfig")
    poolings = select_poolings(backbone, cfg.poolings)
    if cfg.decode == "fast":
        source.use_fast_decode(backbone.preprocess.image_size)  # enters the fingerprint via decode_options()
    dense = any(p in backbone.dense_poolings for p in poolings)
    _check_dense_source(source, dense=dense, backbone=backbone)
    store_dtype = cfg.resolved_store_dtype(dense)
    fingerprint, inputs = store_fingerprint(source, backbone, list(poolings), precision, store_dtype)
    path = cfg.store or store_path(cfg.store_root, dataset=source.name, backbone=backbone.name, fingerprint=fingerprint)
    if not is_url(path):
        path = os.path.normpath(path)  # "out.zarr/" and "out.zarr" are one store (and one lock)
    job = _Job(source, backbone, cfg, device, precision, poolings, fingerprint, inputs, path, command, team)
    if team.kind == "ranks":
        with rank_group(team, device_type=device.type) as group:
            return _extract_ranks(job, group)
    if is_url(path):
        _check_url(cfg)  # a missing bucket, refused credentials or no endpoint: one line, before anything
    if not cfg.overwrite and not cfg.repair and (done := _complete_rows(path, fingerprint)) is not None:
        return _noop(job, *done)  # read without the writer lock: readers never wait
    check_writable(os.path.dirname(path) or ".")
    if team.kind == "shard":
        return _extract_shard(job)
    t0 = time.perf_counter()
    with store_lock(path):
        writer = _open_or_create(job)
        repaired = _repair(writer, source, cfg, device) if cfg.repair else []
        pending = writer.pending_chunks()
        if not pending and writer.attrs.get("complete"):
            return _noop(job, writer.n_rows, writer.n_rows - writer.valid_rows())
        figures = run_chunks(source, backbone, writer, pending, cfg, device, precision)
        _finish(job, writer, t0, figures[0])
    return _result(job, writer, t0, _resumed_from(writer, pending), figures, repaired=repaired)


def _check_url(cfg: ExtractConfig) -> None:
    """Reach the bucket of the store (or store root) URL, naming the setting that holds it."""
    setting, url = ("store", cfg.store) if cfg.store else ("store_root", cfg.store_root)
    check_url(url, owner=f"ExtractConfig({setting}")


def _noop(job: _Job, rows: int, skipped: int) -> ExtractResult:
    return ExtractResult(
        store=job.path,
        rows=rows,
        complete=True,
        poolings=job.poolings,
        fingerprint=job.fingerprint,
        resumed_from=0,
        seconds=0.0,
        images_per_second=0.0,
        noop=True,
        skipped=skipped,
        device=str(job.device),
        precision=job.precision,
        writer=job.team.label,
    )


def _resumed_from(writer: StoreWriter, pending: list[int]) -> int:
    """First row of the first pending chunk when a run resumes a store, else 0."""
    return writer.chunk_bounds(pending[0])[0] if pending and len(pending) < writer.n_chunks else 0


def _finish(job: _Job, writer: StoreWriter, t0: float, computed: int) -> None:
    """Mark the store complete, recording this run."""
    runs = list(writer.attrs.get("runs", []))
    run = {
        "finished": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "device": str(job.device),
        "batch_size": job.cfg.batch_size,
        "rows": computed,
        "seconds": round(time.perf_counter() - t0, 3),
    }
    if job.team.kind != "solo":
        run["writer"] = f"{job.team.kind} {job.team.label}"
    writer.finish({"runs": [*runs, run], "skipped": writer.n_rows - writer.valid_rows()})


def _result(
    job: _Job,
    writer: StoreWriter,
    t0: float,
    resumed_from: int,
    figures: tuple[int, int, float],
    *,
    repaired: list[int] | None = None,
    pending: int = 0,
) -> ExtractResult:
    computed, images, write_s = figures
    seconds = time.perf_counter() - t0
    return ExtractResult(
        store=job.path,
        rows=writer.n_rows,
        complete=pending == 0,
        poolings=job.poolings,
        fingerprint=job.fingerprint,
        resumed_from=resumed_from,
        seconds=round(seconds, 3),
        images_per_second=round(images / seconds, 2) if seconds > 0 else 0.0,
        skipped=writer.n_rows - writer.valid_rows(),
        rows_computed=computed,
        images_computed=images,
        write_seconds=round(write_s, 3),
        repaired=repaired or [],
        device=str(job.device),
        precision=job.precision,
        writer=job.team.label,
        pending=pending,
    )


def _extract_ranks(job: _Job, group: RankGroup) -> ExtractResult:
    """torchrun: rank 0 creates (or reopens) the store under its lock; every rank writes the chunks it
    owns; after the last barrier rank 0 marks the store complete."""
    group.agree(
        job.fingerprint,
        what="store fingerprint",
        fix="every rank must read the same data with the same backbone and options (check the data on each node)",
    )
    if is_url(job.path):
        group.step(lambda: _check_url(job.cfg))
    t0 = time.perf_counter()
    with contextlib.ExitStack() as stack:
        made: list[StoreWriter] = []

        def create() -> tuple[int, int] | None:
            if not job.cfg.overwrite and (done := _complete_rows(job.path, job.fingerprint)) is not None:
                return done
            check_writable(os.path.dirname(job.path) or ".")
            stack.enter_context(store_lock(job.path))  # held by rank 0 until the store is complete
            made.append(_open_or_create(job))
            return None

        done = group.gather(group.step(create, ranks=(0,)))[0]
        if done is not None:
            return _noop(job, *done)
        writer = group.step(lambda: made[0] if made else _joined(job))
        assert writer is not None
        pending = writer.pending_chunks()
        mine = job.team.owned(pending)
        figures = group.step(
            lambda: run_chunks(job.source, job.backbone, writer, mine, job.cfg, job.device, job.precision)
        )
        assert figures is not None
        group.step(lambda: _finish(job, writer, t0, figures[0]), ranks=(0,))
    return _result(job, writer, t0, _resumed_from(writer, pending), figures)


def _joined(job: _Job) -> StoreWriter:
    """The store rank 0 made, opened by another rank (same resume rules as rank 0's)."""
    writer = StoreWriter.open(job.path)
    if writer.pending_chunks():
        _check_resumable(writer, job.cfg, job.device)
    return writer


#: Seconds a shard waits for the store lock (held briefly to create or complete the store).
SHARD_LOCK_WAIT_S = 120.0
#: Seconds a shard other than 0 waits for shard 0 to create a store at a URL.
SHARD_CREATE_WAIT_S = 600.0


def _extract_shard(job: _Job) -> ExtractResult:
    """``--shard i/n``: create (or reopen) the store, write the owned chunks under this shard's own lock,
    and mark the store complete when no chunk of any shard is left."""
    team, path = job.team, job.path
    t0 = time.perf_counter()
    with store_lock(path, wait=SHARD_LOCK_WAIT_S):
        writer = _open_or_create(job) if not is_url(path) or team.index == 0 else _wait_for_store(job)
    with store_lock(path, name=f"shard-{team.index}-of-{team.count}"):
        pending = writer.pending_chunks()
        figures = run_chunks(job.source, job.backbone, writer, team.owned(pending), job.cfg, job.device, job.precision)
    with store_lock(path, wait=SHARD_LOCK_WAIT_S):
        left = writer.pending_chunks()
        if not left and not writer.attrs.get("complete"):
            _finish(job, writer, t0, figures[0])  # the last shard to finish (idempotent if two race)
    return _result(job, writer, t0, _resumed_from(writer, pending), figures, pending=len(left))


def _wait_for_store(job: _Job) -> StoreWriter:
    """On object storage only shard 0 creates the store (there is no lock); the others wait for it."""
    deadline = time.monotonic() + SHARD_CREATE_WAIT_S
    while time.monotonic() < deadline:
        found = existing_store_attrs(job.path)
        if found is not None and found.get("state") != "creating":
            if found.get("fingerprint") != job.fingerprint:
                _open_or_create(job)  # raises the "other settings" error
            return _joined(job)
        time.sleep(1.0)
    raise StoreError(
        f"shard {job.team.label} waited {SHARD_CREATE_WAIT_S:.0f} s for shard 0/{job.team.count} to create "
        f"{job.path}; start shard 0 (it creates stores on object storage) and run this shard again"
    )


def _repair(writer: StoreWriter, source: Source, cfg: ExtractConfig, device: torch.device) -> list[int]:
    """Read back every chunk; rewrite damaged row arrays from the source and make damaged chunks pending.

    Returns:
        The chunks to recompute.

    Raises:
        StoreError: chunks must be recomputed, but with another batch size or device than the store's
            (its features would differ from an undamaged store's).
    """
    check = verify_store(writer.path)
    rows = tuple(dict.fromkeys(d.array for d in check.damaged if d.array in ROW_ARRAYS))
    if rows:
        writer.rewrite_rows(rows, labels=source.labels, splits=source.splits, ids=source.ids, groups=source.groups)
    chunks = writer.mark_damaged(check)
    if chunks:
        _check_resumable(writer, cfg, device)
    return chunks


def _check_resumable(writer: StoreWriter, cfg: ExtractConfig, device: torch.device) -> None:
    """Pending chunks are computed with the batch size and device type the store was started with."""
    started = (writer.attrs.get("batch_size"), writer.attrs.get("device_type"))
    if started != (cfg.batch_size, device.type):
        raise StoreError(
            f"store {writer.path} was started with ExtractConfig(batch_size={started[0]}) on {started[1]}; resume "
            "it with the "
            f"same batch size and device (this run: {cfg.batch_size} on {device.type}) so its features "
            "equal an uninterrupted run's, or pass ExtractConfig(overwrite=True) to start again"
        )


def _complete_rows(path: str, fingerprint: str) -> tuple[int, int] | None:
    """(rows, skipped rows) of a complete store of ``fingerprint`` at ``path``, else None; takes no lock.

    A complete store is never written again (except by ``overwrite``), so reading it needs no lock:
    concurrent probing commands over a finished store never see a "being written" error.
    """
    try:
        found = existing_store_attrs(path)
    except StoreError:
        return None  # not a probe store: the locked path below reports it
    if found is None or found.get("fingerprint") != fingerprint or not found.get("complete"):
        return None
    store = open_store(path)
    valid = int(np.count_nonzero(store.valid))
    return store.n_rows, store.n_rows - valid


def _open_or_create(job: _Job) -> StoreWriter:
    """Reopen the store at ``job.path`` to resume it, or create it (replacing it with ``overwrite``)."""
    path, source, backbone, cfg, device = job.path, job.source, job.backbone, job.cfg, job.device
    fingerprint, inputs, poolings, command = job.fingerprint, job.inputs, job.poolings, job.command
    found = existing_store_attrs(path)  # refuses anything that is not a probe store, even with overwrite
    if found is not None and not cfg.overwrite and found.get("state") != "creating":
        # state "creating": killed before any feature was written, so it is simply made anew
        if found.get("fingerprint") != fingerprint:
            raise StoreError(
                f"store {path} holds features made with other settings (fingerprint "
                f"{str(found.get('fingerprint'))[:16]}, this run {fingerprint[:16]}); "
                "pass ExtractConfig(overwrite=True) to replace it, or choose another ExtractConfig(store=PATH)"
            )
        writer = StoreWriter.open(path)
        if not cfg.repair and writer.pending_chunks():  # repair checks once it knows what to recompute
            _check_resumable(writer, cfg, device)
        return writer
    attrs = {
        "fingerprint": fingerprint,
        "fingerprint_inputs": inputs,
        "source": source.describe(),
        "backbone": {
            "name": backbone.name,
            "weights_fingerprint": backbone.weights_fingerprint,
            "meta": backbone.meta,
            "preprocess": backbone.preprocess.to_dict(),
        },
        "precision": inputs["precision"],
        "batch_size": cfg.batch_size,
        "device_type": device.type,
        "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "command": command or "",
        "versions": {**library_versions("torch", "timm", "transformers", "numpy", "zarr"), "torch": torch.__version__},
        "splits": list(SPLITS),
    }
    grids = dense_grids(backbone, list(poolings))
    mask_size = backbone.preprocess.image_size if source.task == "segmentation" else None
    dtype = str(inputs["store_dtype"])
    row_bytes = sum(g[0] * g[1] * poolings[p] * np.dtype(dtype).itemsize for p, g in grids.items())
    layout = StoreLayout(
        n_rows=len(source),
        poolings=poolings,
        chunk_rows=cfg.resolved_chunk_rows(
            len(source.views or ()) or 1,
            row_bytes=row_bytes + (mask_size or 0) ** 2,
            n_rows=len(source),
            writers=job.team.count,
        ),
        dtype=dtype,
        compression=cfg.compression,
        views=source.views,
        grids=grids,
        mask_size=mask_size,
    )
    return StoreWriter.create(
        path,
        layout=layout,
        labels=source.labels,
        splits=source.splits,
        ids=source.ids,
        groups=source.groups,
        attrs=attrs,
    )


def _check_dense_source(source: Source, *, dense: bool, backbone: Backbone) -> None:
    """Segmentation sources need patch grids; patch grids of a multi-view source are not supported."""
    if source.task == "segmentation" and not dense:
        offered = ",".join(backbone.dense_poolings) or "none"
        raise ConfigError(
            f"{source.spec} is a segmentation source: extract patch grids, ExtractConfig(poolings=patch) "
            f"({backbone.name} offers {offered})"
        )
    if dense and source.views is not None:
        raise ConfigError(
            f"patch grids of multi-view sources ({source.spec}) are not supported; use a seg: manifest, which "
            "cuts volumes into slice rows"
        )


def extract(
    source: str | SourceRequest | Source,
    *,
    backbone: str | BackboneRequest,
    config: ExtractConfig | None = None,
    command: str | None = None,
) -> ExtractResult:
    """Open the data, build the backbone and extract: the library call behind ``probe extract``.

    Args:
        source: a specification such as ``"medmnist:bloodmnist"``, a :class:`~probe.sources.SourceRequest`
            carrying the data root, RGBA policy, per-split limit, slice policy and multi-label options, or
            an already opened :class:`~probe.sources.Source`.
        backbone: a name (registry alias, ``timm:<model>``, ``hf:<repo>``, ``open_clip:<arch>@<tag>``), or a
            :class:`~probe.backbones.BackboneRequest` carrying local weights, input size, resolution policy
            and whether to use pretrained weights.
        config: run options (device, precision, batch size, store root ...).
        command: the command line, recorded for resume hints.
    """
    cfg = config or ExtractConfig()
    bb_req = BackboneRequest.of(backbone)
    resolve_device(cfg.device, owner="ExtractConfig")  # fail fast, before data and weights are loaded
    bb_req.check()
    src = source if isinstance(source, Source) else SourceRequest.of(source).open()
    _warn_without_splits(src)
    return extract_embeddings(src, bb_req.load(), cfg, command=command)


def _warn_without_splits(source: Source) -> None:
    """A store without train and test rows cannot be probed: say so before the embedding starts."""
    codes = set(np.unique(np.asarray(source.splits)).tolist())
    if not {SPLITS.index("train"), SPLITS.index("test")} <= codes:
        spec = source.spec.split("?")[0]
        logging.getLogger("probe").warning(  # a notice, not an error: splitting later is legitimate
            "warning: %s has no train and test split; the probes will need one: add %s?split=70,10,20 "
            "(the store is extracted as asked)",
            source.spec,
            spec,
        )
