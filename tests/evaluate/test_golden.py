"""The evaluation core gives the recorded numbers: every row's value, CI, params and sample digest, and
the report's text, equal ``golden.json`` (recorded before the core was regrouped into packages)."""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

from tests.evaluate.golden import GOLDEN, produce


def _same(a: Any, b: Any, where: str) -> None:
    if isinstance(a, float) and isinstance(b, float):
        assert math.isclose(a, b, rel_tol=1e-9, abs_tol=1e-12), f"{where}: {a!r} != {b!r}"
    elif isinstance(a, dict) and isinstance(b, dict):
        assert a.keys() == b.keys(), f"{where}: keys {sorted(a)} != {sorted(b)}"
        for k in a:
            _same(a[k], b[k], f"{where}.{k}")
    elif isinstance(a, list) and isinstance(b, list):
        assert len(a) == len(b), f"{where}: {len(a)} items != {len(b)}"
        for i, (x, y) in enumerate(zip(a, b, strict=True)):
            _same(x, y, f"{where}[{i}]")
    else:
        assert a == b, f"{where}: {a!r} != {b!r}"


def test_outputs_equal_the_golden_record(tmp_path: Path, medmnist_root: Path) -> None:
    golden = json.loads(GOLDEN.read_text())
    got = json.loads(json.dumps(produce(tmp_path, medmnist_root)))  # the same JSON round trip as the record
    assert got.keys() == golden.keys()
    for name in golden:
        _same(got[name], golden[name], name)
