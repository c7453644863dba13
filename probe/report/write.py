"""Reports from result rows: label-efficiency figures, curve tables and leaderboards in Markdown and HTML.

A report is a derived artefact: :func:`write_report` overwrites ``report.md``, ``report.html`` and the
figures of its folder (each written under a temporary name and renamed, so a kill never leaves a
half-written file), and reads nothing but the result rows it is given.
"""

from __future__ import annotations

import math
import re
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import pandas as pd
from matplotlib.figure import Figure

from probe.atomic import write_atomic
from probe.errors import ConfigError, MetricError, ResultsError
from probe.metrics import metric_label
from probe.report.data import (
    EPISODES,
    FRACTIONS,
    ablation_summary,
    curve_points,
    labelled,
    metric_rows,
    rank,
    summarise,
    val_points,
)
from probe.report.overlays import load_examples, overlay_figure
from probe.report.plots import colour_keys, curve_figure, figure_bytes, is_finetune, panel_figure, style_keys
from probe.report.render import Document, Section, SectionFigure, Table, render_html, render_markdown
from probe.setups import describe_store_setup
from probe.store_url import is_url

FIGURE_FORMATS = ("png", "svg", "pdf")
SEG_REPORT_METRICS = ("dice", "iou")  # shown for segmentation rows whatever the requested metrics
MARKDOWN_FILE = "report.md"
HTML_FILE = "report.html"
FIGURES_DIR = "figures"
NOTES = (
    "Points and values are means over seeds; brackets and shaded bands are 95 % Student-t confidence "
    "intervals across seeds. Where there is one seed, or every seed gave the same value (identical draws), "
    "the bracket is that run's 95 % bootstrap interval over the test set (marked †). Intervals are clipped to "
    "the metric's range; ‡ marks an interval from fewer than 5 seeds (too few for a trustworthy Student-t "
    "interval).",
)


@dataclass(frozen=True)
class ReportFiles:
    """The files one :func:`write_report` call wrote."""

    markdown: Path  # report.md: figures linked from figures/
    html: Path  # report.html: self-contained, figures embedded
    figures: tuple[Path, ...]  # every figure file, each dataset in every requested format


def summary_table(results: pd.DataFrame, *, metric: str) -> pd.DataFrame:
    """Mean and 95 % CI across seeds of every point of every label-efficiency curve.

    Args:
        results: result rows (:func:`probe.results.load_results`).
        metric: metric to summarise, e.g. ``"balanced_accuracy"``.

    Returns:
        One row per (dataset, backbone, pooling, head, regime, level), ordered by dataset, line and x,
        with columns ``dataset, backbone, pooling, head_name, regime`` (``"episodes"`` or ``""``), ``level``
        (``"1"``, ``"10%"``, ``"all"``, ...), ``x`` (labels per class), ``series`` (line label),
        ``n_seeds, mean, ci_low, ci_high`` and ``ci_source`` (``"seeds"``, ``"bootstrap"`` or ``"none"``).

    Raises:
        ResultsError: no usable rows.
        MetricError: ``metric`` is not in the results.
    """
    return summarise(curve_points(metric_rows(results, metric)))  # metric_rows names the setups


def leaderboard(results: pd.DataFrame, *, metric: str) -> pd.DataFrame:
    """Per dataset, backbones (or heads, with a single backbone) ranked by their best configuration.

    A unit's configuration is chosen without test scores (validation mean where the results hold
    validation-split rows, else the linear head on the first pooling); units are ranked by ``score``, their
    mean over the (regime, level, seed) points all ranked configurations share, and ``delta`` = other −
    leader on those same points with a paired-bootstrap CI and a Wilcoxon signed-rank ``p_value``.

    Args:
        results: result rows (:func:`probe.results.load_results`).
        metric: metric to rank by (higher is better).

    Returns:
        Columns ``dataset, rank, unit`` (``"backbone"`` or ``"head"``), ``name, config, selection, score,
        n_points, backbone, pooling, head_name, regime, level, x, n_seeds, mean, ci_low, ci_high, ci_source,
        few_seeds, delta, delta_low, delta_high, p_value, n_pairs`` (comparison columns NaN for the leader).

    Raises:
        ResultsError: no usable rows.
        MetricError: ``metric`` is not in the results.
    """
    results = labelled(results)
    points = curve_points(metric_rows(results, metric))
    return rank(points, summarise(points), val_points=val_points(results, metric))


