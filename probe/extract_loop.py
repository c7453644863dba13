"""The forward loop of extraction: decode → batch (never across a chunk) → model → background writer.

Batches never cross a chunk boundary and chunks are a whole number of batches, so any run over a
set of pending chunks (a resume, one shard's or one rank's share) feeds the model exactly the
batches an uninterrupted run would. Finished chunks go to a background writer thread, so the model
does not wait on storage.
"""

from __future__ import annotations

import itertools
import queue
import threading
import time
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset

from probe.backbones import Backbone, Preprocessor
from probe.errors import ImageDecodeError, ProbeError, SourceError
from probe.runtime import autocast, default_workers, device_scope, worker_init
from probe.sources import Source
from probe.store import MASK_IGNORE, StoreWriter

if TYPE_CHECKING:
    from probe.extraction import ExtractConfig


class _Rows(Dataset[tuple[int, torch.Tensor, torch.Tensor, str]]):
    """Decoded, preprocessed images, one per item (a row, or one view of a row of a multi-view source),
    with the row's resized label map for segmentation sources (else an empty tensor); a failing image
    comes back as zeros plus its error text."""

    def __init__(self, source: Source, preprocessor: Preprocessor, items: np.ndarray) -> None:
        self.source = source
        self.preprocessor = preprocessor
        self.items = items
        side = preprocessor.config.image_size
        self.shape = (3, side, side)
        self.masks = source.task == "segmentation"

    def __len__(self) -> int:
        return len(self.items)

    def __getitem__(self, item: int) -> tuple[int, torch.Tensor, torch.Tensor, str]:
        row, view = (int(v) for v in self.items[item])
        side = self.shape[1]
        try:
            x = self.preprocessor(self.source.load_view(row, view))
            mask = self.preprocessor.mask(self.source.load_mask(row)) if self.masks else torch.empty(0)
            return item, x, mask, ""
        except ImageDecodeError as exc:
            blank = torch.full((side, side), MASK_IGNORE, dtype=torch.uint8) if self.masks else torch.empty(0)
            return item, torch.zeros(self.shape), blank, str(exc)


class _ViewBatches(Dataset[tuple[torch.Tensor, torch.Tensor, list[str]]]):
    """Whole batches of a multi-view source whose views load together (volume slices): each sample's
    views come from one decode, and the batch's views of one size are resized as one tensor (one plane
    per grayscale slice); equal to :class:`_Rows` item by item.
    """

    def __init__(self, source: Source, preprocessor: Preprocessor, items: np.ndarray) -> None:
        self.source = source
        self.preprocessor = preprocessor
        self.items = items
        self.shape = (3, preprocessor.config.image_size, preprocessor.config.image_size)

    def __len__(self) -> int:
        return len(self.items)

    def __getitem__(self, batch: list[int]) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, list[str]]:  # type: ignore[override]
        pairs = self.items[np.asarray(batch, dtype=np.int64)]
        errors = [""] * len(batch)
        stacks: list[np.ndarray] = []
        where: list[np.ndarray] = []
        for row in dict.fromkeys(pairs[:, 0].tolist()):
            sel = np.flatnonzero(pairs[:, 0] == row)
            try:
                views = self.source.load_views(int(row), pairs[sel, 1].tolist())
            except ImageDecodeError as exc:
                for i in sel:
                    errors[int(i)] = str(exc)
                continue
            assert views is not None
            stacks.append(views)
            where.append(sel)
        x = self._preprocess(stacks, where, len(batch))
        return torch.as_tensor(batch, dtype=torch.int64), x, torch.empty(len(batch), 0), errors

    def _preprocess(self, stacks: list[np.ndarray], where: list[np.ndarray], n: int) -> torch.Tensor:
        """(n, 3, size, size) inputs: ``stacks[j]`` (k_j, H, W, 3) at batch positions ``where[j]``, zeros elsewhere."""
        if stacks and len({(s.shape[1:], s.dtype) for s in stacks}) == 1:  # one resize for the whole batch
            stacks, where = [np.concatenate(stacks)], [np.concatenate(where)]
        if len(where) == 1 and np.array_equal(where[0], np.arange(n)):  # every view decoded: no scatter
            return self.preprocessor.batch(stacks[0])
        x = torch.zeros((n, *self.shape))
        for views, sel in zip(stacks, where, strict=True):
            x[torch.from_numpy(sel)] = self.preprocessor.batch(views)
        return x


def _as_is(batch: Any) -> Any:
    """A whole batch as :class:`_ViewBatches` built it (already tensors: no per-element conversion)."""
    return batch


def _batched_views(source: Source) -> bool:
    """Whether a multi-view source loads a sample's views together (then batches are built whole)."""
    return source.views is not None and source.batched_views()


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
    """Features of one chunk being computed: (rows, n_views, *shape) per pooling, NaN until written
    (shape (dim,), or (h, w, dim) for patch grids), and the rows' label maps for segmentation stores."""

    def __init__(self, writer: StoreWriter, items: np.ndarray, chunk: int) -> None:
        self.chunk = chunk
        self.start, stop = writer.chunk_bounds(chunk)
        n_views = len(writer.views or ("image",))
        shape = (stop - self.start, n_views)
        layout = writer.layout()
        self.feats = {
            p: np.full((*shape, *layout.feature_shape(p)), np.nan, dtype=writer.dtype) for p in writer.poolings
        }
        self.present = np.zeros(shape, dtype=bool)
        side = writer.mask_size
        self.masks = None if side is None else np.full((shape[0], side, side), MASK_IGNORE, dtype=np.uint8)
        lo, hi = _chunk_items(writer, items, chunk)
        self.remaining = hi - lo
        self.multi_view = writer.views is not None

    def payload(self) -> _Payload:
        """(chunk, features, valid, present, masks) for :meth:`StoreWriter.write_chunk`."""
        valid = np.asarray(self.present.any(axis=1), dtype=bool)
        if self.multi_view:
            return self.chunk, self.feats, valid, self.present, self.masks
        return self.chunk, {p: f[:, 0] for p, f in self.feats.items()}, valid, None, self.masks


_Payload = tuple[int, dict[str, np.ndarray], np.ndarray, np.ndarray | None, np.ndarray | None]


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


def run_chunks(
    source: Source,
    backbone: Backbone,
    writer: StoreWriter,
    pending: list[int],
    cfg: ExtractConfig,
    device: torch.device,
    precision: str,
) -> tuple[int, int, float]:
    """Compute and write the pending chunks; returns (rows computed, images computed, writer seconds)."""
    if not pending:
        return 0, 0, 0.0
    items = source_items(source)
    workers = cfg.num_workers if cfg.num_workers is not None else default_workers(device)
    batches = _batches(writer, items, pending, cfg.batch_size)
    pre = Preprocessor(backbone.preprocess)
    whole = _batched_views(source)  # volumes: one decode and one resize per sample and batch
    loader: DataLoader[Any] = DataLoader(
        _ViewBatches(source, pre, items) if whole else _Rows(source, pre, items),
        **({"sampler": batches, "batch_size": None, "collate_fn": _as_is} if whole else {"batch_sampler": batches}),
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
    first = next(itertools.chain(module.parameters(), module.buffers()), None)
    return None if first is None else first.device


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
        for ks, x, masks, errors in loader:
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
            if buf.masks is not None:
                buf.masks[rows] = masks.numpy()[good]
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
    finite = np.isfinite(feats.reshape(feats.shape[0], -1)).all(axis=1)
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
