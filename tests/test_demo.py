"""``probe demo`` on a tiny slice of BloodMNIST: its report shows the metrics ``probe report`` shows by default."""

from __future__ import annotations

from pathlib import Path

import pytest

from probe.demo import DemoConfig, run_demo
from probe.evaluate import PlanConfig
from probe.report.defaults import REPORT_METRICS


# 64 images per split leave many ReLU columns all zero: the warning is right, and beside the point here
@pytest.mark.filterwarnings("ignore::probe.evaluate.data.DegenerateFeaturesWarning")
def test_the_demo_reports_the_default_report_metrics(medmnist_root: Path, tmp_path: Path) -> None:
    plan = PlanConfig(heads=("knn", "prototype"), shots=(1, "all"), seeds=1, bootstrap=0)
    config = DemoConfig(image_size=64, limit=64, plan=plan, store_root=str(tmp_path / "emb"),
                        results_dir=str(tmp_path / "results"), report_dir=str(tmp_path / "report"))  # fmt: skip
    result = run_demo(config, data_root=str(medmnist_root), device="cpu")
    assert config.metrics == REPORT_METRICS == ("balanced_accuracy", "accuracy", "macro_auroc")
    md = Path(result.report_md).read_text()
    for label in ("balanced accuracy", "accuracy", "macro AUROC (one-vs-rest)"):  # one section each, own leaderboard
        assert f"## bloodmnist_28-first64 · {label}\n" in md and f"### Leaderboard ({label})" in md
    assert md.index("· balanced accuracy\n") < md.index("· accuracy\n") < md.index("· macro AUROC")
    assert [Path(f).name for f in result.figures if f.endswith(".png")] == [
        f"bloodmnist_28-first64-{m}.png" for m in REPORT_METRICS
    ]
    assert result.table.startswith("balanced_accuracy ")  # the terminal table shows the ranking metric
