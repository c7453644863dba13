"""The wide table of a study: one row per (dataset, configuration), one column per (metric, label level).

Cells are the mean across seeds with its 95 % interval (Student-t across seeds, or the row's bootstrap
interval where seeds agree), exactly the numbers of the report's curve tables, so a spreadsheet and
the report never disagree.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import pandas as pd

from probe.errors import MetricError
from probe.report.data import curve_points, metric_rows, summarise

#: Row key of the wide table: a dataset and one probed configuration.
ROW_KEYS = ["dataset", "backbone", "pooling", "head_name", "regime"]


def _levels(summary: pd.DataFrame) -> list[str]:
    order = summary.drop_duplicates("level").sort_values("x", kind="stable")
    return [str(v) for v in order["level"]]


def wide_table(results: pd.DataFrame, *, metrics: Sequence[str] | None = None) -> pd.DataFrame:
    """Pivot result rows into one row per (dataset, configuration) and columns ``<metric>@<level>``.

    Args:
        results: rows as :func:`probe.results.load_results` returns them.
        metrics: metrics to include (default: every metric with values, in first-seen order).

    Returns:
        ``ROW_KEYS`` columns, then for each metric and level (ascending labels per class) three
        columns: ``<metric>@<level>`` (mean), ``<metric>@<level>:low`` and ``<metric>@<level>:high``.

    Raises:
        ResultsError: no rows; MetricError: a metric absent from the results.
    """
    names = list(metrics) if metrics else list(dict.fromkeys(str(m) for m in results["metric"].dropna()))
    table: pd.DataFrame | None = None
    for metric in names:
        summary = summarise(curve_points(metric_rows(results, metric)))
        cols: dict[str, pd.Series] = {}
        for level in _levels(summary):
            at = summary[summary["level"].astype(str) == level].set_index(ROW_KEYS)
            cols[f"{metric}@{level}"] = at["mean"]
            cols[f"{metric}@{level}:low"] = at["ci_low"]
            cols[f"{metric}@{level}:high"] = at["ci_high"]
        block = pd.DataFrame(cols)
        table = block if table is None else table.join(block, how="outer")
    if table is None:
        raise MetricError("no metric to tabulate; pass metrics present in the results")
    return table.reset_index().sort_values(ROW_KEYS, kind="stable").reset_index(drop=True)


def wide_markdown(table: pd.DataFrame) -> str:
    """The wide table as Markdown: ``mean [low, high]`` per (metric, level), ``—`` where not run."""
    means = [c for c in table.columns if "@" in c and not c.endswith((":low", ":high"))]
    header = [*ROW_KEYS, *means]
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for _, row in table.iterrows():
        cells = [str(row[k]) for k in ROW_KEYS]
        for col in means:
            mean, low, high = row[col], row[f"{col}:low"], row[f"{col}:high"]
            if not isinstance(mean, float) or math.isnan(mean):
                cells.append("—")
            elif isinstance(low, float) and math.isfinite(low) and math.isfinite(high):
                cells.append(f"{mean:.3f} [{low:.3f}, {high:.3f}]")
            else:
                cells.append(f"{mean:.3f}")
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"