def write_report(
    results: pd.DataFrame,
    out_dir: str | Path,
    *,
    metric: str | Sequence[str] = "balanced_accuracy",
    formats: Sequence[str] = ("png", "svg"),
    title: str = "probe report",
    source: str | None = None,
    examples: str | Path | None = None,
) -> ReportFiles:
    """Write ``report.md``, a self-contained ``report.html`` and the figures into ``out_dir``.

    One section per (dataset, metric): the figure, the leaderboard and the curve table; few-shot
    episodes and modality ablations get their own tables. When several backbones and several heads
    are compared, the figure is small multiples drawn twice: a panel per head with a colour per
    backbone, and the transpose, a panel per backbone with a colour per head.

    Args:
        results: result rows (:func:`probe.results.load_results`).
        out_dir: folder to write into (created when missing; earlier report files there are replaced).
        metric: the metric to plot and rank by, or several (the first must be in the results; later
            ones are shown for the datasets that have them, e.g. MedMNIST's ACC next to AUC).
        formats: figure file formats, any of "png", "svg", "pdf"; the Markdown links the first.
        title: report title.
        source: where the results came from (a path), named in the provenance lines.
        examples: a results folder (or its results file) whose ``examples/`` holds the example predictions
            segmentation curves kept; each dataset that has them gets an overlay figure (a URL has none:
            overlays are kept beside local results only).

    Returns:
        The paths written.

    Raises:
        ResultsError: the table is empty or unusable.
        MetricError: the first metric is not in the results.
        ConfigError: an unknown or empty figure format list.
    """
    fmts = _check_formats(formats)
    results = labelled(results)  # every view below (leaderboard, validation points, ablations) sees the names
    metrics = [metric] if isinstance(metric, str) else list(dict.fromkeys(metric))
    if not metrics:
        raise ConfigError("write_report(metric=[]) names no metric; pass e.g. metric='balanced_accuracy'")
    segmentation = "dice" in set(results["metric"].astype(str)) if "metric" in results else False
    if segmentation:  # segmentation rows are shown by Dice and IoU next to the classification metrics
        metrics += [m for m in SEG_REPORT_METRICS if m not in metrics]
    per_metric = {} if segmentation else {metrics[0]: metric_rows(results, metrics[0])}  # the main metric
    for m in metrics:
        try:
            per_metric.setdefault(m, metric_rows(results, m))
        except (MetricError, ResultsError):  # an extra metric absent from these results: not shown
            continue
    out = Path(out_dir)
    (out / FIGURES_DIR).mkdir(parents=True, exist_ok=True)
    figures: list[Path] = []
    sections: list[Section] = []
    views = {m: _metric_view(results, rows, m) for m, rows in per_metric.items()}  # once per metric
    every = pd.concat(v.summary for v in views.values())
    colour_order = colour_keys(every)  # a backbone (and a head, in the transposed panels) keeps its colour
    head_order = list(dict.fromkeys(str(h) for h in every["head_name"]))
    for dataset in sorted({d for v in views.values() for d in v.summary["dataset"].unique()}, key=str):
        for m, view in views.items():
            if not (view.summary["dataset"] == dataset).any():
                continue
            files, section = _section(
                view, dataset=dataset, metric=m, out=out, fmts=fmts, colour_order=colour_order,
                head_order=head_order, several=len(per_metric) > 1,
            )  # fmt: skip
            figures += files
            sections.append(section)
        if examples is not None and not is_url(str(examples)):  # overlays are kept beside local results only
            folder = Path(examples) if Path(examples).is_dir() else Path(examples).parent
            files, shown = _example_sections(folder, results, dataset=str(dataset), out=out)
            figures += files
            sections += shown
    provenance = _provenance_section(results)
    main = next(m for m in metrics if m in per_metric)  # the first requested metric the results have
    doc = Document(title, _provenance(results, per_metric[main], metric=main, source=source), NOTES,
                   (*sections, *([provenance] if provenance else [])))  # fmt: skip
    md, page = out / MARKDOWN_FILE, out / HTML_FILE
    write_atomic(md, render_markdown(doc))  # a temporary name, then a rename: never a half-written report
    write_atomic(page, render_html(doc))
    return ReportFiles(markdown=md, html=page, figures=tuple(figures))


