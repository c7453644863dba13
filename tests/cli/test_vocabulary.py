"""Library errors name library parameters; the CLI prints the same error with its own flags."""

from __future__ import annotations

import pytest
from typer.testing import CliRunner

from cli.main import app
from cli.vocabulary import translate
from probe.errors import ProtocolError

OPTIONS = {"seeds": "--seeds", "spread_alpha": "--spread-alpha", "random_weights": "--random-weights",
           "strict": "--strict", "store": "--store"}  # fmt: skip


@pytest.mark.parametrize(
    ("library", "shell"),
    [
        ("PlanConfig(seeds=0): use at least 1 seed", "--seeds 0: use at least 1 seed"),
        ("LabelSpreadConfig(alpha=2.0) must lie in (0, 1)", "--spread-alpha 2.0 must lie in (0, 1)"),
        ("drop BackboneRequest(pretrained=False) first", "drop --random-weights first"),
        ("or drop PlanConfig(strict=True) to use", "or drop --strict to use"),
        (
            "choose StoreChoice(store=PATH) or StoreChoice(image_size=N)",
            "choose --store PATH or StoreChoice(image_size=N)",
        ),
        ("folder:/x?split=60,20,20 is fine", "folder:/x?split=60,20,20 is fine"),
    ],
)
def test_translation_of_parameter_mentions(library: str, shell: str) -> None:
    assert translate(library, OPTIONS) == shell


def test_a_notebook_and_a_shell_user_each_read_their_own_vocabulary() -> None:
    from probe.evaluate import LabelSpreadConfig

    with pytest.raises(ProtocolError, match=r"LabelSpreadConfig\(alpha=2.0\) must lie in \(0, 1\)"):
        LabelSpreadConfig(alpha=2.0)
    res = CliRunner().invoke(app, ["curve", "medmnist:breastmnist", "--heads", "labelspread", "--spread-alpha", "2"])
    assert res.exit_code == 1 and "error: --spread-alpha 2.0 must lie in (0, 1)" in res.output
    res = CliRunner().invoke(app, ["curve", "medmnist:breastmnist", "--seeds", "0"])
    assert res.exit_code == 1 and "error: --seeds 0: use at least 1 seed" in res.output
