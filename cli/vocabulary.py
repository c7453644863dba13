"""Library errors in the shell's words: ``Owner(param=value)`` in a message becomes ``--flag value``.

Library messages name the parameter a Python user set (``PlanConfig(seeds=0)``,
``BackboneRequest(weights=/x.pt)``), so a notebook user reads their own vocabulary. The CLI rewrites
each such mention into the option of the command that ran, when the command has one: by the
parameter's own name, or through :data:`ALIASES` where the option is named differently. Mentions the
command has no option for are left as they are.
"""

from __future__ import annotations

import functools
import re
import typing
from collections.abc import Callable, Mapping
from typing import Any

import typer

#: (owner, library parameter) → (command parameter, inverted boolean) where the names differ.
ALIASES: Mapping[tuple[str, str], tuple[str, bool]] = {
    ("LabelSpreadConfig", "alpha"): ("spread_alpha", False),
    ("LabelSpreadConfig", "n_neighbors"): ("spread_neighbors", False),
    ("BackboneRequest", "pretrained"): ("random_weights", True),
    ("SlicePolicy", "axis"): ("slice_axis", False),
    ("StoreChoice", "eval_split"): ("split", False),
    ("FinetunePlan", "eval_split"): ("split", False),
    ("ExtractConfig", "poolings"): ("pooling", False),
    ("AugmentConfig", "rotate_degrees"): ("rotate", False),
    ("LoraSettings", "rank"): ("lora_rank", False),
    ("LoraSettings", "alpha"): ("lora_alpha", False),
    ("LoraSettings", "dropout"): ("lora_dropout", False),
    ("LoraSettings", "targets"): ("lora_targets", False),
}
_MENTION = re.compile(r"\b([A-Za-z_]\w*)\(([a-z_][a-z0-9_]*)=([^()]*)\)")


@functools.cache
def command_options(command: Callable[..., Any]) -> dict[str, str]:
    """A command function's parameter name → its long option (``"spread_alpha"`` → ``"--spread-alpha"``)."""
    out: dict[str, str] = {}
    hints = typing.get_type_hints(command, include_extras=True)
    for name, hint in hints.items():
        for info in getattr(hint, "__metadata__", ()):
            if isinstance(info, typer.models.OptionInfo):
                decls = [*(info.param_decls or ()), *([info.default] if isinstance(info.default, str) else [])]
                longs = [d for d in decls if d.startswith("--")]
                out[name] = longs[0].split("/")[0] if longs else "--" + name.replace("_", "-")
    return out


def translate(message: str, options: Mapping[str, str]) -> str:
    """Rewrite every ``Owner(param=value)`` whose parameter is one of ``options`` as ``--flag value``."""

    def flag(match: re.Match[str]) -> str:
        owner, param, value = match.groups()
        name, inverted = ALIASES.get((owner, param), (param, False))
        if name not in options:
            return match.group(0)
        option = options[name]
        if value in ("True", "False"):  # booleans: the switch itself (typer spells False as --no-<name>)
            on = (value == "True") != inverted
            return option if on else "--no-" + option[2:]
        return f"{option} {value}"

    return _MENTION.sub(flag, message)


def in_shell_words(message: str, command: Callable[..., Any]) -> str:
    """``message`` translated for ``command``, the typer command function that raised it."""
    return translate(message, command_options(command))