@dataclass(frozen=True)
class _MetricView:
    """One metric's rows, seed summaries, leaderboard and ablation summary, for every dataset at once."""

    rows: pd.DataFrame  # metric_rows of the metric
    summary: pd.DataFrame  # summarise(curve_points(rows))
    board: pd.DataFrame  # rank(...): the leaderboard rows of every dataset
    ablation: pd.DataFrame  # ablation_summary(...) (empty without modality-ablation rows)


def _metric_view(results: pd.DataFrame, rows: pd.DataFrame, metric: str) -> _MetricView:
    points = curve_points(rows)
    summary = summarise(points)
    board = rank(points, summary, val_points=val_points(results, metric))
    return _MetricView(rows, summary, board, ablation_summary(results, metric))


def _section(
    view: _MetricView, *, dataset: str, metric: str, out: Path, fmts: tuple[str, ...], colour_order: list[str],
    head_order: list[str], several: bool,
) -> tuple[list[Path], Section]:  # fmt: skip
    """The figure files and the report section of one (dataset, metric)."""
    label = _metric_label(metric)
    rows, board, ablation = view.rows, view.board, view.ablation
    part = view.summary[view.summary["dataset"] == dataset]
    stem = f"{_slug(str(dataset))}-{_slug(metric)}"
    unit = _unit(rows[rows["dataset"] == dataset])
    files, figures = _write_figures(part, dataset=dataset, out=out, stem=stem, fmts=fmts, metric_label=label,
                                    colour_order=colour_order, head_order=head_order, x_label=unit)  # fmt: skip
    draws, episodes = part[part["regime"] != EPISODES], part[part["regime"] == EPISODES]
    spread = None if unit else _all_range(rows[rows["dataset"] == dataset])
    tables: tuple[tuple[str, Table], ...] = (
        (f"Leaderboard ({label})", _leaderboard_table(board[board["dataset"] == dataset], metric_label=label)),
    )
    if not draws.empty:
        tables += ((f"Label-efficiency curve ({label})", _curve_table(draws, all_range=spread, unit=unit)),)
    if not episodes.empty:
        tables += ((f"Few-shot episodes ({label}): mean over episodes", _curve_table(episodes)),)
    if not ablation.empty and (ablation["dataset"] == dataset).any():
        table = _ablation_table(ablation[ablation["dataset"] == dataset])
        tables += ((f"Modality ablation ({label}): one modality removed at test time", table),)
    heading = f"{dataset} · {label}" if several else str(dataset)
    return files, Section(heading, figures, tables)


def _check_formats(formats: Sequence[str]) -> tuple[str, ...]:
    fmts = tuple(
        dict.fromkeys(str(f).lower().lstrip(".") for f in ([formats] if isinstance(formats, str) else formats))
    )
    bad = [f for f in fmts if f not in FIGURE_FORMATS]
    if bad or not fmts:
        raise ConfigError(
            f"figure formats {list(formats)!r} are not usable; pass one or more of {', '.join(FIGURE_FORMATS)}"
        )
    return fmts


def _metric_label(metric: str) -> str:
    try:
        return metric_label(metric)
    except MetricError:  # a metric this probe version does not know, from an older or newer results file
        return metric


def _slug(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9._-]+", "_", text).strip("._") or "unnamed"


