"""Label-efficiency figures: metric against labels per class, one line per backbone × head.

Figures are built on :class:`matplotlib.figure.Figure` directly, never through pyplot, so a report
touches no global backend or figure registry.
"""

from __future__ import annotations

import io
import textwrap
from collections.abc import Sequence
from typing import Any, TypeVar

import matplotlib as mpl
import numpy as np
import pandas as pd
from matplotlib.axes import Axes
from matplotlib.figure import Figure
from matplotlib.lines import Line2D
from matplotlib.ticker import FixedFormatter, FixedLocator, NullLocator
from matplotlib.typing import ColorType, LineStyleType

from probe.report.data import ALL, EPISODES, FRACTIONS

DPI = 150
LINESTYLES: tuple[LineStyleType, ...] = ("-", "--", ":", "-.")
MARKERS = ("o", "s", "^", "D", "v", "P", "X", "*")
PER_SERIES_LEGEND_MAX = 6  # above this, the legend lists colours and line styles separately
LONG_LABEL = 30  # legend labels longer than this go below the axes, in two columns
MIN_TICK_GAP = 0.5  # log2 units between neighbouring x tick labels, so "8" and "10" never overlap
PANEL_TITLE_WIDTH = 40  # characters per line of a small-multiples panel title (long backbone specs wrap)
_T = TypeVar("_T")
_SAVE_METADATA: dict[str, dict[str, None]] = {
    "png": {"Software": None},
    "svg": {"Date": None},
    "pdf": {"CreationDate": None},
}


def curve_figure(
    summary: pd.DataFrame,
    *,
    title: str,
    metric_label: str,
    style_order: Sequence[str] = (),
    colour_order: Sequence[str] = (),
) -> Figure:
    """The label-efficiency figure of one dataset.

    Args:
        summary: :func:`probe.report.data.summarise` rows of one dataset.
        title: figure title.
        metric_label: y-axis label.
        style_order: style keys of the whole report (see :func:`style_keys`), so a head keeps its line
            style in every dataset's figure.
        colour_order: colour keys of the whole report (see :func:`colour_keys`), likewise for colours.

    Returns:
        A figure with one line per series: markers at the seed means, a shaded 95 % CI band.
    """
    summary = summary.reset_index(drop=True)  # positional index: group.index[0] indexes the key lists
    colour_of, style_of = colour_keys(summary), style_keys(summary)
    if len(set(colour_of)) == 1:  # one backbone: colour the heads too, or their bands would be indistinguishable
        colour_of, colour_order = style_of, style_order
    colours = _pick(_palette([*colour_order, *colour_of]), colour_of)
    styles = _pick(_line_styles([*style_order, *style_of]), style_of)
    band_alpha = 0.15 if summary["series"].nunique() <= PER_SERIES_LEGEND_MAX else 0.08  # many bands muddy
    fig = Figure(figsize=(8.0, 4.8), layout="constrained")
    ax = fig.add_subplot()
    for series, group in summary.groupby("series", sort=False):
        group = group.sort_values("x")
        first = int(group.index[0])
        colour = colours[colour_of[first]]
        linestyle, marker = styles[style_of[first]]
        x = group["x"].to_numpy(float)
        low, high = group["ci_low"].to_numpy(float), group["ci_high"].to_numpy(float)
        band = np.isfinite(low) & np.isfinite(high)
        if is_finetune(str(group["head_name"].iloc[0])):
            _finetune_points(
                ax, x, group["mean"].to_numpy(float), low, high, colour=colour, marker=marker, label=series
            )
            continue
        ax.plot(x, group["mean"].to_numpy(float), color=colour, linestyle=linestyle, marker=marker, label=series,
                linewidth=1.6, markersize=5)  # fmt: skip
        if band.any():
            ax.fill_between(x, low, high, where=band, color=colour, alpha=band_alpha, linewidth=0, interpolate=True)
    _label_axes(ax, summary, metric_label=metric_label)
    ax.set_title(title)
    if len(colours) > 1 and len(styles) > 1 and summary["series"].nunique() > PER_SERIES_LEGEND_MAX:
        _factored_legend(fig, colours, styles)
    elif summary["series"].astype(str).str.len().max() <= LONG_LABEL:
        fig.legend(loc="outside right upper", fontsize="small", frameon=False)
    else:  # long labels beside the axes would squeeze them
        fig.legend(loc="outside lower center", ncols=2, fontsize="small", frameon=False)
    return fig


def is_finetune(head: str) -> bool:
    """Fine-tune rows (``finetune-<mode>``) are comparison points overlaid on the probe curves."""
    return head.startswith("finetune-")


