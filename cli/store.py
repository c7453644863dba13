"""``probe store ls`` / ``probe store info``: what has been extracted, and with what."""

from __future__ import annotations

from typing import Annotated

import typer

from cli._common import emit_json, user_errors
from probe.store import describe_store, list_stores

store_app = typer.Typer(help="Inspect embedding stores.", no_args_is_help=True)


@store_app.command("ls")
@user_errors
def ls_command(
    root: Annotated[str, typer.Argument(envvar="PROBE_STORE_ROOT", help="store root folder")] = "embeddings",
    json_out: Annotated[bool, typer.Option("--json", help="print one JSON object instead of prose")] = False,
) -> None:
    """List stores with dataset, backbone, rows, poolings and completeness."""
    stores = list_stores(root)
    if json_out:
        emit_json({"stores": [s.__dict__ for s in stores]})
        return
    if not stores:
        typer.echo(f"no stores under {root}; create one with `probe extract DATA --backbone NAME`")
        return
    for s in stores:
        state = "complete" if s.complete else "INCOMPLETE"
        dims = ",".join(f"{k}:{v}" for k, v in s.poolings.items())
        typer.echo(f"{s.path}\n    {s.dataset} | {s.backbone} | {s.rows} rows | {dims} | {state}")


@store_app.command("info")
@user_errors
def info_command(
    path: Annotated[str, typer.Argument(help="a store folder")],
    json_out: Annotated[bool, typer.Option("--json", help="print one JSON object instead of prose")] = False,
) -> None:
    """Provenance and fingerprints of one store."""
    info = describe_store(path)
    if json_out:
        emit_json(info)
        return
    for key, value in info.items():
        typer.echo(f"{key}: {value}")
