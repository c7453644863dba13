"""A short plain-text table of result rows for the terminal (mean and 95 % CI per head and label level)."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from probe.metrics import MIN_SEEDS, mean_ci, metric_range


def _level(row: Mapping[str, Any]) -> tuple[float, str]:
    if row.get("protocol") == "fraction":
        return (float(row["labels_per_class"]), f"{row['fraction']:g}")
    shots = row.get("shots")
    if shots == "all":
        return (float("inf"), "all")
    return (float(str(shots)), str(shots))


def format_table(rows: Sequence[Mapping[str, Any]], *, metric: str = "balanced_accuracy") -> str:
    """Rows = (dataset, backbone, head), columns = label levels, cells = mean [95 % CI] in percent.

    Across several seeds the CI is Student-t over seeds, clipped to the metric's range and marked ``‡``
    below 5 seeds; for a single row it is the row's bootstrap CI. Falls back to the first metric
    present when ``metric`` is absent.
    """
    present = [r for r in rows if r.get("metric") == metric]
    if not present and rows:
        metric = str(rows[0]["metric"])
        present = [r for r in rows if r.get("metric") == metric]
    cells: dict[tuple[str, str, str], dict[tuple[float, str], list[Mapping[str, Any]]]] = defaultdict(
        lambda: defaultdict(list)
    )
    for r in present:
        params = r.get("params")
        removed = params.get("ablate") if isinstance(params, dict) else None
        head = str(r["head_name"]) + (f" without {removed}" if removed else "")  # modality-ablation rows
        cells[(str(r["dataset"]), str(r["backbone"]), head)][_level(r)].append(r)
    levels = sorted({lvl for per in cells.values() for lvl in per})
    header = ["dataset", "backbone", "head", *[lvl[1] for lvl in levels]]
    lines = [header]
    for key in sorted(cells):
        line = list(key)
        for lvl in levels:
            group = cells[key].get(lvl, [])
            line.append(_cell(group, metric_range(metric)))
        lines.append(line)
    widths = [max(len(row[i]) for row in lines) for i in range(len(header))]
    text = [f"{metric} (%; mean [95 % CI]; ‡ fewer than {MIN_SEEDS} seeds)"]
    text += ["  ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)).rstrip() for row in lines]
    return "\n".join(text)


def _cell(group: Sequence[Mapping[str, Any]], bounds: tuple[float, float] | None) -> str:
    if not group:
        return "-"
    values = np.array([float(r["value"]) for r in group if r.get("value") is not None], dtype=float)
    if len(group) == 1:
        lo, hi = group[0].get("ci_low"), group[0].get("ci_high")
        mean = float(values[0]) if values.size else float("nan")
    else:
        mean, lo, hi = mean_ci(values, bounds=bounds)
    if lo is None or hi is None or not np.isfinite(lo) or not np.isfinite(hi):
        return f"{100 * mean:.1f}"
    few = "‡" if 2 <= len(group) < MIN_SEEDS else ""
    return f"{100 * mean:.1f} [{100 * lo:.1f}, {100 * hi:.1f}]{few}"