def _finetune_points(
    ax: Axes, x: np.ndarray, y: np.ndarray, low: np.ndarray, high: np.ndarray, *, colour: ColorType, marker: str,
    label: str,
) -> None:  # fmt: skip
    """Large hollow markers with 95 % CI bars, joined by a thin dotted line (no band over the probe curves)."""
    bars = np.where(np.isfinite(low) & np.isfinite(high), np.stack([y - low, high - y]), 0.0)
    style: dict[str, Any] = {
        "linestyle": ":",
        "linewidth": 1.0,
        "markersize": 8,
        "markerfacecolor": "white",
        "markeredgewidth": 1.8,
    }
    ax.errorbar(
        x, y, yerr=np.clip(bars, 0.0, None), color=colour, marker=marker, capsize=3, label=label, zorder=3, **style
    )


def figure_bytes(fig: Figure, fmt: str) -> bytes:
    """The figure encoded as ``fmt`` ("png", "svg" or "pdf"), without timestamps, so re-runs are identical."""
    buf = io.BytesIO()
    with mpl.rc_context({"svg.hashsalt": "probe-report"}):
        fig.savefig(buf, format=fmt, dpi=DPI, metadata=_SAVE_METADATA.get(fmt))
    return buf.getvalue()


def colour_keys(summary: pd.DataFrame) -> list[str]:
    """Per row: the backbone, or "backbone (pooling)" when that backbone has several poolings."""
    n_pool = summary.groupby(["dataset", "backbone"])["pooling"].transform("nunique")
    backbone = summary["backbone"].astype(str)
    return backbone.where(n_pool <= 1, backbone + " (" + summary["pooling"].astype(str) + ")").tolist()


def style_keys(summary: pd.DataFrame) -> list[str]:
    """Per row: the head, marked with its regime ("episodes", "fractions") when it has one."""
    head = summary["head_name"].astype(str)
    return head.where(summary["regime"] == "", head + " · " + summary["regime"].astype(str)).tolist()


def _pick(table: dict[str, _T], keys: list[str]) -> dict[str, _T]:
    """The entries of ``table`` that ``keys`` use, in table order (the legend shows only these)."""
    used = set(keys)
    return {k: v for k, v in table.items() if k in used}


def _palette(keys: list[str]) -> dict[str, ColorType]:
    """A distinct colour per key, in order of first appearance."""
    unique = list(dict.fromkeys(keys))
    cmap = mpl.colormaps["tab10" if len(unique) <= 10 else "tab20"]
    return {k: cmap(i % cmap.N) for i, k in enumerate(unique)}


def _line_styles(keys: list[str]) -> dict[str, tuple[LineStyleType, str]]:
    """A distinct (line style, marker) per key, so heads stay apart within one colour."""
    unique = list(dict.fromkeys(keys))
    unique.sort(key=lambda k: is_finetune(k))  # probe heads take the solid styles; fine-tune points come after
    return {k: (LINESTYLES[i % len(LINESTYLES)], MARKERS[i % len(MARKERS)]) for i, k in enumerate(unique)}


def _label_axes(ax: Axes, summary: pd.DataFrame, *, metric_label: str) -> None:
    """log2 x axis ticked at the label levels present ("all" at its labels per class)."""
    ticks = _spaced_ticks(summary.sort_values("x").drop_duplicates("x"))
    ax.set_xscale("log", base=2)
    ax.xaxis.set_major_locator(FixedLocator(ticks["x"].to_numpy(float)))
    ax.xaxis.set_major_formatter(FixedFormatter(ticks["level"].astype(str).tolist()))
    ax.xaxis.set_minor_locator(NullLocator())
    all_x = summary.loc[summary["level"] == ALL, "x"]
    note = f"; all = {all_x.iloc[0]:,.0f} per class" if not all_x.empty else ""
    ax.set_xlabel(f"labels per class (log2 scale{note})")
    ax.set_ylabel(metric_label)
    ax.grid(True, which="major", alpha=0.3)


def _spaced_ticks(levels: pd.DataFrame) -> pd.DataFrame:
    """Levels whose ticks are at least MIN_TICK_GAP apart (greedy from the left; the last, "all", always kept)."""
    log_x = np.log2(levels["x"].to_numpy(float))
    keep: list[int] = []
    for i, lx in enumerate(log_x):
        if keep and lx - log_x[keep[-1]] < MIN_TICK_GAP:
            if i != len(log_x) - 1:
                continue
            keep.pop()  # the rightmost level wins over its close neighbour
        keep.append(i)
    return levels.iloc[keep]


