"""``probe models``: the registered backbones with their poolings, sizes and licences."""

from __future__ import annotations

from typing import Annotated

import typer

from cli._common import emit_json, user_errors
from probe.backbones import registered_backbones


@user_errors
def models_command(
    json_out: Annotated[bool, typer.Option("--json", help="print one JSON object instead of prose")] = False,
) -> None:
    """List registered backbones (also usable: timm:<any timm model>, hf:<repo>)."""
    specs = registered_backbones()
    if json_out:
        emit_json(
            {
                "models": [
                    {
                        "name": s.name,
                        "family": s.family,
                        "source": s.source,
                        "license": s.license,
                        "image_size": s.image_size,
                        "poolings": s.poolings,
                        "notes": s.notes,
                    }
                    for s in specs.values()
                ]
            }
        )
        return
    typer.echo(f"{'name':<22} {'family':<18} {'size':>5}  {'license':<13} poolings (dim)")
    for s in specs.values():
        dims = ", ".join(f"{k}:{v}" for k, v in s.poolings.items())
        typer.echo(f"{s.name:<22} {s.family:<18} {s.image_size:>5}  {s.license:<13} {dims}")
    typer.echo("\nAlso: timm:<model name> (any timm model) and hf:<repository> (transformers); --weights FILE offline.")
