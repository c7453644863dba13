"""Run a study: every (dataset, backbone) cell extracted once and probed, resumably, into one run folder.

``<out>/<name>/`` holds ``study.toml`` (the file as given), ``resolved.json`` (every setting with its
default), ``command.txt``, ``versions.json``, ``run.log``, ``cells/`` (one record per finished cell, so
a rerun skips it), ``results/results.jsonl`` and ``report/``. A failing cell is logged and the others
go on; the failures are listed at the end.
"""

from __future__ import annotations

import json
import traceback
import uuid
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from probe.atomic import write_atomic
from probe.errors import ProbeError, StoreError
from probe.provenance import canonical_hash, library_versions
from probe.sources import canonical_spec
from probe.study.config import StudyBackbone, StudyConfig

VERSIONED = ("numpy", "scipy", "scikit-learn", "torch", "timm", "transformers", "faiss-cpu", "zarr", "pandas")


@dataclass(frozen=True)
class Cell:
    """One (dataset, backbone) of a study and what is known about it before running."""

    dataset: str
    backbone: StudyBackbone
    key: str  # hash of the dataset's canonical spec, the backbone request and the plan
    status: str  # "done" (rows recorded), "store cached" (probing only), "to extract", or "error: ..."


@dataclass
class StudyRun:
    """What ``probe run`` did."""

    folder: str
    run_id: str
    done: list[str] = field(default_factory=list)  # cells run now
    skipped: list[str] = field(default_factory=list)  # cells finished by an earlier run
    failed: dict[str, str] = field(default_factory=dict)  # cell → one-line error
    reports: list[str] = field(default_factory=list)  # the study's report.html (a section per dataset x metric)


def _label(cell: Cell) -> str:
    size = f"@{cell.backbone.image_size}px" if cell.backbone.image_size else ""
    return f"{cell.dataset} × {cell.backbone.name}{size}"


def plan_cells(study: StudyConfig) -> list[Cell]:
    """Every cell of the study with its status (nothing is extracted or probed)."""
    from probe.evaluate.data import find_store

    folder = Path(study.out) / study.name
    cells = []
    for dataset in study.datasets:
        for backbone in study.backbones:
            try:
                spec = canonical_spec(dataset)
            except ProbeError as exc:
                cells.append(Cell(dataset, backbone, "", f"error: {exc}"))
                continue
            key = canonical_hash({"data": spec, "backbone": backbone.__dict__, "plan": study.plan.__dict__})[:16]
            if (folder / "cells" / f"{key}.json").is_file():
                status = "done"
            else:
                try:
                    find_store(dataset, backbone=backbone.name, root=study.store_root, image_size=backbone.image_size)
                    status = "store cached"
                except StoreError:
                    status = "to extract"
            cells.append(Cell(dataset, backbone, key, status))
    return cells


class _Log:
    def __init__(self, path: Path) -> None:
        self.path = path

    def __call__(self, line: str) -> None:
        stamp = datetime.now(timezone.utc).isoformat(timespec="seconds")
        with open(self.path, "a", encoding="utf-8") as f:
            f.write(f"{stamp} {line}\n")


def _prepare(study: StudyConfig, source_text: str, command: str) -> tuple[Path, _Log]:
    folder = Path(study.out) / study.name
    (folder / "cells").mkdir(parents=True, exist_ok=True)
    write_atomic(folder / "study.toml", source_text)
    write_atomic(folder / "resolved.json", json.dumps(study.to_dict(), indent=1, default=str) + "\n")
    write_atomic(folder / "command.txt", command + "\n")
    write_atomic(folder / "versions.json", json.dumps(library_versions(*VERSIONED), indent=1) + "\n")
    return folder, _Log(folder / "run.log")


def _run_cell(study: StudyConfig, cell: Cell, *, folder: Path, run_id: str, command: str, progress: bool) -> int:
    from probe.evaluate.api import StoreChoice, run_curve
    from probe.extraction import ExtractConfig
    from probe.sources import SourceRequest

    run = run_curve(
        SourceRequest(cell.dataset, data_root=study.data_root),
        backbones=[cell.backbone.request()],
        plan=study.plan.plan(),
        choice=StoreChoice(store_root=study.store_root, pooling=cell.backbone.pooling, eval_split=study.eval_split),
        results_dir=folder / "results",
        extract_config=ExtractConfig(device=study.plan.device, progress=progress),
        command=command,
        progress=progress,
        run_id=run_id,
    )
    record = {"dataset": cell.dataset, "backbone": cell.backbone.__dict__, "rows": len(run.rows), "stores": run.stores}
    write_atomic(folder / "cells" / f"{cell.key}.json", json.dumps({**record, "run_id": run_id}, indent=1) + "\n")
    return len(run.rows)


def _write_reports(study: StudyConfig, folder: Path) -> list[str]:
    from probe.report.write import write_report
    from probe.results import load_results

    frame = load_results(folder / "results")
    title = study.report.title or f"probe study: {study.name}"
    # one report, a section per (dataset, metric) as `probe report` writes; the first metric ranks
    files = write_report(frame, folder / "report", metric=list(study.report.metrics), formats=study.report.formats,
                         title=title, examples=folder / "results")  # fmt: skip
    return [str(files.html)]


def run_study(
    study: StudyConfig, *, source_text: str = "", command: str = "probe run", progress: bool = False
) -> StudyRun:
    """Run every cell not finished yet, then write the report(s).

    Args:
        study: the checked study.
        source_text: the study file's text, kept in the run folder.
        command: the command line, recorded in the run folder and every row.
        progress: progress bars on stderr.

    Returns:
        The run folder and which cells ran, were skipped (finished earlier) or failed.
    """
    folder, log = _prepare(study, source_text, command)
    run = StudyRun(folder=str(folder), run_id=uuid.uuid4().hex[:12])
    log(f"start {run.run_id}: {command}")
    for cell in plan_cells(study):
        label = _label(cell)
        if cell.status == "done":
            run.skipped.append(label)
            log(f"skip {label}: finished by an earlier run")
            continue
        if cell.status.startswith("error"):
            run.failed[label] = cell.status.removeprefix("error: ")
            log(f"fail {label}: {run.failed[label]}")
            continue
        try:
            rows = _run_cell(study, cell, folder=folder, run_id=run.run_id, command=command, progress=progress)
        except Exception as exc:  # one failing cell must not stop the study; the log keeps the traceback
            run.failed[label] = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
            log(f"fail {label}: {run.failed[label]}\n{traceback.format_exc()}")
            continue
        run.done.append(label)
        log(f"done {label}: {rows} rows")
    if (folder / "results").is_dir():
        run.reports = _write_reports(study, folder)
        log(f"report {', '.join(run.reports)}")
    log(f"end {run.run_id}: {len(run.done)} run, {len(run.skipped)} skipped, {len(run.failed)} failed")
    return run


def describe_cells(cells: list[Cell]) -> list[dict[str, Any]]:
    """The dry-run view of a study's matrix."""
    return [{"dataset": c.dataset, "backbone": c.backbone.name, "image_size": c.backbone.image_size,
             "status": c.status} for c in cells]  # fmt: skip
