"""The registered backbones as a Markdown table (``probe models --markdown``, ``docs/models.md``)."""

from __future__ import annotations

from probe.backbones._registry import BackboneSpec, registered_backbones

_COLUMNS = ("name", "family", "source", "weights", "licence", "input", "mean / std", "poolings (dim)", "projection")


def _norm(spec: BackboneSpec) -> str:
    if spec.mean is None or spec.std is None:
        return "from the source"
    mean = ", ".join(f"{v:.4g}" for v in spec.mean)
    std = ", ".join(f"{v:.4g}" for v in spec.std)
    return f"({mean}) / ({std})"


def _row(spec: BackboneSpec) -> list[str]:
    poolings = ", ".join(f"{k} {v}" + ("*" if k in spec.default_poolings else "") for k, v in spec.poolings.items())
    return [
        f"`{spec.name}`",
        spec.family,
        f"`{spec.source}`",
        spec.weights_id,
        spec.license,
        str(spec.image_size),
        _norm(spec),
        poolings,
        spec.projection,
    ]


def models_markdown() -> str:
    """One Markdown table row per registered backbone (defaults poolings marked ``*``)."""
    lines = ["| " + " | ".join(_COLUMNS) + " |", "|" + "---|" * len(_COLUMNS)]
    for spec in registered_backbones().values():
        lines.append("| " + " | ".join(cell.replace("|", "\\|") for cell in _row(spec)) + " |")
    return "\n".join(lines) + "\n"
