"""The ``probe`` typer application."""

from __future__ import annotations

import warnings
from typing import Annotated

import typer

from cli.data import data_app
from cli.demo import demo_command
from cli.extract import extract_command
from cli.finetune import finetune_command
from cli.models import models_command
from cli.probing import curve_command, fewshot_command, knn_command, linear_command
from cli.report import report_command, results_command
from cli.store import store_app
from cli.study import run_command

app = typer.Typer(
    name="probe",
    help="Extract frozen-backbone embeddings once, then probe them many times.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    rich_markup_mode=None,  # help text is plain: brackets such as [@size] and {"results": [...]} stay as written
    add_completion=False,
)


def _version(value: bool) -> None:
    if value:
        from importlib.metadata import version

        typer.echo(f"probe {version('probe-embeddings')}")
        raise typer.Exit()


@app.callback()
def _root(
    version: Annotated[
        bool, typer.Option("--version", callback=_version, is_eager=True, help="print the version and exit")
    ] = False,
) -> None:
    """Extract frozen-backbone embeddings once, then probe them many times."""


app.command("models")(models_command)
app.command("extract")(extract_command)
app.add_typer(store_app, name="store")
app.add_typer(data_app, name="data")
app.command("curve")(curve_command)
app.command("linear")(linear_command)
app.command("knn")(knn_command)
app.command("fewshot")(fewshot_command)
app.command("finetune")(finetune_command)
app.command("report")(report_command)
app.command("results")(results_command)
app.command("demo")(demo_command)
app.command("run")(run_command)


def _one_line_warning(message: Warning | str, category: type[Warning], *args: object, **kwargs: object) -> None:
    typer.echo(f"warning: {message}", err=True)


def main() -> None:
    """Console-script entry point (warnings print as one ``warning: ...`` line, without source lines)."""
    warnings.showwarning = _one_line_warning
    app()
