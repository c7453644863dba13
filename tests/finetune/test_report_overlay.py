"""The report overlays fine-tune points (markers with CI bars) on the probe curves of the same panel."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
from matplotlib.container import ErrorbarContainer

from probe.report import summary_table, write_report
from probe.report.plots import curve_figure
from tests.report.test_report import SEEDS, _row, curve_rows


def _with_finetune() -> pd.DataFrame:
    probes = curve_rows({"efficientnet_lite0": 0.4}, heads=("knn", "linear"))
    ft = [
        _row(backbone="efficientnet_lite0", head_name=f"finetune-{mode}", shots=s, seed=seed, value=v + 0.01 * seed)
        for mode, v in (("full", 0.6), ("lora", 0.55))
        for s in (8, "all")
        for seed in SEEDS
    ]
    frame = pd.concat([probes, pd.DataFrame(ft)], ignore_index=True)
    frame["shots"] = frame["shots"].astype(object)
    return frame


def test_finetune_points_share_the_probe_panel_as_error_bars() -> None:
    summary = summary_table(_with_finetune(), metric="balanced_accuracy")
    assert set(summary["series"]) == {
        "efficientnet_lite0 · knn",
        "efficientnet_lite0 · linear",
        "efficientnet_lite0 · finetune-full",
        "efficientnet_lite0 · finetune-lora",
    }
    ax = curve_figure(summary, title="t", metric_label="balanced accuracy").axes[0]
    bars = [c for c in ax.containers if isinstance(c, ErrorbarContainer)]
    assert sorted(c.get_label() for c in bars) == [
        "efficientnet_lite0 · finetune-full",
        "efficientnet_lite0 · finetune-lora",
    ]
    bands = [c for c in ax.collections if c.__class__.__name__ == "FillBetweenPolyCollection"]
    assert len(bands) == 2  # the probe curves keep their CI bands; fine-tune points carry bars instead
    ft_line = next(c for c in bars if c.get_label().endswith("full")).lines[0]
    assert list(ft_line.get_xdata()) == sorted(summary.loc[summary["head_name"] == "finetune-full", "x"])


def test_report_lists_finetune_beside_the_probes(tmp_path: Path) -> None:
    files = write_report(_with_finetune(), tmp_path / "rep", source="results/")
    md = files.markdown.read_text()
    assert "finetune-full" in md and "finetune-lora" in md and "linear" in md
