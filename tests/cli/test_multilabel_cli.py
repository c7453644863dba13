"""``probe curve csv:<multi-label manifest> --label-columns ...`` end to end with a tiny backbone, then the report."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
from PIL import Image
from typer.testing import CliRunner

from cli.main import app
from probe.store import open_store

runner = CliRunner()
LABELS = ("bright", "red", "stripes")


def _manifest(root: Path, n: int = 48) -> Path:
    """Images whose labels are visible: brightness, a red cast, stripes (only on bright images)."""
    rng = np.random.default_rng(0)
    root.mkdir(parents=True)
    lines = ["path,split,patient,bright,red,stripes"]
    for i in range(n):
        split = ("train", "train", "train", "train", "val", "test")[i % 6]
        bright, red = i % 2, (i // 2) % 2
        stripes = int(bright and (i // 4) % 2 == 0)
        a = rng.normal(60 + 120 * bright, 15, size=(24, 24, 3))
        a[..., 0] += 80 * red
        if stripes:
            a[::4] = 255
        Image.fromarray(np.clip(a, 0, 255).astype(np.uint8)).save(root / f"{i}.png")
        red_cell = "-1" if i in (0, 3) else str(red)  # two uncertain entries, train split
        lines.append(f"{i}.png,{split},p{i // 2},{bright},{red_cell},{'' if not stripes and i % 5 == 0 else stripes}")
    path = root / "chest.csv"
    path.write_text("\n".join(lines) + "\n")
    return path


def test_curve_and_report_on_a_multilabel_manifest(tmp_path: Path) -> None:
    manifest = _manifest(tmp_path / "data")
    args = ["curve", f"csv:{manifest}", "--label-columns", ",".join(LABELS), "--uncertain", "ignore"]
    args += ["--backbone", "timm:test_vit", "--random-weights", "--image-size", "32", "--shots", "2,all"]
    args += ["--seeds", "2", "--store-root", str(tmp_path / "emb"), "--results", str(tmp_path / "res")]
    res = runner.invoke(app, [*args, "--bootstrap", "50", "--json"])
    assert res.exit_code == 0, res.output
    rows = json.loads(res.stdout)["results"]
    assert {r["head_name"] for r in rows} == {"knn-k20", "linear", "prototype"}
    metrics = {r["metric"] for r in rows}
    assert {"macro_auroc", "macro_ap", "macro_f1", "auroc[red]", "ap[stripes]", "f1[bright]"} <= metrics
    assert all(r["params"]["label_policy"] == {"uncertain": "ignore", "blank": "zeros"} for r in rows)
    (store_path,) = {s for s in json.loads(res.stdout)["stores"]}
    store = open_store(store_path)
    assert store.labels.shape == (48, 3) and (store.labels == -1).sum() == 2
    assert store.attrs["source"]["label_policy"] == {"uncertain": "ignore", "blank": "zeros"}
    # another policy is another store (its fingerprint differs), never a silently reused one
    zeros = runner.invoke(app, [*args[:5], "zeros", *args[6:], "--bootstrap", "0", "--heads", "prototype", "--json"])
    assert zeros.exit_code == 0, zeros.output
    assert json.loads(zeros.stdout)["stores"] != [store_path]
    out = tmp_path / "report"
    rep = runner.invoke(app, ["report", str(tmp_path / "res"), "--metric", "macro_auroc", "--out", str(out), "--json"])
    assert rep.exit_code == 0, rep.output
    text = Path(json.loads(rep.stdout)["markdown"]).read_text()
    assert "macro AUROC" in text and "linear" in text
    bad = runner.invoke(app, [*args[:5], "maybe", *args[6:]])
    assert bad.exit_code == 1 and "--uncertain 'maybe' is invalid" in bad.output
