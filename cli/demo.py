"""``probe demo``: the main job, offline."""

from __future__ import annotations

from typing import Annotated

import typer

from cli._common import emit_json, user_errors


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
    from probe.evaluate import PlanConfig

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
