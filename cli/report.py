"""``probe report`` and ``probe results``."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Annotated, Any

import typer

from cli._common import emit_json, split_list, user_errors
from probe.report.defaults import REPORT_METRICS


@user_errors
def report_command(
    results: Annotated[str, typer.Argument(help="results folder (or .jsonl file) written by the probing commands")] = (
        "results"
    ),
    out: Annotated[str, typer.Option(help="report folder (report.md, report.html, figures/)")] = "report",
    metric: Annotated[
        str,
        typer.Option(
            help="metrics shown, comma list: the first ranks the leaderboards; later ones get their own sections "
            "where the results have them"
        ),
    ] = ",".join(REPORT_METRICS),  # MedMNIST's own pair (ACC, AUC) beside the balanced view
    dataset: Annotated[str | None, typer.Option(help="keep these datasets (comma list)")] = None,
    backbone: Annotated[str | None, typer.Option(help="keep these backbones (comma list)")] = None,
    head: Annotated[str | None, typer.Option(help="keep these heads (comma list)")] = None,
    protocol: Annotated[str | None, typer.Option(help="comma list: full, shots, fraction, episodes")] = None,
    formats: Annotated[str, typer.Option(help="figure formats, comma list of png, svg, pdf")] = "png,svg",
    title: Annotated[str, typer.Option(help="report title")] = "probe report",
    check_in_browser: Annotated[
        bool,
        typer.Option(
            "--check-in-browser",
            help="open report.html in headless Chromium at 1280 px, save screenshot.png, exit 2 on console "
            "errors, broken images or content wider than the page",
        ),
    ] = False,
    skip_bad_lines: Annotated[
        bool, typer.Option("--skip-bad-lines", help="skip unreadable lines of the results (named in a warning)")
    ] = False,
    json_out: Annotated[bool, typer.Option("--json", help="print the written paths as JSON")] = False,
) -> None:
    """Write report.md, a self-contained report.html and label-efficiency figures from result rows."""
    from probe.report import write_report
    from probe.results import load_results

    filters = {"dataset": dataset, "backbone": backbone, "head_name": head, "protocol": protocol}
    chosen: dict[str, Any] = {k: list(split_list(v) or ()) for k, v in filters.items() if v}
    frame = load_results(results, skip_bad_lines=skip_bad_lines, **chosen)
    metrics = split_list(metric) or ("balanced_accuracy",)
    files = write_report(
        frame, out, metric=metrics, formats=split_list(formats) or ("png",), title=title, examples=results
    )
    seen = None
    if check_in_browser:
        from probe.report.browser import check_in_browser as look

        seen = look(files.html)
    if json_out:
        paths = {"markdown": str(files.markdown), "html": str(files.html), "figures": [str(f) for f in files.figures]}
        emit_json({**paths, **({"browser": seen.__dict__ | {"ok": seen.ok}} if seen else {})})
    else:
        typer.echo(f"report: {files.html}\n        {files.markdown} ({len(files.figures)} figures)")
        if seen:
            typer.echo(f"browser: {'ok' if seen.ok else 'PROBLEMS'}; screenshot {seen.screenshot}")
            for problem in (*seen.console_errors, *seen.broken_images, *seen.overflowing):
                typer.echo(f"  {problem}")
    if seen and not seen.ok:
        raise typer.Exit(2)


@user_errors
def results_command(
    results: Annotated[str, typer.Argument(help="results folder or .jsonl file")] = "results",
    dataset: Annotated[str | None, typer.Option(help="comma list")] = None,
    backbone: Annotated[str | None, typer.Option(help="comma list")] = None,
    head: Annotated[str | None, typer.Option(help="comma list")] = None,
    metric: Annotated[str | None, typer.Option(help="comma list")] = None,
    protocol: Annotated[str | None, typer.Option(help="comma list: full, shots, fraction, episodes")] = None,
    all_rows: Annotated[bool, typer.Option("--all", help="keep superseded reruns too")] = False,
    csv: Annotated[
        str | None, typer.Option(help="write the filtered rows (or the --wide table) to this CSV file")
    ] = None,
    wide: Annotated[
        bool, typer.Option("--wide", help="one row per (dataset, configuration), one column per (metric, level)")
    ] = False,
    markdown: Annotated[str | None, typer.Option(help="with --wide: also write the table as Markdown here")] = None,
    skip_bad_lines: Annotated[
        bool, typer.Option("--skip-bad-lines", help="skip unreadable lines of the results (named in a warning)")
    ] = False,
    json_out: Annotated[bool, typer.Option("--json", help='print {"results": [row, ...]}')] = False,
) -> None:
    """Filter the results table; print a summary, export CSV, or print JSON rows."""
    import json

    from probe.atomic import write_atomic
    from probe.report.summary import format_table
    from probe.results import load_results

    filters = {"dataset": dataset, "backbone": backbone, "head_name": head, "metric": metric, "protocol": protocol}
    frame = load_results(
        results,
        latest=not all_rows,
        skip_bad_lines=skip_bad_lines,
        **{k: list(split_list(v) or ()) for k, v in filters.items() if v},
    )
    if wide:
        _wide(frame, metrics=split_list(metric), csv=csv, markdown=markdown, json_out=json_out)
        return
    if csv:
        flat = frame.copy()
        for col in ("params", "versions"):
            if col in flat:
                flat[col] = [json.dumps(v, sort_keys=True) for v in flat[col]]
        write_atomic(csv, flat.to_csv(index=False))  # a temporary name, then a rename
    records = json.loads(frame.to_json(orient="records"))
    if json_out:
        emit_json({"results": records})
        return
    typer.echo(format_table(records, metric=(split_list(metric) or ("balanced_accuracy",))[0]))
    typer.echo(f"{len(frame)} rows" + (f"; written to {csv}" if csv else ""))


def _wide(frame: Any, *, metrics: Sequence[str] | None, csv: str | None, markdown: str | None, json_out: bool) -> None:
    """Print (and write) the wide table of ``probe results --wide``."""
    import json

    from probe.atomic import write_atomic
    from probe.report.wide import wide_markdown, wide_table

    table = wide_table(frame, metrics=metrics)
    text = wide_markdown(table)
    if csv:
        write_atomic(csv, table.to_csv(index=False))
    if markdown:
        write_atomic(markdown, text)
    if json_out:
        emit_json({"wide": json.loads(table.to_json(orient="records"))})
        return
    typer.echo(text, nl=False)
