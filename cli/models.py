"""``probe models``: the registered backbones with their recipes and licences."""

from __future__ import annotations

from typing import Annotated

import typer

from cli._common import emit_json, user_errors


@user_errors
def models_command(
    json_out: Annotated[bool, typer.Option("--json", help="print one JSON object instead of prose")] = False,
    markdown: Annotated[bool, typer.Option("--markdown", help="print the Markdown table of docs/models.md")] = False,
) -> None:
    """List registered backbones (also usable: timm:<model>, hf:<repo>, open_clip:<arch>@<tag>)."""
    from probe.backbones import models_markdown, registered_backbones

    specs = registered_backbones()
    if json_out:
        emit_json({"models": [s.to_dict() for s in specs.values()]})
        return
    if markdown:
        typer.echo(models_markdown(), nl=False)
        return
    typer.echo(f"{'name':<20} {'family':<17} {'size':>5}  {'license':<13} {'source':<44} poolings (dim)")
    for s in specs.values():
        dims = ", ".join(f"{k}:{v}" for k, v in s.poolings.items())
        typer.echo(f"{s.name:<20} {s.family:<17} {s.image_size:>5}  {s.license:<13} {s.source:<44} {dims}")
    typer.echo(
        "\nAlso: timm:<model name>, hf:<repository>, open_clip:<architecture>@<pretrained tag> and "
        "open_clip:hf-hub:<repository>; --weights FILE offline. Recipes: probe models --json, docs/models.md."
    )
