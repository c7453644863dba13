"""Run a source through a frozen backbone once, writing pooled features into an embedding store.

Batches never cross a chunk boundary and chunks are a whole number of batches, so a resumed run
feeds the model exactly the batches an uninterrupted run would, and its features are identical
(same device and precision). Finished chunks go to a background writer thread, so the model does
not wait on storage.
"""

from __future__ import annotations

import logging
import os
import queue
import threading
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field, replace
from datetime import datetime, timezone
from typing import Any

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset

from probe.backbones import Backbone, BackboneRequest, Preprocessor
from probe.errors import ConfigError, ImageDecodeError, ProbeError, SourceError, StoreError
from probe.provenance import canonical_hash, library_versions
from probe.runtime import (
    PRECISIONS,
    autocast,
    default_workers,
    device_scope,
    resolve_device,
    resolve_precision,
    worker_init,
)
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

ON_ERROR: tuple[str, ...] = ("raise", "skip")
MIN_CHUNK_ROWS = 4096
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
    store_dtype: str = "float32"  # feature dtype on disk: float32 or float16
    compression: str = "none"  # "none" or "lz4"
    chunk_rows: int | None = None  # rows per chunk; None: 4096 rounded up to a multiple of batch_size
    on_error: str = "raise"  # corrupt/missing image: "raise", or "skip" (row masked invalid)
    overwrite: bool = False  # replace an existing store
    repair: bool = False  # read back every chunk of an existing store and recompute only the damaged ones
    progress: bool = True  # progress bar on stderr

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
        if self.store_dtype not in STORE_DTYPES:
            raise ConfigError(
                f"ExtractConfig(store_dtype={self.store_dtype!r}) is invalid; use one of {', '.join(STORE_DTYPES)}"
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
        if self.on_error not in ON_ERROR:
            raise ConfigError(f"ExtractConfig(on_error={self.on_error!r}) is invalid; use one of {', '.join(ON_ERROR)}")
        if self.chunk_rows is not None and (self.chunk_rows < 1 or self.chunk_rows % self.batch_size):
            raise ConfigError(
                f"ExtractConfig(chunk_rows={self.chunk_rows}) must be a positive multiple of "
                f"ExtractConfig(batch_size={self.batch_size})"
            )

    def resolved_chunk_rows(self) -> int:
        return self.chunk_rows or -(-MIN_CHUNK_ROWS // self.batch_size) * self.batch_size


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
    extra: dict[str, Any] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        d = asdict(self)
        d.pop("extra")
        return d


class _Rows(Dataset[tuple[int, torch.Tensor, str]]):
    """Decoded, preprocessed images, one per item (a row, or one view of a row of a multi-view source);
    a failing image comes back as zeros plus its error text."""

    def __init__(self, source: Source, preprocessor: Preprocessor, items: np.ndarray) -> None:
        self.source = source
        self.preprocessor = preprocessor
        self.items = items
        self.shape = (3, preprocessor.config.image_size, preprocessor.config.image_size)

    def __len__(self) -> int:
        return len(self.items)

    def __getitem__(self, item: int) -> tuple[int, torch.Tensor, str]:
        row, view = (int(v) for v in self.items[item])
        try:
            return item, self.preprocessor(self.source.load_view(row, view)), ""
        except ImageDecodeError as exc:
            return item, torch.zeros(self.shape), str(exc)


def source_items(source: Source) -> np.ndarray:
    """(m, 2) int64 (row, view) pairs to embed, row-major; one per row for single-image sources.

    Raises:
        SourceError: a sample of a multi-view source has no view at all.
    """
    mask = source.view_mask()
    empty = np.flatnonzero(~mask.any(axis=1))
    if empty.size:
        raise SourceError(f"sample {source.ids[int(empty[0])]!r} of {source.spec} has no image in any view; drop it")
    return np.argwhere(mask).astype(np.int64)


def _chunk_items(writer: StoreWriter, items: np.ndarray, chunk: int) -> tuple[int, int]:
    """First and one-past-last item of a chunk (items are sorted by row)."""
    start, stop = writer.chunk_bounds(chunk)
    return int(np.searchsorted(items[:, 0], start)), int(np.searchsorted(items[:, 0], stop))


def _batches(writer: StoreWriter, items: np.ndarray, chunks: Sequence[int], batch_size: int) -> list[list[int]]:
    """Item batches of the chunks, none crossing a chunk (so a resumed run repeats them exactly)."""
    out: list[list[int]] = []
    for c in chunks:
        lo, hi = _chunk_items(writer, items, c)
        out.extend(list(range(s, min(s + batch_size, hi))) for s in range(lo, hi, batch_size))
    return out


class _ChunkBuffer:
    """Features of one chunk being computed: (rows, n_views, dim) per pooling, NaN until written."""

    def __init__(self, writer: StoreWriter, items: np.ndarray, chunk: int) -> None:
        self.chunk = chunk
        self.start, stop = writer.chunk_bounds(chunk)
        n_views = len(writer.views or ("image",))
        shape = (stop - self.start, n_views)
        self.feats = {p: np.full((*shape, d), np.nan, dtype=writer.dtype) for p, d in writer.poolings.items()}
        self.present = np.zeros(shape, dtype=bool)
        lo, hi = _chunk_items(writer, items, chunk)
        self.remaining = hi - lo
        self.multi_view = writer.views is not None

    def payload(self) -> tuple[int, dict[str, np.ndarray], np.ndarray, np.ndarray | None]:
        """(chunk, features, valid, present) for :meth:`StoreWriter.write_chunk`."""
        valid = np.asarray(self.present.any(axis=1), dtype=bool)
        if self.multi_view:
            return self.chunk, self.feats, valid, self.present
        return self.chunk, {p: f[:, 0] for p, f in self.feats.items()}, valid, None


_Payload = tuple[int, dict[str, np.ndarray], np.ndarray, np.ndarray | None]


class _ChunkWriter:
    """Background thread writing finished chunks; re-raises its error in the caller."""

    def __init__(self, writer: StoreWriter) -> None:
        self.writer = writer
        self.queue: queue.Queue[_Payload | None] = queue.Queue(maxsize=2)
        self.error: BaseException | None = None
        self.seconds = 0.0
        self.thread = threading.Thread(target=self._run, name="probe-store-writer", daemon=True)
        self.thread.start()

    def _run(self) -> None:
        while (item := self.queue.get()) is not None:
            if self.error is None:
                try:
                    t0 = time.perf_counter()
                    self.writer.write_chunk(*item)
                    self.seconds += time.perf_counter() - t0
                except BaseException as exc:
                    self.error = exc

    def put(self, payload: _Payload) -> None:
        if self.error is not None:
            raise self.error
        self.queue.put(payload)

    def close(self, *, raise_error: bool = True) -> None:
        """Write what is queued, stop the thread, and re-raise its error (if ``raise_error``)."""
        self.queue.put(None)
        self.thread.join()
        if self.error is not None and raise_error:
            raise self.error


def select_poolings(backbone: Backbone, requested: Sequence[str] | None) -> dict[str, int]:
    """The poolings to store, validated against what the backbone offers."""
    names = list(requested) if requested else list(backbone.default_poolings)
    bad = [p for p in names if p not in backbone.poolings]
    if bad:
        raise ConfigError(
            f"ExtractConfig(poolings={','.join(bad)}) is not offered by {backbone.name}; choose from "
            f"{','.join(backbone.poolings)}"
        )
    return {p: backbone.poolings[p] for p in dict.fromkeys(names)}


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


def _run_chunks(
    source: Source,
    backbone: Backbone,
    writer: StoreWriter,
    pending: list[int],
    cfg: ExtractConfig,
    device: torch.device,
    precision: str,
) -> tuple[int, int, float]:
    """Compute and write the pending chunks; returns (rows computed, images computed, writer seconds)."""
    items = source_items(source)
    dataset = _Rows(source, Preprocessor(backbone.preprocess), items)
    workers = cfg.num_workers if cfg.num_workers is not None else default_workers(device)
    loader: DataLoader[Any] = DataLoader(
        dataset,
        batch_sampler=_batches(writer, items, pending, cfg.batch_size),
        num_workers=workers,
        pin_memory=device.type == "cuda",
        worker_init_fn=worker_init if workers else None,
        persistent_workers=False,
        prefetch_factor=4 if workers else None,
    )
    home = _module_device(backbone.pooler)
    with device_scope(device):  # the pin-memory thread attaches to the current CUDA device
        try:
            return _compute(source, backbone, writer, items, pending, loader, cfg, device, precision)
        finally:
            if home is not None:
                backbone.pooler.to(home)  # the caller's backbone stays where it was (a no-op when it never moved)


def _module_device(module: torch.nn.Module) -> torch.device | None:
    """The device of a module's first parameter or buffer (None for a module without tensors)."""
    for t in (*module.parameters(), *module.buffers()):
        return t.device
    return None


def _to_host(out: dict[str, torch.Tensor], poolings: Sequence[str], device: torch.device) -> dict[str, np.ndarray]:
    """(n, dim) float32 features per pooling on the host.

    On CUDA every pooling's copy is queued (non-blocking, into pinned memory) and the stream is
    waited for once per batch, instead of one blocking ``.cpu()`` per pooling; elsewhere the
    tensors are already on the host.
    """
    if device.type != "cuda":
        return {p: out[p].float().cpu().numpy() for p in poolings}
    copies = {p: out[p].float().to("cpu", non_blocking=True) for p in poolings}
    torch.cuda.current_stream(device).synchronize()
    return {p: t.numpy() for p, t in copies.items()}


def _compute(
    source: Source,
    backbone: Backbone,
    writer: StoreWriter,
    items: np.ndarray,
    pending: list[int],
    loader: DataLoader[Any],
    cfg: ExtractConfig,
    device: torch.device,
    precision: str,
) -> tuple[int, int, float]:
    model = backbone.pooler.to(device)
    if backbone.channels_last:
        model = model.to(memory_format=torch.channels_last)
    bg = _ChunkWriter(writer)
    total = sum(hi - lo for lo, hi in (_chunk_items(writer, items, c) for c in pending))
    bar = _progress(total, cfg.progress, desc=f"extract {backbone.name}")
    chunk_iter = iter(pending)
    buf = _ChunkBuffer(writer, items, next(chunk_iter))
    rows_done = images = 0
    try:
        for ks, x, errors in loader:
            bad = [i for i, e in enumerate(errors) if e]
            if bad and cfg.on_error == "raise":
                raise ImageDecodeError(errors[bad[0]])
            x = x.to(device, non_blocking=True)
            if backbone.channels_last:
                x = x.contiguous(memory_format=torch.channels_last)
            with torch.inference_mode(), autocast(precision, device):
                out = model(x)
            good = np.ones(len(ks), dtype=bool)
            good[bad] = False
            pairs = items[ks.numpy()]
            rows, views = pairs[good, 0] - buf.start, pairs[good, 1]
            host = _to_host(out, list(writer.poolings), device)
            for p in writer.poolings:
                feats = host[p].astype(writer.dtype, copy=False)
                _check_finite(feats, good, pairs, source, backbone.name, p)
                buf.feats[p][rows, views] = feats[good]
            buf.present[rows, views] = True
            buf.remaining -= len(ks)
            images += len(ks)
            bar.update(len(ks))
            if buf.remaining == 0:
                bg.put(buf.payload())
                rows_done += buf.present.shape[0]
                nxt = next(chunk_iter, None)
                if nxt is None:
                    break
                buf = _ChunkBuffer(writer, items, nxt)
    except BaseException:
        bar.close()
        bg.close(raise_error=False)  # keep the original error; finished chunks are already written
        raise
    bar.close()
    bg.close()
    return rows_done, images, bg.seconds


def _check_finite(
    feats: np.ndarray, good: np.ndarray, pairs: np.ndarray, source: Source, backbone: str, pooling: str
) -> None:
    finite = np.isfinite(feats).all(axis=1)
    if not finite[good].all():
        row, view = (int(v) for v in pairs[int(np.flatnonzero(good & ~finite)[0])])
        where = f"sample {source.ids[row]!r}" + (f" view {source.views[view]!r}" if source.views else "")
        raise ProbeError(
            f"{backbone} produced non-finite {pooling} features for {where} (in {feats.dtype} storage); "
            "try ExtractConfig(precision=fp32) or ExtractConfig(store_dtype=float32)"
        )


def _progress(total: int, enabled: bool, *, desc: str) -> Any:
    from tqdm.auto import tqdm

    return tqdm(total=total, unit="img", desc=desc, disable=not enabled, smoothing=0.1, dynamic_ncols=True)


def extract_embeddings(
    source: Source,
    backbone: Backbone,
    config: ExtractConfig | None = None,
    *,
    command: str | None = None,
) -> ExtractResult:
    """Extract (or resume, or confirm) the store of ``source`` x ``backbone``.

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
    """
    cfg = config or ExtractConfig()
    device = resolve_device(cfg.device, owner="ExtractConfig")
    precision = resolve_precision(cfg.precision, device, owner="ExtractConfig")
    poolings = select_poolings(backbone, cfg.poolings)
    fingerprint, inputs = store_fingerprint(source, backbone, list(poolings), precision, cfg.store_dtype)
    root = cfg.store_root
    path = cfg.store or store_path(root, dataset=source.name, backbone=backbone.name, fingerprint=fingerprint)
    if "://" not in path:
        path = os.path.normpath(path)  # "out.zarr/" and "out.zarr" are one store (and one lock)
    noop = ExtractResult(
        store=path,
        rows=0,
        complete=True,
        poolings=poolings,
        fingerprint=fingerprint,
        resumed_from=0,
        seconds=0.0,
        images_per_second=0.0,
        noop=True,
        device=str(device),
        precision=precision,
    )
    if not cfg.overwrite and not cfg.repair and (done := _complete_rows(path, fingerprint)) is not None:
        return replace(noop, rows=done[0], skipped=done[1])  # read without the writer lock: readers never wait
    check_writable(os.path.dirname(path) or ".")
    t0 = time.perf_counter()
    with store_lock(path):
        writer = _open_or_create(path, source, backbone, poolings, fingerprint, inputs, cfg, device, command)
        repaired = _repair(writer, source, cfg, device) if cfg.repair else []
        pending = writer.pending_chunks()
        if not pending and writer.attrs.get("complete"):
            return replace(noop, rows=writer.n_rows, skipped=writer.n_rows - writer.valid_rows())
        resumed_from = writer.chunk_bounds(pending[0])[0] if pending and len(pending) < writer.n_chunks else 0
        computed, images, write_s = (
            _run_chunks(source, backbone, writer, pending, cfg, device, precision) if pending else (0, 0, 0.0)
        )
        seconds = time.perf_counter() - t0
        runs = list(writer.attrs.get("runs", []))
        runs.append(
            {
                "finished": datetime.now(timezone.utc).isoformat(timespec="seconds"),
                "device": str(device),
                "batch_size": cfg.batch_size,
                "rows": computed,
                "seconds": round(seconds, 3),
            }
        )
        total_skipped = writer.n_rows - writer.valid_rows()
        writer.finish({"runs": runs, "skipped": total_skipped})
    return ExtractResult(
        store=path,
        rows=writer.n_rows,
        complete=True,
        poolings=poolings,
        fingerprint=fingerprint,
        resumed_from=resumed_from,
        seconds=round(seconds, 3),
        images_per_second=round(images / seconds, 2) if seconds > 0 else 0.0,
        skipped=total_skipped,
        rows_computed=computed,
        images_computed=images,
        write_seconds=round(write_s, 3),
        repaired=repaired,
        device=str(device),
        precision=precision,
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


def _open_or_create(
    path: str,
    source: Source,
    backbone: Backbone,
    poolings: dict[str, int],
    fingerprint: str,
    inputs: dict[str, Any],
    cfg: ExtractConfig,
    device: torch.device,
    command: str | None,
) -> StoreWriter:
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
    layout = StoreLayout(
        n_rows=len(source),
        poolings=poolings,
        chunk_rows=cfg.resolved_chunk_rows(),
        dtype=cfg.store_dtype,
        compression=cfg.compression,
        views=source.views,
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
