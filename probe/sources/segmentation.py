"""Images with per-pixel class maps (``seg:<manifest.csv>``): 2D image/mask pairs, or NIfTI volumes
with label volumes cut into 2D slice rows.

The manifest has an image column (``path``/``image``/...), a mask column (``mask``/``label_map``/
``seg``/``segmentation``), and optional split, group and id columns as in ``csv:``; relative paths
resolve against the manifest's folder. A mask is an integer label map (one class index per pixel,
0 = background; PNG/TIFF modes ``L``, ``P``, ``I;16`` or ``I``) of the image's size. Rows whose
image is a ``.nii``/``.nii.gz`` file are volumes: image and label volume are reoriented together to
RAS+, a label volume on another voxel grid is resampled onto the image grid by nearest neighbour
(never interpolated), and every slice the slice policy keeps along ``axis`` (default 2, axial)
becomes one row with id ``<volume id>#<slice>`` — shots then count labelled volumes.

Class names come from a ``classes.txt`` beside the manifest (one name per line; line ``i`` names
class ``i``), else they are ``background``, ``class_1``, ... up to the largest value found. Every
mask is read once when the source opens (its class counts validate the data): a mask whose shape
differs from its image or that is not an integer map is an error; classes seen only in the test
split and empty masks are warned about once. Value 255 is reserved for "ignore" (padding).
"""

from __future__ import annotations

import hashlib
import warnings
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from probe.errors import ConfigError, ImageDecodeError, SourceError
from probe.sources._base import Source, cache_root, split_code
from probe.sources.files import GROUP_COLUMNS, ID_COLUMNS, PATH_COLUMNS, SPLIT_COLUMNS, content_digests, read_manifest
from probe.sources.images import read_image, rescale_to_unit, to_three_channels
from probe.sources.volumes import SlicePolicy, select_slices

MASK_COLUMNS = ("mask", "label_map", "seg", "segmentation", "annotation")
OPTION_KEYS = ("axis", "slices")  # spec options: slice axis and slice policy of volume rows
IGNORE = 255  # mask value that is never trained on or scored (padding)
_INTEGER_MODES = ("1", "L", "P", "I", "I;16", "I;16B", "I;16L")
_NIFTI = (".nii", ".nii.gz")


class SegmentationWarning(UserWarning):
    """Masks that can be used but deserve a look (empty masks, classes seen only in test)."""


def _pick(header: list[str], names: tuple[str, ...]) -> str | None:
    lower = {h.strip().lower(): h for h in header}
    return next((lower[n] for n in names if n in lower), None)


def _is_volume(path: Path) -> bool:
    return path.name.lower().endswith(_NIFTI)