def _write_figures(
    summary: pd.DataFrame, *, dataset: str, out: Path, stem: str, fmts: tuple[str, ...], metric_label: str,
    colour_order: list[str], head_order: list[str], x_label: str | None = None,
) -> tuple[list[Path], tuple[SectionFigure, ...]]:  # fmt: skip
    """Write the figures of one (dataset, metric) in every format; returns the paths and the section's figures.

    Several backbones and several heads: small multiples twice, a panel per head with a colour per backbone
    (``<stem>``) and its transpose, a panel per backbone with a colour per head (``<stem>-by-backbone``);
    otherwise one panel with a line per configuration.
    """
    x = x_label or "labels per class"  # segmentation: labelled images (or volumes)
    title = f"{dataset}: {metric_label} vs {x}"
    alt = f"{metric_label} against {x} on {dataset}"
    probes = summary[~summary["head_name"].astype(str).map(is_finetune)]
    figures: list[tuple[str, Figure, str, str]] = []  # (file stem, figure, alt text, caption)
    if probes["backbone"].nunique() >= 2 and probes["head_name"].nunique() >= 2:
        by_head = panel_figure(summary, title=title, metric_label=metric_label, colour_order=colour_order)
        by_backbone = panel_figure(summary, title=title, metric_label=metric_label, panel="backbone",
                                   colour_order=head_order)  # fmt: skip
        figures.append((stem, by_head, f"{alt}, one panel per head", "One panel per head, one colour per backbone."))
        figures.append((f"{stem}-by-backbone", by_backbone, f"{alt}, one panel per backbone",
                        "The same points transposed: one panel per backbone, one colour per head."))  # fmt: skip
    else:
        fig = curve_figure(summary, title=title, metric_label=metric_label, colour_order=colour_order,
                           style_order=sorted(set(style_keys(summary))))  # fmt: skip
        figures.append((stem, fig, alt, ""))
    paths: list[Path] = []
    shown: list[SectionFigure] = []
    for name, fig, text, caption in figures:
        if x_label:  # the figures' x axes say what the curve counts
            for ax in fig.axes:
                ax.set_xlabel(ax.get_xlabel().replace("labels per class", x_label))
        png = figure_bytes(fig, "png")
        written = []
        for fmt in fmts:
            path = out / FIGURES_DIR / f"{name}.{fmt}"
            write_atomic(path, png if fmt == "png" else figure_bytes(fig, fmt))
            written.append(path)
        paths += written
        shown.append(SectionFigure(written[0].relative_to(out).as_posix(), png, text, caption))
    return paths, tuple(shown)


def _leaderboard_table(board: pd.DataFrame, *, metric_label: str) -> Table:
    unit = str(board["unit"].iloc[0])
    score, delta = f"{metric_label}: mean over shared points", "Δ vs leader [95 % CI]"
    headers = ("#", unit, "configuration", "chosen by", score, "points", delta, "Wilcoxon p", "pairs")
    rows = []
    for r in board.itertuples(index=False):
        leader = r.rank == 1
        rows.append(
            (
                str(r.rank),
                str(r.name),
                str(r.config),
                str(r.selection),
                f"{r.score:.3f}" if math.isfinite(r.score) else "—",
                str(r.n_points),
                "leader" if leader else _delta_text(r.delta, r.delta_low, r.delta_high, n_pairs=r.n_pairs),
                "—" if leader or not math.isfinite(r.p_value) else _p_text(r.p_value),
                "—" if leader else str(int(r.n_pairs)),
            )
        )
    note = (
        f"Each {unit} is represented by one configuration chosen without the test split: by its validation mean "
        "where validation rows exist, else by a rule fixed in advance (the linear head, the first pooling). "
        f"Rank and Δ use one quantity: the mean over the (label level, seed) points every ranked {unit} has; "
        f"Δ = that {unit} − the leader on those points, paired, with a paired-bootstrap 95 % CI and a Wilcoxon "
        "signed-rank p. A comparison needs at least 2 shared points: — otherwise (pairs says how many)."
    )
    return Table(headers, tuple(rows), note)


def _all_range(rows: pd.DataFrame) -> tuple[int, int] | None:
    """Smallest and largest class count of the whole training split (recorded on full-data rows)."""
    ranges = [
        p["per_class_range"]
        for p, protocol in zip(rows["params"], rows["protocol"], strict=True)
        if protocol == "full" and isinstance(p, dict) and p.get("per_class_range")
    ]
    return (min(r[0] for r in ranges), max(r[1] for r in ranges)) if ranges else None


def _unit(rows: pd.DataFrame) -> str | None:
    """What a segmentation curve's x counts ("labelled images" / "labelled volumes"); None for classification."""
    units = sorted({str(p["unit"]) for p in rows["params"] if isinstance(p, dict) and p.get("unit")})
    return f"labelled {units[0]}s" if units else None


