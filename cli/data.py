"""``probe data check``: class counts per split, duplicates and patients shared across splits.

Exit codes: 0 no leak found; 1 user error (bad specification, missing data); 2 leak found (a patient
in two splits, or the same image in two splits).
"""

from __future__ import annotations

from typing import Annotated

import typer

from cli._common import emit_json, user_errors

data_app = typer.Typer(help="Check data sets before embedding them.", no_args_is_help=True, rich_markup_mode=None)


def _counts_table(counts: dict[str, dict[str, int]]) -> list[str]:
    classes = list(next(iter(counts.values()), {}))
    width = max([len(c) for c in classes] + [5])
    lines = ["  " + "class".ljust(width) + "".join(f"{s:>9}" for s in counts)]
    for c in classes:
        lines.append("  " + c.ljust(width) + "".join(f"{counts[s][c]:>9}" for s in counts))
    return lines


@data_app.command("check")
@user_errors
def check_command(
    data: Annotated[
        str,
        typer.Argument(help="medmnist:<name>, folder:<dir>, csv:<manifest>, dicom:<dir> (with ?split=... if any)"),
    ],
    data_root: Annotated[
        str | None, typer.Option(envvar="PROBE_DATA_ROOT", help="folder holding dataset files")
    ] = None,
    pixels: Annotated[
        bool, typer.Option(help="decode every image and compare pixel digests (--no-pixels: groups and file bytes)")
    ] = True,
    show: Annotated[int, typer.Option(help="print at most this many lines per kind of finding (JSON has all)")] = 50,
    progress: Annotated[bool, typer.Option(help="progress bar on stderr")] = True,
    json_out: Annotated[bool, typer.Option("--json", help="print one JSON object instead of prose")] = False,
) -> None:
    """Report class counts per split, duplicate images and shared patients; exit 2 on leakage."""
    from probe.sources.check import LEAK_EXIT_CODE, check_data

    report = check_data(data, data_root=data_root, pixels=pixels, progress=progress)
    if json_out:
        emit_json(report.to_json())
    else:
        typer.echo(
            f"{report.spec}: {report.n_samples} samples, {len(report.classes)} classes, "
            f"{report.n_groups if report.has_groups else 'no'} groups; checked {', '.join(report.checked)}"
        )
        for line in _counts_table(report.class_counts):
            typer.echo(line)
        for kind, lines in (("leak", report.leaks), ("note", report.notes)):
            for line in lines[:show]:
                typer.echo(f"{kind}: {line}")
            if len(lines) > show:
                typer.echo(f"{kind}: ... and {len(lines) - show} more (--json lists all)")
        typer.echo("ok: no leakage found" if report.ok else f"LEAKAGE: {len(report.leaks)} problem(s) found")
    if not report.ok:
        raise typer.Exit(LEAK_EXIT_CODE)
