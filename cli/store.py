"""``probe store ls`` / ``info`` / ``verify``: what has been extracted, with what, and is it intact."""

from __future__ import annotations

from typing import Annotated

import typer

from cli._common import emit_json, user_errors
from cli.options import StoreRoot
from probe.errors import StoreError

store_app = typer.Typer(help="Inspect embedding stores.", no_args_is_help=True, rich_markup_mode=None)


@store_app.command("ls")
@user_errors
def ls_command(
    root: Annotated[str | None, typer.Argument(help="store root folder (same as --store-root)")] = None,
    store_root: StoreRoot = "embeddings",
    json_out: Annotated[bool, typer.Option("--json", help="print one JSON object instead of prose")] = False,
) -> None:
    """List stores with dataset, backbone, rows, poolings and completeness."""
    from probe.store import list_stores

    root = root or store_root
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
        weights = s.weights if not s.weights.startswith("sha256:") else s.weights[:19]
        made = f"{s.image_size} px {s.resolution} | weights {weights or '?'}"
        typer.echo(f"{s.path}\n    {s.dataset} | {s.backbone} | {made} | {s.rows} rows | {dims} | {state}")


@store_app.command("info")
@user_errors
def info_command(
    path: Annotated[str, typer.Argument(help="a store folder")],
    json_out: Annotated[bool, typer.Option("--json", help="print one JSON object instead of prose")] = False,
) -> None:
    """Provenance and fingerprints of one store."""
    from probe.store import describe_store

    info = describe_store(path)
    if json_out:
        emit_json(info)
        return
    for key, value in info.items():
        typer.echo(f"{key}: {value}")


@store_app.command("verify")
@user_errors
def verify_command(
    path: Annotated[str, typer.Argument(help="a store folder")],
    json_out: Annotated[bool, typer.Option("--json", help="print one JSON object instead of prose")] = False,
) -> None:
    """Read back every chunk (checking CRC32C checksums); exit 1 when any is damaged."""
    from probe.store import verify_store

    check = verify_store(path)
    if json_out:
        emit_json(check.to_json())
        if not check.ok:
            raise typer.Exit(1)
        return
    for d in check.damaged:
        typer.echo(f"damaged: {d.key}: {d.reason}")
    sums = (
        "CRC32C checksums"
        if check.checksums
        else "no checksums (a store made before them: only undecodable chunks show)"
    )
    if check.ok:
        typer.echo(f"ok: {path}: {check.chunks} chunks of {check.arrays} arrays read back intact ({sums})")
        return
    cmd = check.command or "probe extract DATA --backbone NAME"
    raise StoreError(
        f"store {path} has {len(check.damaged)} damaged chunk(s) (listed above); recompute only those with "
        f"`{cmd} --repair`"
    )