def _example_sections(
    results_dir: Path, results: pd.DataFrame, *, dataset: str, out: Path
) -> tuple[list[Path], list[Section]]:
    """The overlay figure of a dataset's kept example predictions (none when the curve kept none)."""
    if "dataset_fingerprint" not in results:
        return [], []
    prints = set(results.loc[results["dataset"] == dataset, "dataset_fingerprint"].astype(str))
    found = [ex for ex in load_examples(results_dir) if ex.dataset_fingerprint in prints]
    if not found:
        return [], []
    png = figure_bytes(overlay_figure(found[0]), "png")
    path = out / FIGURES_DIR / f"{_slug(dataset)}-examples.png"
    write_atomic(path, png)
    alt = f"example test images of {dataset} with ground truth and predicted masks overlaid"
    caption = "Rows: test images; columns: the image, the ground truth, then each backbone · head's prediction."
    shown = SectionFigure(path.relative_to(out).as_posix(), png, alt, caption)
    return [path], [Section(f"{dataset} · example predictions", (shown,), ())]


def _curve_table(summary: pd.DataFrame, *, all_range: tuple[int, int] | None = None, unit: str | None = None) -> Table:
    levels = summary.sort_values("x").drop_duplicates("level")
    columns = [str(lv) for lv in levels["level"]]
    headers = ["configuration"]
    for lv, x in zip(levels["level"], levels["x"], strict=True):
        if lv.isdigit():
            headers.append(str(lv))
        elif lv == "all" and all_range is not None and all_range[0] != all_range[1]:
            headers.append(f"all ({all_range[0]:,}–{all_range[1]:,}/class)")  # min–max: the split is imbalanced
        elif unit:
            headers.append(f"{lv} ({x:,.0f} {unit.removeprefix('labelled ')})")
        else:
            headers.append(f"{lv} ({x:,.0f}/class)")
    rows = []
    order = summary.sort_values(["backbone", "pooling", "head_name", "regime", "x"])
    for series, group in order.groupby("series", sort=False):
        cells = {str(r.level): f"{_point_text(r)} n={r.n_seeds}" for r in group.itertuples(index=False)}
        rows.append((str(series), *(cells.get(c, "—") for c in columns)))
    note = (
        'Columns are labels per class ("all": the whole training split, with its smallest–largest class); '
        "n = seeds; — not run."
        if not unit
        else f'Columns are {unit} ("all": the whole training split); n = seeds; — not run.'
    )
    if (summary["regime"] == EPISODES).any():
        note += " Episode lines average over few-shot episodes instead of class-balanced draws."
    if (summary["regime"] == FRACTIONS).any():
        note += " Fraction lines draw a stratified share of the training split (class imbalance kept)."
    return Table(tuple(headers), tuple(rows), note)


def _ablation_table(summary: pd.DataFrame) -> Table:
    """The curve table of ablated configurations: each as evaluated, then without each modality."""
    table = _curve_table(summary)
    note = (
        "Each head is trained once per draw with every modality; its lines 'without <modality>' score the same "
        "fitted head on the test split with that modality removed from every sample (zeros and a 0 indicator "
        "for concat fusion, the mean of the remaining modalities for mean fusion). A large drop marks a "
        "modality the head relies on."
    )
    return Table(table.headers, table.rows, note)


def _point_text(r: Any) -> str:
    """A summary row's mean [CI] with its markers (see :func:`_ci_text`)."""
    return _ci_text(r.mean, r.ci_low, r.ci_high, bootstrap=r.ci_source == "bootstrap", few=bool(r.few_seeds))


def _ci_text(mean: float, low: float, high: float, *, bootstrap: bool = False, few: bool = False) -> str:
    if not (math.isfinite(low) and math.isfinite(high)):
        return f"{mean:.3f}"
    return f"{mean:.3f} [{low:.3f}, {high:.3f}]" + ("†" if bootstrap else "") + ("‡" if few else "")


def _delta_text(delta: float, low: float, high: float, *, n_pairs: float) -> str:
    if not n_pairs >= 2:
        return f"— ({int(n_pairs) if math.isfinite(n_pairs) else 0} shared point(s); needs ≥ 2)"
    return f"{delta:+.3f} [{low:+.3f}, {high:+.3f}]"


def _p_text(p: float) -> str:
    return f"{p:.1e}" if p < 1e-3 else f"{p:.3f}"


