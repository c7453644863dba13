"""The ``probe`` typer application."""

from __future__ import annotations

import typer

from cli.extract import extract_command
from cli.models import models_command
from cli.store import store_app

app = typer.Typer(
    name="probe",
    help="Extract frozen-backbone embeddings once, then probe them many times.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
)
app.command("models")(models_command)
app.command("extract")(extract_command)
app.add_typer(store_app, name="store")


def main() -> None:
    """Console-script entry point."""
    app()
