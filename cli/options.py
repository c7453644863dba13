"""Options and option parsers shared by several commands: one name, one help text, one meaning each."""

from __future__ import annotations

from typing import TYPE_CHECKING, Annotated

import typer

from cli._common import split_list
from probe.errors import ConfigError

if TYPE_CHECKING:
    from probe.backbones.request import BackboneRequest
    from probe.sources.multilabel import MultiLabelOptions
    from probe.sources.request import SourceRequest
    from probe.sources.volumes import SlicePolicy

Backbone = Annotated[
    str, typer.Option(help="registered name (probe models), timm:<model>, hf:<repo> or open_clip:<arch>@<tag>")
]
Pooling = Annotated[str | None, typer.Option(help="stored pooling to probe (default: the store's first)")]
Store = Annotated[str | None, typer.Option(help="explicit store path (default: looked up by data and backbone)")]
StoreRoot = Annotated[str, typer.Option(envvar="PROBE_STORE_ROOT", help="folder holding stores")]
ImageSize = Annotated[
    int | None,
    typer.Option(help="model input side in pixels the features are made at (default: the backbone's own size)"),
]
StoreImageSize = Annotated[  # the same meaning, read-only: which of a backbone's stores to probe
    int | None,
    typer.Option(
        "--image-size",
        help="model input side in pixels the features were made at (needed when the backbone has stores at several)",
    ),
]
Results = Annotated[str, typer.Option(help="results folder the rows are appended to")]
NoSave = Annotated[bool, typer.Option("--no-save", help="do not append the rows to the results table")]
Seeds = Annotated[int, typer.Option(help="draws per shot level (seeds SEED .. SEED+N-1); 5-10 give useful CIs")]
Seed = Annotated[int, typer.Option(help="first seed (draws, bootstrap)")]
Preprocessing = Annotated[
    str,
    typer.Option(
        help="features of the linear and labelspread heads: support (z-score per support), pool-standardise "
        "or pool-centre-l2 (train-split feature statistics; no labels, no val/test)"
    ),
]
Metrics = Annotated[str, typer.Option(help="comma list; qwk is added for ordinal sets")]
Bootstrap = Annotated[int, typer.Option(help="bootstrap resamples for each row's 95 % CI (0: none)")]
Device = Annotated[str, typer.Option(help="auto, cpu or cuda (kNN index and linear solver)")]
Strict = Annotated[bool, typer.Option(help="error (instead of a recorded cap) when a class has fewer samples")]
Progress = Annotated[bool, typer.Option(help="progress bars with an ETA on stderr (extraction and probing)")]
Json = Annotated[bool, typer.Option("--json", help='print {"results": [row, ...]} instead of a table')]
Split = Annotated[str, typer.Option(help="evaluated split: test, or val while developing")]
K = Annotated[str, typer.Option(help="neighbours, a comma list answered from one search, e.g. 10,20,100,200")]
Vote = Annotated[str, typer.Option(help="kNN vote: temperature (exp(sim/T)), uniform or distance")]


def parse_shots(text: str) -> tuple[int | str, ...]:
    """``"1,2,all"`` → ``(1, 2, "all")``."""
    out: list[int | str] = []
    for part in split_list(text) or ():
        if part.lower() == "all":
            out.append("all")
            continue
        try:
            out.append(int(part))
        except ValueError:
            raise ConfigError(f"--shots value {part!r} is not an integer or 'all', e.g. --shots 1,4,16,all") from None
    return tuple(out)


def parse_numbers(text: str | None, *, option: str, kind: type = float) -> tuple:  # type: ignore[type-arg]
    """A comma list of numbers, with an error naming the option."""
    try:
        return tuple(kind(p) for p in split_list(text) or ())
    except ValueError:
        raise ConfigError(f"{option} {text!r} must be a comma list of {kind.__name__}s") from None


LabelColumns = Annotated[
    str | None,
    typer.Option(help="multi-label csv: comma list of 1/0/-1 label columns (default: columns named label:<name>)"),
]
Uncertain = Annotated[
    str | None, typer.Option(help="multi-label: -1 (uncertain) entries are ignore (masked; default), zeros or ones")
]
Blank = Annotated[str | None, typer.Option(help="multi-label: empty entries are zeros (default) or ignore")]


def multilabel_options(label_columns: str | None, uncertain: str | None, blank: str | None) -> MultiLabelOptions | None:
    """The multi-label options of the command line (None when none was given)."""
    if label_columns is None and uncertain is None and blank is None:
        return None
    from probe.sources.multilabel import MultiLabelOptions

    return MultiLabelOptions(
        label_columns=split_list(label_columns), uncertain=uncertain or "ignore", blank=blank or "zeros"
    )


SliceAxis = Annotated[
    int | None, typer.Option(help="3D volumes: array axis to slice (default: 0 for MedMNIST 3D, 2 = axial for NIfTI)")
]
Slices = Annotated[str | None, typer.Option(help="3D volumes: slices to embed: all (default), every:N or central:K")]


def slice_policy(slices: str | None, slice_axis: int | None) -> SlicePolicy | None:
    """The slice policy of the command line (None when no slice option was given)."""
    if slices is None and slice_axis is None:
        return None
    from probe.sources.volumes import SlicePolicy

    return SlicePolicy.parse(slices, axis=slice_axis)


def source_request(
    data: str,
    *,
    data_root: str | None = None,
    rgba: str = "composite",
    limit: int | None = None,
    slices: str | None = None,
    slice_axis: int | None = None,
    label_columns: str | None = None,
    uncertain: str | None = None,
    blank: str | None = None,
) -> SourceRequest:
    """The data request of a command line: the specification and its data options, built once."""
    from probe.sources.request import SourceRequest

    return SourceRequest(
        spec=data,
        data_root=data_root,
        rgba="reject" if rgba == "reject" else "composite",
        limit=limit,
        slices=slice_policy(slices, slice_axis),
        multilabel=multilabel_options(label_columns, uncertain, blank),
    )


def backbone_request(
    name: str,
    *,
    weights: str | None = None,
    random_weights: bool = False,
    image_size: int | None = None,
    resolution: str = "resize",
) -> BackboneRequest:
    """The backbone request of a command line."""
    from probe.backbones.request import BackboneRequest

    return BackboneRequest(
        name=name, weights=weights, image_size=image_size, resolution=resolution, pretrained=not random_weights
    )
