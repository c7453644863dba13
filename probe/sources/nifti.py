"""NIfTI volumes (``nifti:<dir or manifest.csv>``), read with nibabel and embedded slice-wise.

A folder uses the ImageFolder layout with ``.nii``/``.nii.gz`` files (``dir/<class>/*.nii.gz`` or
``dir/<train|val|test>/<class>/*.nii.gz``); a CSV manifest uses the ``csv:`` columns (path, label,
optional split, group, id). Every volume is reoriented to the closest canonical (RAS+) orientation,
so array axis 2 runs inferior to superior and slices along it are axial whatever the file's
orientation; that is the default slice axis. Scaling (``scl_slope``/``scl_inter``) is applied.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from probe.errors import ImageDecodeError, SourceError
from probe.sources.files import _SPLIT_DIRS, FileListSource, open_manifest
from probe.sources.volumes import SlicePolicy, VolumeSource

NIFTI_SUFFIXES: tuple[str, ...] = (".nii", ".nii.gz")


def _is_nifti(p: Path) -> bool:
    return p.is_file() and p.name.lower().endswith(NIFTI_SUFFIXES) and not p.name.startswith(".")


def _folder_files(root: Path) -> FileListSource:
    top = sorted(d for d in root.iterdir() if d.is_dir() and not d.name.startswith("."))
    split_level = bool(top) and all(d.name.lower() in _SPLIT_DIRS for d in top)
    paths: list[Path] = []
    labels: list[str] = []
    splits: list[str] = []
    for split_dir in top if split_level else [root]:
        for class_dir in sorted(d for d in split_dir.iterdir() if d.is_dir() and not d.name.startswith(".")):
            for p in sorted(q for q in class_dir.rglob("*") if _is_nifti(q)):
                paths.append(p)
                labels.append(class_dir.name)
                splits.append(split_dir.name if split_level else "")
    if not paths:
        raise SourceError(
            f"nifti:{root}: no .nii/.nii.gz files in class subfolders; expected dir/<class>/<volume.nii.gz> "
            "or dir/<train|val|test>/<class>/<volume.nii.gz>, or pass a CSV manifest"
        )
    return FileListSource(spec=f"nifti:{root}", root=root, paths=paths, labels=labels, splits=splits)


def _canonical_shape(img: Any) -> tuple[int, ...]:
    """The array shape after reorientation to RAS+, from the header alone."""
    import nibabel as nib

    ornt = nib.orientations.io_orientation(img.affine)
    shape = img.shape
    spatial = tuple(int(shape[int(i)]) for i in np.argsort(ornt[:, 0]))
    return spatial + tuple(int(s) for s in shape[3:])


class NiftiSource(VolumeSource):
    """NIfTI volumes with labels, splits and groups from a folder layout or a CSV manifest.

    Args:
        target: a folder (ImageFolder layout) or a CSV manifest of volume paths.
        policy: slice policy (default: every axial slice, axis 2 of the RAS+ array).
    """

    default_axis = 2

    def __init__(self, target: str, *, policy: SlicePolicy | None = None) -> None:
        path = Path(target).expanduser().resolve()
        if path.is_dir():
            files = _folder_files(path)
        elif path.is_file():
            files = open_manifest(str(path))
        else:
            raise SourceError(f"nifti:{target}: not found; pass a folder of .nii.gz files or a CSV manifest")
        self.files = files
        self.spec = f"nifti:{path}"
        self.name = path.stem if path.is_file() else (path.name or "nifti")
        self.classes, self.task = files.classes, files.task
        self.ids, self.labels, self.splits, self.groups = files.ids, files.labels, files.splits, files.groups
        self._shapes = [self._header_shape(i) for i in range(len(files.paths))]
        self._init_views(policy)

    def _header_shape(self, index: int) -> tuple[int, int, int]:
        import nibabel as nib

        where = f"sample {self.ids[index]!r} ({self.files.paths[index]})"
        try:
            img = nib.load(self.files.paths[index])
        except FileNotFoundError:
            raise SourceError(f"{where}: file not found; fix the path in the manifest") from None
        except Exception as exc:  # nibabel raises many types for a corrupt header
            raise SourceError(f"{where}: not a readable NIfTI file ({exc}); replace or remove it") from None
        shape = _canonical_shape(img)
        if len(shape) == 4 and shape[3] == 1:
            shape = shape[:3]
        if len(shape) != 3:
            raise SourceError(f"{where}: expected a 3D volume, got shape {shape}; split 4D series into 3D files")
        return (shape[0], shape[1], shape[2])

    def volume_shape(self, index: int) -> tuple[int, int, int]:
        return self._shapes[index]

    def read_volume(self, index: int) -> np.ndarray:
        import nibabel as nib

        try:
            img = nib.as_closest_canonical(nib.load(self.files.paths[index]))
            vol = np.asarray(img.get_fdata(dtype=np.float32))
        except Exception as exc:
            raise ImageDecodeError(
                f"sample {self.ids[index]!r} ({self.files.paths[index]}): cannot read NIfTI voxels ({exc}); "
                "replace the file or pass ExtractConfig(on_error=skip)"
            ) from None
        return vol.reshape(self._shapes[index])

    def location(self, index: int) -> str:
        return self.files.paths[index]

    def content_digest(self) -> str:
        return self.files.content_digest()

    def subset_digest(self, indices: np.ndarray) -> str:
        return self.files.subset_digest(indices)
