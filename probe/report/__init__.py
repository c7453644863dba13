"""Reports from result rows: summary tables, leaderboards with paired tests, figures, Markdown and HTML.

:mod:`~probe.report.data` (rows → curve points and ranks), :mod:`~probe.report.summary` (the short
table the CLI prints), :mod:`~probe.report.plots` (matplotlib figures), :mod:`~probe.report.render`
(Markdown and self-contained HTML), :mod:`~probe.report.write` (``write_report``).
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # the names as mypy and IDEs see them; at run time they load on first use
    from probe.report.summary import format_table
    from probe.report.write import ReportFiles, leaderboard, summary_table, write_report

_HOME = {
    "ReportFiles": "probe.report.write",
    "format_table": "probe.report.summary",
    "leaderboard": "probe.report.write",
    "summary_table": "probe.report.write",
    "write_report": "probe.report.write",
}
__all__ = [
    "ReportFiles",
    "format_table",
    "leaderboard",
    "summary_table",
    "write_report",
]


def __getattr__(name: str) -> Any:
    if name in _HOME:
        return getattr(importlib.import_module(_HOME[name]), name)
    raise AttributeError(f"module 'probe.report' has no attribute {name!r}")
