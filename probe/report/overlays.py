"""Example test images with ground truth and predicted masks overlaid, one column per backbone × head.

Curves of segmentation heads keep a few predictions (``<results>/examples/<dataset>/*.npz``, written
by :mod:`probe.evaluate.examples`); this module draws them: a row per example image, the image, the
ground truth, then every (backbone, head) prediction of its full-data fit (else its largest shot
level), each class in its own colour over the grey image.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import matplotlib as mpl
import numpy as np
from matplotlib.figure import Figure
from matplotlib.patches import Patch

from probe.report.plots import DPI

ALPHA = 0.5  # mask opacity over the image


@dataclass(frozen=True)
class Examples:
    """The kept predictions of one dataset."""

    dataset: str
    dataset_fingerprint: str  # the source's fingerprint: datasets that share a name stay apart
    images: np.ndarray  # (k, S, S, 3) uint8
    truth: np.ndarray  # (k, S, S) uint8 label maps, 255 = ignore
    ids: tuple[str, ...]  # the k test ids
    classes: tuple[str, ...]
    columns: tuple[tuple[str, np.ndarray], ...]  # ("backbone · head (level)", (k, S, S) predicted maps)


def load_examples(results_dir: str | Path) -> list[Examples]:
    """Every dataset's kept predictions under ``results_dir/examples`` ([] when there are none)."""
    root = Path(results_dir) / "examples"
    out = []
    for folder in sorted(p for p in root.glob("*") if p.is_dir()) if root.is_dir() else []:
        files = sorted(folder.glob("*.npz"))
        if not files:
            continue
        loaded = [_read(f) for f in files]
        first = loaded[0]
        # one example set per figure: the same test images at the same size (stores of other input sizes
        # keep masks of their own size and are left out)
        same = [z for z in loaded if np.array_equal(z["ids"], first["ids"]) and z["pred"].shape == first["pred"].shape]
        columns = tuple((f"{z['backbone']} · {z['head']} ({z['level']})", np.asarray(z["pred"])) for z in same)
        out.append(
            Examples(
                dataset=str(first["dataset"]),
                dataset_fingerprint=str(first["dataset_fingerprint"]),
                images=np.asarray(first["images"]),
                truth=np.asarray(first["truth"]),
                ids=tuple(str(i) for i in first["ids"]),
                classes=tuple(str(c) for c in first["classes"]),
                columns=columns,
            )
        )
    return out


def _read(path: Path) -> dict[str, np.ndarray]:
    with np.load(path, allow_pickle=False) as z:  # closed at once: no open file left to the collector
        return {k: np.asarray(z[k]) for k in z.files}


def _overlay(image: np.ndarray, mask: np.ndarray, colours: np.ndarray) -> np.ndarray:
    """(S, S, 3) float image with foreground classes blended in their colours (ignore pixels untouched)."""
    grey = image.astype(np.float32).mean(axis=2, keepdims=True).repeat(3, axis=2) / 255.0
    out = grey.copy()
    fg = (mask > 0) & (mask != 255)
    out[fg] = (1 - ALPHA) * grey[fg] + ALPHA * colours[mask[fg].astype(np.int64) % len(colours)]
    return out


def overlay_figure(ex: Examples) -> Figure:
    """A grid: rows = example images; columns = image, ground truth, each prediction."""
    colours = np.asarray(mpl.colormaps["tab10"](np.arange(10)))[1:, :3]  # class 1 → orange, 2 → green, ...
    colours = np.vstack([np.zeros((1, 3)), colours])  # index 0 (background) is never drawn
    n_rows, n_cols = len(ex.ids), 2 + len(ex.columns)
    fig = Figure(figsize=(1.9 * n_cols + 0.4, 1.9 * n_rows + 0.9), dpi=DPI, layout="constrained")
    axes = np.atleast_2d(fig.subplots(n_rows, n_cols, squeeze=False))
    titles = ["image", "ground truth", *(c[0] for c in ex.columns)]
    for r in range(n_rows):
        panels = [ex.images[r] / 255.0, _overlay(ex.images[r], ex.truth[r], colours)]
        panels += [_overlay(ex.images[r], pred[r], colours) for _, pred in ex.columns]
        for c, panel in enumerate(panels):
            ax = axes[r, c]
            ax.imshow(panel, interpolation="nearest")
            ax.set_xticks([])
            ax.set_yticks([])
            if r == 0:
                ax.set_title(titles[c], fontsize=7, wrap=True)
            if c == 0:
                ax.set_ylabel(ex.ids[r], fontsize=6)
    handles = [Patch(color=colours[i % len(colours)], label=name) for i, name in enumerate(ex.classes) if i > 0]
    fig.legend(handles=handles, loc="outside lower center", ncols=min(6, len(handles)), fontsize=7, frameon=False)
    fig.suptitle(f"{ex.dataset}: example test images (classes overlaid)", fontsize=9)
    return fig
