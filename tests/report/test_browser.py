"""The report as a person sees it: headless Chromium loads it at 1280 px with no console error, every
image decodes and nothing sticks out past the right edge; the screenshot stays in the report folder.

Chromium is Debian's ``chromium`` (``.ci/run`` installs it when missing); without it the test fails
rather than skips, so a green CI means a real browser looked at the page.
"""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from probe.report import write_report
from probe.report.browser import check_in_browser
from tests.report.test_report import _row

LONG = "timm:vit_large_patch14_reg4_dinov2.lvd142m_with_a_very_long_checkpoint_name"


BACKBONES = (LONG, "efficientnet_lite0", "timm:resnet50.a1_in1k", *(f"timm:convnext_tiny.seed{i}" for i in range(7)))


def _many_levels() -> pd.DataFrame:
    rows = []
    for b, backbone in enumerate(BACKBONES):  # ten backbones: both small multiples must stay readable
        for h, head in enumerate(("knn", "linear", "prototype", "labelspread")):
            for shots in (1, 2, 4, 8, 16, 32, 64, 128, "all"):
                for seed in range(3 if shots != "all" else 1):
                    level = shots if shots != "all" else 256
                    value = 0.4 + 0.04 * (1 + level) ** 0.3 + 0.01 * seed + 0.05 * b - 0.02 * h
                    rows.append(_row(backbone=backbone, head_name=head, shots=shots, seed=seed, value=value))
    return pd.DataFrame(rows)


def test_the_report_reads_at_1280_px_in_a_real_browser(tmp_path: Path) -> None:
    files = write_report(_many_levels(), tmp_path / "report", formats=("png",))
    seen = check_in_browser(files.html, width=1280)
    assert seen.console_errors == [] and seen.broken_images == []
    assert seen.images == len(files.figures) == 2  # ten backbones × four heads: both small multiples
    alt = "balanced accuracy against labels per class on bloodmnist"
    assert seen.image_alts == [f"{alt}, one panel per head", f"{alt}, one panel per backbone"]
    assert seen.overflowing == [] and seen.scroll_width <= 1280, seen
    assert (
        Path(seen.screenshot) == files.html.with_name("screenshot.png")
        and Path(seen.screenshot).stat().st_size > 10_000
    )


def test_the_check_finds_what_a_person_would(tmp_path: Path) -> None:
    page = tmp_path / "bad.html"
    page.write_text(
        '<html><body><img alt="broken" src="data:image/png;base64,AAAA">'
        '<div style="width:3000px">wide</div><script>console.error("boom")</script></body></html>'
    )
    seen = check_in_browser(page)
    assert seen.console_errors == ["boom"] and seen.broken_images == ["broken"] and "div" in seen.overflowing
    assert not seen.ok


def test_probe_report_checks_in_the_browser(tmp_path: Path) -> None:
    import json

    from typer.testing import CliRunner

    from cli.main import app
    from probe.results import ResultRow, append_results

    frame = _many_levels().head(60)
    fields = set(ResultRow.__dataclass_fields__)
    append_results([ResultRow(**{k: v for k, v in r.items() if k in fields}) for r in frame.to_dict("records")],
                   tmp_path / "res")  # fmt: skip
    res = CliRunner().invoke(app, ["report", str(tmp_path / "res"), "--out", str(tmp_path / "rep"),
                                   "--check-in-browser", "--json"])  # fmt: skip
    assert res.exit_code == 0, res.output
    out = json.loads(res.stdout)
    assert out["browser"]["ok"] and (tmp_path / "rep" / "screenshot.png").is_file()
