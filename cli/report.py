"""``probe report``, ``probe results`` and ``probe demo``."""

from __future__ import annotations

from typing import Annotated

import typer

from cli._common import emit_json, split_list, user_errors


@user_errors
def report_command(
    results: Annotated[str, typer.Argument(help="results folder (or .jsonl file) written by the probing commands")] = (
        "results"
    ),
    out: Annotated[str, typer.Option(help="report folder (report.md, report.html, figures/)")] = "report",
    metric: Annotated[str, typer.Option(help="metric drawn on the curves and ranked in the leaderboard")] = (
        "balanced_accuracy"
    ),
    dataset: Annotated[str | None, typer.Option(help="keep these datasets (comma list)")] = None,
    formats: Annotated[str, typer.Option(help="figure formats, comma list of png, svg, pdf")] = "png,svg",
    title: Annotated[str, typer.Option(help="report title")] = "probe report",
    json_out: Annotated[bool, typer.Option("--json", help="print the written paths as JSON")] = False,
) -> None:
    """Write report.md, a self-contained report.html and label-efficiency figures from result rows."""
    from probe.report import write_report
    from probe.results import load_results

    frame = load_results(results, dataset=list(split_list(dataset) or ()) or None)
    files = write_report(frame, out, metric=metric, formats=split_list(formats) or ("png",), title=title)
    if json_out:
        emit_json(
            {"markdown": str(files.markdown), "html": str(files.html), "figures": [str(f) for f in files.figures]}
        )
        return
    typer.echo(f"report: {files.html}\n        {files.markdown} ({len(files.figures)} figures)")


@user_errors
def results_command(
    results: Annotated[str, typer.Argument(help="results folder or .jsonl file")] = "results",
    dataset: Annotated[str | None, typer.Option(help="comma list")] = None,
    backbone: Annotated[str | None, typer.Option(help="comma list")] = None,
    head: Annotated[str | None, typer.Option(help="comma list")] = None,
    metric: Annotated[str | None, typer.Option(help="comma list")] = None,
    protocol: Annotated[str | None, typer.Option(help="comma list: full, shots, fraction, episodes")] = None,
    all_rows: Annotated[bool, typer.Option("--all", help="keep superseded reruns too")] = False,
    csv: Annotated[str | None, typer.Option(help="write the filtered rows to this CSV file")] = None,
    json_out: Annotated[bool, typer.Option("--json", help='print {"results": [row, ...]}')] = False,
) -> None:
    """Filter the results table; print a summary, export CSV, or print JSON rows."""
    import json

    from probe.results import load_results
    from probe.summary import format_table

    filters = {"dataset": dataset, "backbone": backbone, "head": head, "metric": metric, "protocol": protocol}
    frame = load_results(
        results, latest=not all_rows, **{k: list(split_list(v) or ()) for k, v in filters.items() if v}
    )
    if csv:
        flat = frame.copy()
        for col in ("params", "versions"):
            if col in flat:
                flat[col] = [json.dumps(v, sort_keys=True) for v in flat[col]]
        flat.to_csv(csv, index=False)
    records = json.loads(frame.to_json(orient="records"))
    if json_out:
        emit_json({"results": records})
        return
    typer.echo(format_table(records, metric=(split_list(metric) or ("balanced_accuracy",))[0]))
    typer.echo(f"{len(frame)} rows" + (f"; written to {csv}" if csv else ""))


@user_errors
def demo_command(
    data_root: Annotated[
        str | None, typer.Option(envvar="PROBE_DATA_ROOT", help="folder holding bloodmnist.npz (optional)")
    ] = None,
    device: Annotated[str, typer.Option(help="auto, cpu or cuda")] = "auto",
    image_size: Annotated[int, typer.Option(help="input side in pixels (224 = the backbone's own)")] = 128,
    seeds: Annotated[int, typer.Option(help="draws per shot level")] = 5,
    limit: Annotated[int | None, typer.Option(help="first N samples per split only (a quick look)")] = None,
    out: Annotated[str, typer.Option(help="report folder")] = "report",
    results: Annotated[str, typer.Option(help="results folder")] = "results",
    store_root: Annotated[str, typer.Option(envvar="PROBE_STORE_ROOT", help="folder holding stores")] = "embeddings",
    json_out: Annotated[bool, typer.Option("--json", help='print {"results": [...], "report": ...}')] = False,
) -> None:
    """The main job, offline: real EfficientNet-Lite0 on BloodMNIST → kNN/linear/prototype curves → report."""
    from probe.demo import DemoConfig, run_demo
    from probe.protocols import PlanConfig

    config = DemoConfig(
        image_size=image_size,
        plan=PlanConfig(seeds=seeds),
        limit=limit,
        report_dir=out,
        results_dir=results,
        store_root=store_root,
    )
    result = run_demo(config, data_root=data_root, device=device)
    if json_out:
        emit_json(
            {
                "results": [r.to_dict() for r in result.run.rows],
                "report": result.report_html,
                "markdown": result.report_md,
                "figures": result.figures,
                "seconds": round(result.seconds, 1),
            }
        )
        return
    typer.echo(result.table)
    typer.echo(f"\nreport: {result.report_html}\n        {result.report_md}")
    typer.echo(f"results appended to {result.run.results_file}; {result.seconds:.0f} s in all")
