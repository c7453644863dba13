"""``probe run STUDY.toml``: a whole study from one file, resumably."""

from __future__ import annotations

from typing import Annotated

import typer

from cli._common import command_line, emit_json, user_errors
from cli.options import Json, Progress


@user_errors
def run_command(
    study: Annotated[str, typer.Argument(help="study file (TOML): datasets, [[backbones]], [plan], [report]")],
    dry_run: Annotated[bool, typer.Option("--dry-run", help="print the matrix and what is already done or cached")] = (
        False
    ),
    progress: Progress = True,
    json_out: Json = False,
) -> None:
    """Run a study: every dataset × backbone extracted once and probed; outputs in <out>/<name>/."""
    from pathlib import Path

    from probe.study import describe_cells, plan_cells, read_study, run_study

    config = read_study(study)
    if dry_run:
        cells = describe_cells(plan_cells(config))
        if json_out:
            emit_json({"study": config.name, "folder": str(Path(config.out) / config.name), "cells": cells})
            return
        for c in cells:
            size = f" @{c['image_size']}px" if c["image_size"] else ""
            typer.echo(f"{c['dataset']} × {c['backbone']}{size}: {c['status']}")
        return
    run = run_study(config, source_text=Path(study).read_text(), command=command_line(), progress=progress)
    if json_out:
        emit_json(run.__dict__)
    else:
        typer.echo(
            f"{run.folder}: {len(run.done)} cells run, {len(run.skipped)} already done, {len(run.failed)} failed"
        )
        for cell, error in run.failed.items():
            typer.echo(f"  failed {cell}: {error}")
        for report in run.reports:
            typer.echo(f"report: {report}")
    if run.failed:
        raise typer.Exit(1)