def _provenance(results: pd.DataFrame, rows: pd.DataFrame, *, metric: str, source: str | None) -> tuple[str, ...]:
    """Lines naming the results reported: source, counts, stores, versions and when."""
    lines = [f"Results: {source}"] if source else []
    counts = f"{len(results)} result rows, {len(rows)} of them {metric}"
    if "run_id" in results:
        counts += f", from {_count(results['run_id'], 'run')}"
    if "time" in results and results["time"].notna().any():
        times = results["time"].dropna().astype(str)
        counts += f", produced {times.min()} to {times.max()}"
    lines.append(counts + f"; {_count(rows['dataset'], 'dataset')}, {_count(rows['backbone'], 'backbone')}.")
    if "store_fingerprint" in rows:
        stores = sorted({str(f)[:12] for f in rows["store_fingerprint"].dropna()})
        lines.append(f"Embedding stores: {_listing(stores)}.")
    if "setup" in rows:
        name = rows["backbone_name"] if "backbone_name" in rows else rows["backbone"]
        setups = sorted(
            {
                describe_store_setup(str(b), s if isinstance(s, dict) else {})
                for b, s in zip(name, rows["setup"], strict=True)
            }
        )
        lines.append(f"Setups: {'; '.join(setups)}.")
    versions = _versions(rows)
    if versions:
        lines.append("Versions: " + "; ".join(f"{k} {', '.join(v)}" for k, v in versions.items()) + ".")
    lines.append(f"Generated {datetime.now(timezone.utc).isoformat(timespec='seconds')}.")
    return tuple(lines)


PROVENANCE_VERSIONS = ("torch", "timm", "scikit-learn", "faiss-cpu")


def _provenance_section(results: pd.DataFrame) -> Section | None:
    """One row per (dataset, backbone, store): fingerprint, weights, sizes, pooling, versions, command, date."""
    if "setup" not in results or "store_fingerprint" not in results:
        return None
    name = results["backbone_name"] if "backbone_name" in results else results["backbone"]
    seen: dict[tuple[str, str, str], dict[str, Any]] = {}
    for i, (dataset, backbone, setup) in enumerate(zip(results["dataset"], name, results["setup"], strict=True)):
        setup = setup if isinstance(setup, dict) else {}
        key = (str(dataset), str(backbone), str(results["store_fingerprint"].iloc[i]))
        if key in seen:
            continue
        row = results.iloc[i]
        versions = row.get("versions") if isinstance(row.get("versions"), dict) else {}
        seen[key] = {
            "store": key[2][:12],
            "weights": str(setup.get("weights", "?")),
            "size": f"{setup.get('image_size', '?')} px" + (f" from {setup['source_resolution']} px"
                                                             if setup.get("source_resolution") else ""),
            "pooling": str(row.get("pooling", "")),
            "versions": ", ".join(f"{k} {versions[k]}" for k in PROVENANCE_VERSIONS if k in versions),
            "command": str(row.get("command", "") or "—"),
            "date": str(row.get("time", ""))[:10] or "—",
        }  # fmt: skip
    headers = ("dataset", "backbone", "store", "weights", "input size", "pooling", "versions", "command", "date")
    rows = tuple((d, b, *v.values()) for (d, b, _), v in sorted(seen.items()))
    note = "One row per dataset × backbone × store: where every number of this report came from."
    return Section("Provenance", (), (("Stores, weights and runs", Table(headers, rows, note)),))


def _count(col: pd.Series, noun: str) -> str:
    n = col.nunique()
    return f"{n} {noun}" + ("" if n == 1 else "s")


def _listing(items: list[str], limit: int = 8) -> str:
    shown = ", ".join(items[:limit])
    return shown + (f" (+{len(items) - limit} more)" if len(items) > limit else "") if items else "none recorded"


def _versions(rows: pd.DataFrame) -> dict[str, list[str]]:
    """probe and torch versions seen in the rows (several values mean mixed versions)."""
    seen: dict[str, set[str]] = {"probe": set(), "torch": set()}
    for entry in rows.get("versions", ()):
        if isinstance(entry, dict):
            for name, found in seen.items():
                if entry.get(name):
                    found.add(str(entry[name]))
    return {name: sorted(v) for name, v in seen.items() if v}
