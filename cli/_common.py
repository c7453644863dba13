"""Shared CLI plumbing: user errors become one line and exit code 1; ``--json`` output."""

from __future__ import annotations

import functools
import json
import sys
from collections.abc import Callable
from typing import Any, TypeVar

import typer

from cli.vocabulary import in_shell_words
from probe.errors import ProbeError

F = TypeVar("F", bound=Callable[..., Any])


def user_errors(func: F) -> F:
    """Run a command, turning :class:`ProbeError` into ``error: <message>`` on stderr and exit 1."""

    @functools.wraps(func)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return func(*args, **kwargs)
        except ProbeError as exc:
            typer.echo(f"error: {in_shell_words(str(exc), func)}", err=True)
            raise typer.Exit(1) from None
        except KeyboardInterrupt:
            typer.echo("interrupted: finished chunks are kept; run the same command again to resume", err=True)
            raise typer.Exit(130) from None

    return wrapper  # type: ignore[return-value]


def emit_json(obj: Any) -> None:
    """Print one JSON object on stdout."""
    typer.echo(json.dumps(obj, default=str))


def split_list(text: str | None) -> tuple[str, ...] | None:
    """``"cls, mean"`` -> ``("cls", "mean")``; empty -> None."""
    if not text:
        return None
    return tuple(p.strip() for p in text.split(",") if p.strip()) or None


def command_line() -> str:
    """The command as the user typed it (recorded in stores for resume hints)."""
    return " ".join(["probe", *sys.argv[1:]])
