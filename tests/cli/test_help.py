"""The CLI answers at once and its help reads as written: lazy imports, plain help text, one name per option."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from typer.testing import CliRunner

from cli.main import app
from tests.conftest import REPO, write_feature_store

runner = CliRunner()


def test_help_imports_no_torch_and_keeps_brackets() -> None:
    code = (
        "import sys\nfrom typer.testing import CliRunner\nfrom cli.main import app\n"
        "out = CliRunner().invoke(app, ['curve', '--help']).output\n"
        "assert 'medmnist:<name>[@size]' in out, out\n"
        "assert 'torch' not in sys.modules and 'numpy' not in sys.modules, 'help imported the stack'\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True, cwd=REPO)


def test_version_and_option_names() -> None:
    res = runner.invoke(app, ["--version"])
    assert res.exit_code == 0 and res.output.startswith("probe 0.")
    linear = runner.invoke(app, ["linear", "--help"]).output
    assert "--no-save" in linear and "--no-no-save" not in linear and "--c, --C" in linear
    assert "open_clip:<arch>@<tag>" in linear
    curve = runner.invoke(app, ["curve", "--help"]).output
    assert all(flag in curve for flag in ("--batch-size", "--precision", "--resolution", "--store-root"))
    assert "--bootstrap" in runner.invoke(app, ["fewshot", "--help"]).output
    for command in ("curve", "linear", "knn"):
        assert "[default: 5]" in runner.invoke(app, [command, "--help"]).output.split("--seeds")[1][:200]


def test_store_ls_takes_the_root_as_option_or_argument(tmp_path: Path) -> None:
    import numpy as np

    write_feature_store(tmp_path / "emb", np.zeros((4, 2), np.float32), np.array([0, 1, 0, 1]), np.array([0, 0, 2, 2]))
    by_option = runner.invoke(app, ["store", "ls", "--store-root", str(tmp_path / "emb"), "--json"])
    by_argument = runner.invoke(app, ["store", "ls", str(tmp_path / "emb"), "--json"])
    assert by_option.exit_code == 0 and json.loads(by_option.stdout) == json.loads(by_argument.stdout)
    (store,) = json.loads(by_option.stdout)["stores"]
    assert {"image_size", "resolution", "weights"} <= set(store)
    text = runner.invoke(app, ["store", "ls", "--store-root", str(tmp_path / "emb")]).output
    assert " px " in text and "weights " in text
