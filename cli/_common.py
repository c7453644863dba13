"""Shared CLI plumbing: user errors become one line and exit code 1 (and JSON with ``--json``); ``--json`` output."""

from __future__ import annotations

import functools
import inspect
import json
import sys
from collections.abc import Callable
from typing import Any, TypeVar

import typer

from cli.vocabulary import in_shell_words
from probe.errors import ProbeError

F = TypeVar("F", bound=Callable[..., Any])


def user_errors(func: F) -> F:
    """Run a command, turning :class:`ProbeError` into ``error: <message>`` on stderr and exit 1.

    With ``--json`` (a command's ``json_out`` parameter), the error is also printed on stdout as one
    JSON object ``{"error": "<message>"}``, so a caller parsing stdout always gets JSON.
    """
    signature = inspect.signature(func)

    @functools.wraps(func)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return func(*args, **kwargs)
        except ProbeError as exc:
            _fail(
                f"error: {in_shell_words(str(exc), func)}",
                in_shell_words(str(exc), func),
                json_out=_wants_json(signature, args, kwargs),
            )
            raise typer.Exit(1) from None
        except KeyboardInterrupt:
            line = "interrupted: finished chunks are kept; run the same command again to resume"
            _fail(line, line, json_out=_wants_json(signature, args, kwargs))
            raise typer.Exit(130) from None

    return wrapper  # type: ignore[return-value]


def _wants_json(signature: inspect.Signature, args: tuple[Any, ...], kwargs: dict[str, Any]) -> bool:
    try:
        return bool(signature.bind_partial(*args, **kwargs).arguments.get("json_out", False))
    except TypeError:
        return bool(kwargs.get("json_out", False))


def _fail(line: str, message: str, *, json_out: bool) -> None:
    """One line on stderr; with ``--json`` also ``{"error": message}`` on stdout."""
    single = " ".join(message.split())  # a message is one line, whatever a library put in it
    typer.echo(line if "\n" not in line else " ".join(line.split()), err=True)
    if json_out:
        emit_json({"error": single})


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