def _factored_legend(fig: Figure, colours: dict[str, ColorType], styles: dict[str, tuple[LineStyleType, str]]) -> None:
    """One legend block of colours (backbones) and one of line styles (heads): n + m entries, not n × m."""
    blank = Line2D([], [], linestyle="none")
    handles: list[Line2D] = [blank]
    labels = ["backbone"]
    for name, colour in colours.items():
        handles.append(Line2D([], [], color=colour, linewidth=3))
        labels.append(name)
    handles.append(blank)
    labels.append("head")
    for name, (linestyle, marker) in styles.items():
        handles.append(Line2D([], [], color="0.25", linestyle=linestyle, marker=marker, markersize=5))
        labels.append(name)
    if max(len(str(name)) for name in [*colours, *styles]) <= LONG_LABEL:
        legend = fig.legend(handles, labels, loc="outside right upper", fontsize="small", frameon=False)
    else:  # long backbone names beside the axes would squeeze them: the two blocks go underneath, side by side
        rows = max(len(colours), len(styles)) + 1
        pad = [blank] * (rows - len(colours) - 1)
        handles = [*handles[: len(colours) + 1], *pad, *handles[len(colours) + 1 :]]
        labels = [*labels[: len(colours) + 1], *([""] * len(pad)), *labels[len(colours) + 1 :]]
        legend = fig.legend(handles, labels, loc="outside lower center", ncols=2, fontsize="small", frameon=False)
    texts = legend.get_texts()
    for i in (0, labels.index("head")):  # the two block headings
        texts[i].set_fontweight("bold")


def panel_figure(
    summary: pd.DataFrame, *, title: str, metric_label: str, panel: str = "head", colour_order: Sequence[str] = ()
) -> Figure:
    """Small multiples of one dataset: one panel per head and one colour per backbone, or the transpose.

    Stays readable with many backbones: each panel holds one line per colour instead of one figure
    holding backbones × heads lines. Panels share the y axis, so heights compare across panels. A
    backbone with several poolings counts as one backbone per pooling (see :func:`colour_keys`);
    fraction and episode lines are dashed, fine-tune heads drawn as points with CI bars.

    Args:
        summary: :func:`probe.report.data.summarise` rows of one dataset.
        title: figure title.
        metric_label: y-axis label.
        panel: ``"head"`` (a panel per head, a colour per backbone) or ``"backbone"`` (the transpose: a
            panel per backbone, a colour per head).
        colour_order: colour keys of the whole report (backbones, or heads for ``panel="backbone"``), so
            a name keeps its colour in every figure.

    Returns:
        A figure with up to three panels per row and one legend of colours underneath.

    Raises:
        ValueError: ``panel`` is neither "head" nor "backbone".
    """
    if panel not in ("head", "backbone"):
        raise ValueError(f"panel_figure(panel={panel!r}): use 'head' or 'backbone'")
    summary = summary.reset_index(drop=True)
    backbones, heads = colour_keys(summary), summary["head_name"].astype(str).tolist()
    panel_of, colour_of = (heads, backbones) if panel == "head" else (backbones, heads)
    colours = _pick(_palette([*colour_order, *colour_of]), colour_of)
    names = list(dict.fromkeys(panel_of))
    ncols = min(3, len(names))
    nrows = -(-len(names) // ncols)
    fig = Figure(figsize=(4.2 * ncols, 3.3 * nrows + 0.8), layout="constrained")
    axes = fig.subplots(nrows, ncols, sharey=True, squeeze=False)
    colour_col = pd.Series(colour_of, index=summary.index)
    for ax, name in zip(axes.flat, names, strict=False):
        part = summary[[p == name for p in panel_of]]
        for (key, regime), group in part.groupby([colour_col[part.index], part["regime"]], sort=False):
            finetune = is_finetune(heads[int(group.index[0])])
            _panel_line(ax, group.sort_values("x"), colour=colours[str(key)], finetune=finetune, regime=str(regime))
        _label_axes(ax, part, metric_label=metric_label)
        ax.set_title(textwrap.fill(name, PANEL_TITLE_WIDTH), fontsize="medium")
        ax.label_outer()
    for ax in list(axes.flat)[len(names) :]:
        ax.set_visible(False)
    fig.suptitle(title)
    handles = [Line2D([], [], color=c, linewidth=3) for c in colours.values()]
    ncol = 1 if max(len(k) for k in colours) > 2 * LONG_LABEL else min(4, len(colours))
    fig.legend(handles, list(colours), loc="outside lower center", ncols=ncol, fontsize="small", frameon=False)
    return fig


def _panel_line(ax: Axes, group: pd.DataFrame, *, colour: ColorType, finetune: bool, regime: str) -> None:
    """One line of a small-multiples panel: seed means with a CI band (fine-tune: points with CI bars)."""
    x, mean = group["x"].to_numpy(float), group["mean"].to_numpy(float)
    low, high = group["ci_low"].to_numpy(float), group["ci_high"].to_numpy(float)
    if finetune:
        _finetune_points(ax, x, mean, low, high, colour=colour, marker="D", label=str(group["series"].iloc[0]))
        return
    style = "--" if regime in (FRACTIONS, EPISODES) else "-"  # draws solid; fractions, episodes dashed
    ax.plot(x, mean, color=colour, linestyle=style, marker="o", markersize=3.5, linewidth=1.4)
    band = np.isfinite(low) & np.isfinite(high)
    if band.any():
        ax.fill_between(x, low, high, where=band, color=colour, alpha=0.12, linewidth=0)