class SegmentationSource(Source):
    """Image/mask pairs (2D) or image/label volumes (3D, one row per kept slice).

    Args:
        manifest: the CSV manifest.
        options: spec options ``axis`` (0-2) and ``slices`` (``all``, ``every:N``, ``central:K``).
    """

    task = "segmentation"

    def __init__(self, manifest: str, *, options: dict[str, str] | None = None) -> None:
        options = dict(options or {})
        if not Path(manifest).expanduser().is_file():
            raise SourceError(
                f"seg:{manifest}: file not found; pass the path of a CSV manifest with image and mask columns"
            )
        file, rows, header = read_manifest(manifest)
        self.spec, self.name, self.root = f"seg:{file}", file.stem, file.parent
        cols = {
            "image": _pick(header, PATH_COLUMNS),
            "mask": _pick(header, MASK_COLUMNS),
            "split": _pick(header, SPLIT_COLUMNS),
            "group": _pick(header, GROUP_COLUMNS),
            "id": _pick(header, ID_COLUMNS),
        }
        for what, names in (("image", PATH_COLUMNS), ("mask", MASK_COLUMNS)):
            if cols[what] is None:
                raise SourceError(
                    f"seg:{file}: no {what} column; name one of {', '.join(names)} (found: {', '.join(header)})"
                )
        self.image_paths: list[str] = []
        self.mask_paths: list[str] = []
        unit_ids, unit_splits, unit_groups = [], [], []
        for line, row in enumerate(rows, start=2):
            image, mask = (row.get(str(cols["image"])) or "").strip(), (row.get(str(cols["mask"])) or "").strip()
            if not image or not mask:
                raise SourceError(f"seg:{file}: line {line} has an empty image or mask path; fill or drop the row")
            self.image_paths.append(str(self._resolve(image)))
            self.mask_paths.append(str(self._resolve(mask)))
            unit_ids.append((row.get(str(cols["id"])) or "").strip() if cols["id"] else image)
            unit_splits.append((row.get(str(cols["split"])) or "").strip() if cols["split"] else "")
            unit_groups.append((row.get(str(cols["group"])) or "").strip() if cols["group"] else "")
        if len(set(unit_ids)) != len(unit_ids):
            dup = next(i for i in unit_ids if unit_ids.count(i) > 1)
            raise SourceError(f"seg:{file}: sample id {dup!r} appears twice; ids must be unique")
        kinds = {_is_volume(Path(p)) for p in self.image_paths}
        if len(kinds) > 1:
            raise SourceError(f"seg:{file}: mixes NIfTI volumes and 2D images; keep one kind per manifest")
        self.volumetric = kinds == {True}
        self.unit_kind = "volume" if self.volumetric else "image"
        self.policy = _slice_policy(options, volumetric=self.volumetric, spec=self.spec)
        self._cache: tuple[int, np.ndarray, np.ndarray] | None = None
        counts = self._scan_volumes() if self.volumetric else self._scan_images()
        # rows: one per image, or one per kept slice of each volume (row -> (unit, slice position))
        self.rows = [(u, int(z)) for u, zs in enumerate(self._positions) for z in zs]
        units = [u for u, _ in self.rows]
        self.ids = [unit_ids[u] if not self.volumetric else f"{unit_ids[u]}#{z}" for u, z in self.rows]
        self.splits = np.array([split_code(unit_splits[u]) for u in units], dtype=np.int8)
        known_groups = cols["group"] is not None or self.volumetric  # a volume's slices share one patient
        self.groups = [unit_groups[u] or unit_ids[u] for u in units] if known_groups else None
        self.n_classes = max(int(counts.shape[1]), 2)
        self.classes = _class_names(self.root, self.n_classes, spec=self.spec)
        self.n_classes = len(self.classes)
        self.labels = np.zeros(len(self.rows), dtype=np.int64)  # image labels carry nothing here: masks do
        self._check_classes(counts, [unit_splits[u] for u in range(len(unit_ids))], unit_ids)

    def _resolve(self, text: str) -> Path:
        p = Path(text).expanduser()
        return p if p.is_absolute() else self.root / p

    # ---- reading and validating every mask once -------------------------------------------------

    def _scan_images(self) -> np.ndarray:
        """(n_units, K) pixel counts per class; checks image/mask sizes and mask types."""
        out: list[np.ndarray] = []
        for image, mask in zip(self.image_paths, self.mask_paths, strict=True):
            m = self._read_mask_file(mask)
            try:
                with Image.open(image) as im:
                    size = (im.height, im.width)
            except (OSError, ValueError) as exc:
                raise SourceError(f"{self.spec}: image {image} cannot be opened ({exc}); fix or drop the row") from None
            if m.shape != size:
                raise SourceError(
                    f"{self.spec}: mask {mask} is {m.shape[1]}x{m.shape[0]} px but its image {image} is "
                    f"{size[1]}x{size[0]}; masks must have their image's size"
                )
            out.append(np.bincount(m[m != IGNORE].ravel(), minlength=1))
        self._positions = [np.zeros(1, dtype=np.int64) for _ in self.image_paths]
        return _stack_counts(out)

    def _read_mask_file(self, path: str) -> np.ndarray:
        try:
            with Image.open(path) as im:
                if im.mode not in _INTEGER_MODES:
                    raise SourceError(
                        f"{self.spec}: mask {path} has pixel mode {im.mode} (colour or float); save it as an "
                        "integer label map (8- or 16-bit grayscale or palette PNG, one class index per pixel)"
                    )
                m = np.asarray(im)
        except SourceError:
            raise
        except (OSError, ValueError) as exc:
            raise SourceError(f"{self.spec}: mask {path} cannot be read ({exc}); fix or drop the row") from None
        return _as_label_map(m, where=f"{self.spec}: mask {path}")

    def _scan_volumes(self) -> np.ndarray:
        out: list[np.ndarray] = []
        self._positions = []
        for u in range(len(self.image_paths)):
            _, labels = self._read_volume_pair(u)
            self._positions.append(select_slices(labels.shape[self.policy.axis or 2], self.policy))
            out.append(np.bincount(labels[labels != IGNORE].ravel(), minlength=1))
        return _stack_counts(out)

    def _read_volume_pair(self, unit: int) -> tuple[np.ndarray, np.ndarray]:
        """The RAS+ image volume (float32 in [0, 1], min-max over the volume) and its label volume (uint8)."""
        import nibabel as nib

        image_path, mask_path = self.image_paths[unit], self.mask_paths[unit]
        try:
            img = nib.as_closest_canonical(nib.load(image_path))
            lab = nib.as_closest_canonical(nib.load(mask_path))
        except FileNotFoundError as exc:
            raise SourceError(f"{self.spec}: {exc.filename or image_path} not found; fix the manifest") from None
        except Exception as exc:  # nibabel raises many types for a corrupt header
            raise SourceError(f"{self.spec}: {image_path} / {mask_path}: not readable NIfTI ({exc})") from None
        if img.shape[:3] != lab.shape[:3] or not np.allclose(img.affine, lab.affine, atol=1e-3):
            from nibabel.processing import resample_from_to

            lab = resample_from_to(lab, (img.shape[:3], img.affine), order=0)  # nearest: labels stay labels
        labels = np.asarray(lab.dataobj)
        if labels.ndim == 4 and labels.shape[3] == 1:
            labels = labels[..., 0]
        vol = np.asarray(img.get_fdata(dtype=np.float32))
        if vol.ndim == 4 and vol.shape[3] == 1:
            vol = vol[..., 0]
        if vol.ndim != 3:
            raise SourceError(f"{self.spec}: {image_path} has shape {vol.shape}; expected a 3D volume")
        return rescale_to_unit(vol), _as_label_map(labels, where=f"{self.spec}: label volume {mask_path}")

    def _check_classes(self, counts: np.ndarray, unit_splits: list[str], unit_ids: list[str]) -> None:
        if counts.shape[1] > self.n_classes:
            raise SourceError(
                f"{self.spec}: masks hold class {counts.shape[1] - 1} but classes.txt names only "
                f"{self.n_classes} classes; add the missing names"
            )
        self.mask_flags: tuple[str, ...] = ()  # recorded in the store and on every result row
        codes = np.array([split_code(s) for s in unit_splits])
        fg = counts[:, 1:] > 0
        empty = [unit_ids[i] for i in np.flatnonzero(~fg.any(axis=1))]
        if empty:
            self.mask_flags += ("empty-masks",)
            warnings.warn(
                f"{self.spec}: {len(empty)} mask(s) hold background only (e.g. {empty[0]!r}); they count as "
                "labelled samples without foreground",
                SegmentationWarning,
                stacklevel=3,
            )
        in_train = fg[codes == split_code("train")].any(axis=0) if (codes == split_code("train")).any() else None
        in_test = fg[codes == split_code("test")].any(axis=0)
        if in_train is not None:
            only_test = [self.classes[c + 1] for c in np.flatnonzero(in_test & ~in_train)]
            if only_test:
                self.mask_flags += ("classes-only-in-test",)
                warnings.warn(
                    f"{self.spec}: class(es) {', '.join(only_test)} appear only in the test split; no head can "
                    "learn them (their Dice is 0)",
                    SegmentationWarning,
                    stacklevel=3,
                )

    # ---- the Source contract --------------------------------------------------------------------

    def _volume(self, unit: int) -> tuple[np.ndarray, np.ndarray]:
        if self._cache is None or self._cache[0] != unit:  # rows of one volume are consecutive
            try:
                vol, labels = self._read_volume_pair(unit)
            except SourceError as exc:
                raise ImageDecodeError(str(exc)) from None
            self._cache = (unit, vol, labels)
        return self._cache[1], self._cache[2]

    def load_image(self, index: int) -> np.ndarray:
        unit, z = self.rows[index]
        if not self.volumetric:
            return read_image(self.image_paths[unit], sample_id=self.ids[index])
        vol, _ = self._volume(unit)
        return to_three_channels(np.take(vol, z, axis=self.policy.axis or 2))

    def load_mask(self, index: int) -> np.ndarray:
        """The label map of row ``index``: (H, W) uint8, 255 = ignore, equal in size to its image."""
        unit, z = self.rows[index]
        if not self.volumetric:
            try:
                return self._read_mask_file(self.mask_paths[unit])
            except SourceError as exc:
                raise ImageDecodeError(str(exc)) from None
        _, labels = self._volume(unit)
        return np.ascontiguousarray(np.take(labels, z, axis=self.policy.axis or 2))

    def units(self) -> list[str]:
        """The labelled unit of every row: the image id, or the volume id of a slice."""
        return [i.rpartition("#")[0] if self.volumetric else i for i in self.ids]

    def location(self, index: int) -> str:
        return self.image_paths[self.rows[index][0]]

    def decode_options(self) -> dict[str, Any]:
        volume = {"slice_axis": self.policy.axis or 2, "slices": self.policy.text()} if self.volumetric else {}
        return {"masks": "nearest", **volume}

    def content_digest(self) -> str:
        key = hashlib.sha256(str(self.root).encode()).hexdigest()[:16]
        files = [*self.image_paths, *self.mask_paths]
        digests = content_digests(files, cache_file=cache_root() / "digests" / f"{key}.json")
        h = hashlib.sha256()
        for path, digest in zip(files, digests, strict=True):
            h.update(f"{Path(path).name}\0{digest}\0".encode())
        return h.hexdigest()

    def describe(self) -> dict[str, Any]:
        return {**super().describe(), "unit_kind": self.unit_kind, "ignore_index": IGNORE,
                "mask_flags": list(self.mask_flags)}  # fmt: skip

    def __getstate__(self) -> dict[str, Any]:  # DataLoader workers: never ship a decoded volume
        return {**self.__dict__, "_cache": None}


