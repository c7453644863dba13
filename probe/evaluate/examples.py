"""Example predictions of segmentation heads, kept for the report's overlay figure.

Researchers look at masks before numbers: for every (backbone, head) a curve keeps the predicted
label maps of a few fixed test images from its full-data fit (else the largest shot level of the
first seed), and writes them with the images (at the model input's geometry) and the ground truth
to ``<results>/examples/<dataset>-<fingerprint>/<backbone>__<head>__<store>.npz``. The report draws them.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from probe.evaluate.config import Evaluation
from probe.evaluate.data import EvalData
from probe.evaluate.defaults import ALL
from probe.sources import Source
from probe.store import slug

N_EXAMPLES = 4  # test images shown per dataset


def pick_examples(data: EvalData, n: int = N_EXAMPLES) -> np.ndarray:
    """(k,) test rows to show: the images with the most foreground classes, then the most foreground."""
    masks = data.test.y
    fg = (masks != 0) & (masks != 255)
    n_classes = np.array([np.unique(m[f]).size for m, f in zip(masks, fg, strict=True)])
    area = fg.reshape(len(masks), -1).sum(axis=1)
    order = np.lexsort((np.arange(len(masks)), -area, -n_classes))
    return np.sort(order[: min(n, len(masks))])


class ExampleKeeper:
    """Collects, per head, the predictions of the example rows from one evaluation of each head."""

    def __init__(self, data: EvalData, *, seed: int) -> None:
        self.rows = pick_examples(data)
        self.seed = seed  # few-shot draws of this seed only
        self.best: dict[str, tuple[tuple[int, int], np.ndarray]] = {}  # head -> (rank, maps)

    def __call__(self, ev: Evaluation) -> None:
        draw = ev.task.draw
        if draw.shots == ALL:
            rank = (2, 0)
        elif isinstance(draw.shots, int) and draw.seed == self.seed:
            rank = (1, draw.shots)
        else:
            return
        if ev.head not in self.best or self.best[ev.head][0] < rank:
            self.best[ev.head] = (rank, np.asarray(ev.proba)[self.rows])

    def save(self, results_dir: str | os.PathLike[str], data: EvalData, source: Source, preprocess: dict) -> list[str]:  # type: ignore[type-arg]
        """Write one ``.npz`` per head; returns the paths."""
        images = _images(data, source, preprocess, self.rows)
        folder = Path(results_dir) / "examples" / f"{slug(data.dataset)}-{data.dataset_fingerprint[:12]}"
        folder.mkdir(parents=True, exist_ok=True)
        paths = []
        for head, (rank, maps) in sorted(self.best.items()):
            path = folder / f"{slug(data.backbone)}__{slug(head)}__{data.store_fingerprint[:12]}.npz"
            np.savez_compressed(
                path, images=images, truth=data.test.y[self.rows], pred=maps, ids=data.test.ids[self.rows],
                classes=np.array(data.classes), backbone=data.backbone, head=head,
                level="all" if rank[0] == 2 else str(rank[1]), dataset=data.dataset,
                dataset_fingerprint=data.dataset_fingerprint,
            )  # fmt: skip
            paths.append(str(path))
        return paths


def _images(data: EvalData, source: Source, preprocess: dict, rows: np.ndarray) -> np.ndarray:  # type: ignore[type-arg]
    """(k, S, S, 3) uint8 example images resized as the model saw them (normalisation undone)."""
    from probe.backbones import PreprocessConfig, Preprocessor

    cfg = PreprocessConfig(**{**preprocess, "mean": tuple(preprocess["mean"]), "std": tuple(preprocess["std"])})
    pre = Preprocessor(cfg)
    index = {sid: i for i, sid in enumerate(source.ids)}
    mean, std = np.asarray(cfg.mean).reshape(3, 1, 1), np.asarray(cfg.std).reshape(3, 1, 1)
    out = []
    for sid in data.test.ids[rows]:
        x = pre(source.load_image(index[str(sid)])).numpy() * std + mean
        out.append(np.clip(x.transpose(1, 2, 0) * 255.0 + 0.5, 0, 255).astype(np.uint8))
    return np.stack(out)
