"""docs/python.md stays true: its code runs on real data, and it names every export and result column."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from tests.conftest import REPO

DOC = REPO / "docs" / "python.md"


def _blocks() -> list[str]:
    return re.findall(r"```python\n(.*?)```", DOC.read_text(), re.S)


def test_every_export_and_result_column_is_documented() -> None:
    import probe
    from probe.results import FIELDS

    text = DOC.read_text()
    assert [n for n in probe.__all__ if f"`{n}`" not in text] == []
    assert [f for f in FIELDS if f"`{f}`" not in text] == []


def test_the_code_blocks_run(medmnist_root: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("PROBE_DATA_ROOT", str(medmnist_root))
    namespace: dict[str, object] = {}
    for block in _blocks():
        exec(compile(block, str(DOC), "exec"), namespace)
    assert (tmp_path / "report" / "report.html").is_file() and (tmp_path / "results" / "results.jsonl").is_file()
