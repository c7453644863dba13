"""Which backbone a run embeds with: the name plus every option that changes its features."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from probe.backbones._base import Backbone


@dataclass(frozen=True)
class BackboneRequest:
    """A backbone request, built once where a run starts (the CLI or a Python call) and passed down unchanged."""

    name: str  # registry alias (probe models), timm:<model>, hf:<repo> or open_clip:<arch>@<tag>
    weights: str | None = None  # local .safetensors/.pth state dict instead of a download (air-gapped sites)
    image_size: int | None = None  # model input side in pixels (None: the backbone's own)
    resolution: str = "resize"  # "resize" the whole image, or "pad" it onto a square canvas
    pretrained: bool = True  # False: seeded random weights (smoke tests)

    @classmethod
    def of(cls, backbone: str | BackboneRequest) -> BackboneRequest:
        """A request from a backbone name, or the request itself."""
        return backbone if isinstance(backbone, BackboneRequest) else cls(name=backbone)

    def check(self) -> None:
        """Fail fast on an unknown name, before any data or weights are read (UnknownBackboneError)."""
        from probe.backbones._registry import check_backbone_name

        check_backbone_name(self.name)

    def load(self) -> Backbone:
        """Build the frozen backbone (see :func:`probe.backbones.load_backbone`)."""
        from probe.backbones._registry import load_backbone

        return load_backbone(
            self.name,
            weights=self.weights,
            image_size=self.image_size,
            resolution=self.resolution,
            pretrained=self.pretrained,
        )
