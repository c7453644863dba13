"""Shared by the bench scripts: the repository root, the machine's CPU name, and docs/benchmarks.md sections.

The scripts run as ``python bench/bench_<x>.py``, so ``bench/`` is first on ``sys.path`` (in the
script and in every process it spawns): no script may be named like a package it imports, hence
the ``bench_`` prefix. The repository root is added after it, so ``probe`` is this checkout's
package even when another checkout is installed.
"""

from __future__ import annotations

import platform
import re
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:
    sys.path.insert(1, str(REPO))


def cpu_name() -> str:
    """The CPU model from /proc/cpuinfo (the platform's processor string elsewhere)."""
    try:
        m = re.search(r"model name\s*:\s*(.+)", Path("/proc/cpuinfo").read_text())
        return m.group(1).strip() if m else platform.processor()
    except OSError:
        return platform.processor()


def write_section(path: Path, label: str, section: str) -> None:
    """Replace (or append) the ``<!-- bench:<label>:start/end -->`` section of ``path``."""
    start, end = f"<!-- bench:{label}:start -->", f"<!-- bench:{label}:end -->"
    text = path.read_text() if path.exists() else "# Benchmarks\n\nFigures measured by the scripts in `bench/`.\n"
    if start in text and end in text:
        head, rest = text.split(start, 1)
        text = head + section + rest.split(end, 1)[1]
    else:
        text = text.rstrip() + "\n\n" + section + "\n"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    print(f"wrote {path}")