def _slice_policy(options: dict[str, str], *, volumetric: bool, spec: str) -> SlicePolicy:
    if options and not volumetric:
        raise ConfigError(f"{spec}: options {', '.join(options)} apply to NIfTI volumes only; drop them")
    axis_text = options.get("axis", "2")
    if axis_text not in ("0", "1", "2"):
        raise ConfigError(f"{spec}: axis={axis_text} is invalid; use 0, 1 or 2 (2 = axial after RAS+ reorientation)")
    return SlicePolicy.parse(options.get("slices"), axis=int(axis_text))


def _as_label_map(m: np.ndarray, *, where: str) -> np.ndarray:
    """An integer array as uint8 class indices (255 = ignore)."""
    if m.ndim == 3 and m.shape[2] == 1:
        m = m[..., 0]
    if m.dtype.kind == "b":
        return m.astype(np.uint8)
    if m.dtype.kind == "f":
        if not np.all(np.isfinite(m)) or not np.array_equal(m, np.round(m)):
            raise SourceError(f"{where} holds non-integer values; label maps need one integer class per pixel")
    elif m.dtype.kind not in "ui":
        raise SourceError(f"{where} has dtype {m.dtype}; label maps need integer class indices")
    if m.size and (m.min() < 0 or m.max() > IGNORE):
        raise SourceError(
            f"{where} holds values {int(m.min())}..{int(m.max())}; class indices must lie in 0..254 (255 = ignore)"
        )
    return m.astype(np.uint8)


def _stack_counts(counts: list[np.ndarray]) -> np.ndarray:
    width = max(c.size for c in counts)
    return np.stack([np.pad(c, (0, width - c.size)) for c in counts])


def _class_names(root: Path, n_found: int, *, spec: str) -> tuple[str, ...]:
    file = root / "classes.txt"
    if file.is_file():
        names = tuple(line.strip() for line in file.read_text(encoding="utf-8").splitlines() if line.strip())
        if len(names) < 2:
            raise SourceError(f"{spec}: {file} names {len(names)} class(es); name background and at least one more")
        return names
    return ("background", *(f"class_{i}" for i in range(1, n_found)))
