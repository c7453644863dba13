"""DICOM decoding (Modality LUT → VOI → MONOCHROME1) on pydicom's bundled files and synthetic files, and
``dicom:`` sources end to end through ``probe curve`` and ``probe report``."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np
import pydicom
import pytest
from numpy.testing import assert_allclose, assert_array_equal
from pydicom.data import get_testdata_file
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.pixels import convert_color_space
from pydicom.uid import ExplicitVRLittleEndian, SecondaryCaptureImageStorage, generate_uid
from typer.testing import CliRunner

from probe.errors import ConfigError, ImageDecodeError, SourceError
from probe.sources import open_source
from probe.sources._dicom_pixels import WINDOW_PRESETS, DicomOptions, linear_window, read_dicom


def bundled(name: str) -> str:
    path = get_testdata_file(name, download=False)
    if path is None:
        pytest.skip(f"pydicom test file {name} is not bundled with this pydicom")
    return str(path)


def write_dicom(
    path: Path,
    pixels: np.ndarray,
    *,
    photometric: str = "MONOCHROME2",
    patient: str | None = "p0",
    signed: bool = False,
    **attrs: object,
) -> Path:
    """A minimal Secondary Capture file: (rows, cols) or (frames, rows, cols) 16-bit grayscale."""
    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = SecondaryCaptureImageStorage
    meta.MediaStorageSOPInstanceUID = generate_uid()
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds = Dataset()
    ds.file_meta = meta
    ds.SOPClassUID, ds.SOPInstanceUID = meta.MediaStorageSOPClassUID, meta.MediaStorageSOPInstanceUID
    if patient is not None:
        ds.PatientID = patient
    ds.Modality = "CT"
    ds.SamplesPerPixel = 1
    ds.PhotometricInterpretation = photometric
    ds.Rows, ds.Columns = pixels.shape[-2:]
    if pixels.ndim == 3:
        ds.NumberOfFrames = pixels.shape[0]
    ds.BitsAllocated, ds.BitsStored, ds.HighBit = 16, 16, 15
    ds.PixelRepresentation = int(signed)
    for key, value in attrs.items():
        setattr(ds, key, value)
    ds.PixelData = pixels.astype(np.int16 if signed else np.uint16).tobytes()
    path.parent.mkdir(parents=True, exist_ok=True)
    ds.save_as(path, enforce_file_format=True)
    return path


STORED = np.array([[0, 250, 500], [750, 1000, 1000]], dtype=np.uint16)  # slope 2, intercept -1000 → -1000..1000 HU
HU = STORED.astype(np.float64) * 2 - 1000


def _grey(image: np.ndarray) -> np.ndarray:
    assert image.shape[2] == 3 and image.dtype == np.float32
    assert_array_equal(image[..., 0], image[..., 1])
    return image[..., 0]


# --- the pixel pipeline on synthetic files (exact values) -----------------------------------------------------


def test_rescale_then_file_window(tmp_path: Path) -> None:
    p = write_dicom(
        tmp_path / "a.dcm", STORED, RescaleSlope=2, RescaleIntercept=-1000, WindowCenter=0, WindowWidth=2001
    )
    expected = np.clip((HU + 0.5) / 2000 + 0.5, 0, 1)  # LINEAR: (x - (c - 0.5)) / (w - 1) + 0.5
    assert_allclose(_grey(read_dicom(p)), expected, atol=1e-6)
    assert _grey(read_dicom(p))[0, 0] == pytest.approx(0.00025, abs=1e-7)


def test_monochrome1_is_inverted_after_the_window(tmp_path: Path) -> None:
    kw = {"RescaleSlope": 2, "RescaleIntercept": -1000, "WindowCenter": 0, "WindowWidth": 2001}
    m2 = _grey(read_dicom(write_dicom(tmp_path / "m2.dcm", STORED, **kw)))
    m1 = _grey(read_dicom(write_dicom(tmp_path / "m1.dcm", STORED, photometric="MONOCHROME1", **kw)))
    assert_allclose(m1, 1.0 - m2, atol=1e-7)
    assert m1[0, 0] > 0.99 and m1[1, 2] == 0.0  # the lowest HU is brightest in MONOCHROME1


@pytest.mark.parametrize(
    ("window", "centre", "width"),
    [("lung", -600, 1500), ("bone", 400, 1800), ("40,400", 40, 400), ("-50,350", -50, 350)],
)
def test_preset_or_explicit_window_overrides_the_file(tmp_path: Path, window: str, centre: float, width: float) -> None:
    p = write_dicom(
        tmp_path / "a.dcm", STORED, RescaleSlope=2, RescaleIntercept=-1000, WindowCenter=0, WindowWidth=2001
    )
    got = _grey(read_dicom(p, DicomOptions.from_options({"window": window})))
    assert_allclose(got, np.clip((HU - (centre - 0.5)) / (width - 1) + 0.5, 0, 1), atol=1e-6)


def test_sixteen_bit_is_float_without_saturation(tmp_path: Path) -> None:
    pixels = np.array([[0, 1000, 40000], [60000, 65534, 65535]], dtype=np.uint16)
    got = _grey(read_dicom(write_dicom(tmp_path / "a.dcm", pixels)))  # no window in the file: min-max
    assert_allclose(got, pixels / 65535.0, atol=1e-7)
    assert np.unique(got).size == 6  # every level stays distinct (no 8-bit clipping or rounding)


def test_signed_pixels_and_minmax(tmp_path: Path) -> None:
    pixels = np.array([[-2000, -1], [0, 3000]], dtype=np.int16)
    p = write_dicom(tmp_path / "a.dcm", pixels, signed=True, WindowCenter=0, WindowWidth=10)
    got = _grey(read_dicom(p, DicomOptions(window="minmax")))
    assert_allclose(got, (pixels + 2000) / 5000.0, atol=1e-7)


def test_voi_lut_sequence_wins_over_window(tmp_path: Path) -> None:
    item = Dataset()
    item.add_new(0x00283002, "US", [4, 10, 16])  # LUT Descriptor: 4 entries, first value mapped 10, 16 bits
    item.add_new(0x00283006, "US", [0, 1000, 3000, 65535])  # LUT Data
    pixels = np.array([[0, 10, 11], [12, 13, 500]], dtype=np.uint16)
    p = write_dicom(tmp_path / "a.dcm", pixels, VOILUTSequence=[item], WindowCenter=100, WindowWidth=10)
    got = _grey(read_dicom(p))
    assert_allclose(got, np.array([[0, 0, 1000], [3000, 65535, 65535]]) / 65535.0, atol=1e-7)


def test_sigmoid_and_linear_exact_functions() -> None:
    x = np.array([-10.0, 0.0, 10.0])
    assert_allclose(linear_window(x, 0, 20, "LINEAR_EXACT"), [0.0, 0.5, 1.0])
    assert_allclose(linear_window(x, 0, 20, "SIGMOID"), 1 / (1 + np.exp(-4 * x / 20)), rtol=1e-6)
    assert_array_equal(linear_window(x, 0, 1), [0.0, 1.0, 1.0])  # width 1: a threshold at c - 0.5


def test_multi_frame_middle_or_all(tmp_path: Path) -> None:
    frames = np.stack([np.full((2, 2), 100 * (k + 1), np.uint16) for k in range(5)])
    frames[:, 0, 0] = 0  # every frame spans 0..100(k+1), so min-max maps its top value to 1
    p = write_dicom(tmp_path / "cls" / "vol.dcm", frames, WindowCenter=250, WindowWidth=501)
    middle = _grey(read_dicom(p))
    assert_allclose(middle[1, 1], linear_window(np.array(300.0), 250, 501)[()], atol=1e-7)
    assert_allclose(_grey(read_dicom(p, frame=4))[1, 1], 1.0)
    with pytest.raises(ImageDecodeError, match="frame 5 does not exist"):
        read_dicom(p, frame=5)


# --- pydicom's bundled files --------------------------------------------------------------------------------


def test_ct_small_hounsfield_and_lung_window() -> None:
    path = bundled("CT_small.dcm")
    ds = pydicom.dcmread(path)
    hu = ds.pixel_array.astype(np.float64) * float(ds.RescaleSlope) + float(ds.RescaleIntercept)
    assert float(ds.RescaleIntercept) == -1024 and "WindowCenter" not in ds
    assert_allclose(_grey(read_dicom(path)), (hu - hu.min()) / (hu.max() - hu.min()), atol=1e-6)  # no window: min-max
    c, w = WINDOW_PRESETS["lung"]
    lung = _grey(read_dicom(path, DicomOptions(window="lung")))
    assert_allclose(lung, np.clip((hu - (c - 0.5)) / (w - 1) + 0.5, 0, 1), atol=1e-6)


def test_mr_small_uses_its_own_window() -> None:
    path = bundled("MR_small.dcm")
    ds = pydicom.dcmread(path)
    c, w = float(ds.WindowCenter), float(ds.WindowWidth)
    assert (c, w) == (600.0, 1600.0)
    expected = np.clip((ds.pixel_array - (c - 0.5)) / (w - 1) + 0.5, 0, 1)
    assert_allclose(_grey(read_dicom(path)), expected, atol=1e-6)


def test_rgb_is_passed_through() -> None:
    path = bundled("SC_rgb_small_odd.dcm")
    got = read_dicom(path, DicomOptions(window="lung"))  # windows never touch colour images
    assert got.dtype == np.uint8 and got.shape == (3, 3, 3)
    assert_array_equal(got, pydicom.dcmread(path).pixel_array)


def test_ybr_becomes_rgb() -> None:
    path = bundled("SC_ybr_full_422_uncompressed.dcm")
    ds = pydicom.dcmread(path)
    assert ds.PhotometricInterpretation == "YBR_FULL_422"
    raw = pydicom.pixels.pixel_array(ds, raw=True)
    got = read_dicom(path)
    assert_array_equal(got, convert_color_space(raw, "YBR_FULL", "RGB"))
    assert not np.array_equal(got, raw)


def test_bundled_multi_frame_rgb_middle_frame() -> None:
    path = bundled("SC_rgb_rle_2frame.dcm")
    ds = pydicom.dcmread(path)
    assert int(ds.NumberOfFrames) == 2
    assert_array_equal(read_dicom(path), ds.pixel_array[1])  # middle of 2 frames is frame 1
    assert_array_equal(read_dicom(path, frame=0), ds.pixel_array[0])


def test_sixteen_bit_rgb_is_scaled_not_clipped() -> None:
    path = bundled("SC_rgb_rle_16bit.dcm")
    arr = pydicom.dcmread(path).pixel_array
    got = read_dicom(path)
    assert got.dtype == np.float32
    assert_allclose(got, arr / 65535.0, atol=1e-7)


def test_bad_files_and_options(tmp_path: Path) -> None:
    (tmp_path / "x.dcm").write_bytes(b"not a dicom file at all")
    with pytest.raises(ImageDecodeError, match=r"x\.dcm: not a readable DICOM file"):
        read_dicom(tmp_path / "x.dcm")
    with pytest.raises(ImageDecodeError, match="file not found"):
        read_dicom(tmp_path / "missing.dcm", sample_id="s1")
    with pytest.raises(ConfigError, match=r"window='lungs' is unknown; use auto, minmax, a preset \(lung"):
        DicomOptions.from_options({"window": "lungs"})
    with pytest.raises(ConfigError, match="WIDTH >= 1"):
        DicomOptions.from_options({"window": "40,0"})
    with pytest.raises(ConfigError, match="frames='first' is unknown"):
        DicomOptions.from_options({"frames": "first"})


# --- sources ------------------------------------------------------------------------------------------------


def write_dicom_folder(root: Path, *, per_class: int = 8, per_patient: int = 2, seed: int = 0) -> Path:
    """dicom:<dir> layout: two classes whose HU differ, two images per patient, CT rescale and a window."""
    rng = np.random.default_rng(seed)
    for ci, cls in enumerate(("benign", "malignant")):
        for i in range(per_class):
            hu = rng.normal(-400 + 500 * ci, 80, size=(16, 16))
            stored = np.clip(np.rint(hu + 1024), 0, 4095).astype(np.uint16)
            write_dicom(
                root / cls / f"{cls}_{i:02d}.dcm",
                stored,
                patient=f"{cls[0]}{i // per_patient}",
                RescaleSlope=1,
                RescaleIntercept=-1024,
                WindowCenter=40,
                WindowWidth=400,
            )
    return root


def test_dicom_folder_source_groups_and_options(tmp_path: Path) -> None:
    root = write_dicom_folder(tmp_path / "ct", per_class=4)
    src = open_source(f"dicom:{root}")
    assert src.classes == ("benign", "malignant") and len(src) == 8
    assert src.groups == ["b0", "b0", "b1", "b1", "m0", "m0", "m1", "m1"]  # PatientID from the headers
    assert src.spec == f"dicom:{root}" and src.decode_options()["dicom"] == {"window": "auto", "frames": "middle"}
    lung = open_source(f"dicom:{root}?window=lung")
    assert lung.spec == f"dicom:{root}?window=lung"
    assert lung.decode_options() != src.decode_options()  # the window enters the store fingerprint
    assert not np.array_equal(lung.load_image(0), src.load_image(0))
    with pytest.raises(ConfigError, match="unknown option"):
        open_source(f"dicom:{root}?windw=lung")
    with pytest.raises(SourceError, match="no DICOM files in class subfolders"):
        (tmp_path / "empty" / "a").mkdir(parents=True)
        open_source(f"dicom:{tmp_path / 'empty'}")


def test_header_cache_follows_file_changes(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import probe.sources._stat_cache as stat_cache

    root = write_dicom_folder(tmp_path / "ct", per_class=2)
    monkeypatch.setattr(stat_cache.time, "time_ns", lambda: 10**20)  # every file counts as old: cached
    assert open_source(f"dicom:{root}").groups == ["b0", "b0", "m0", "m0"]
    assert list((tmp_path / "cache" / "dicom_headers").glob("*.json"))
    write_dicom(root / "benign" / "benign_01.dcm", np.zeros((2, 2), np.uint16), patient="new")
    assert open_source(f"dicom:{root}").groups == ["b0", "new", "m0", "m0"]


def test_frames_all_gives_one_row_per_frame_in_one_group(tmp_path: Path) -> None:
    write_dicom(tmp_path / "d" / "a" / "vol.dcm", np.arange(3 * 4).reshape(3, 2, 2), patient=None)
    write_dicom(tmp_path / "d" / "b" / "one.dcm", np.arange(4).reshape(2, 2), patient="")
    src = open_source(f"dicom:{tmp_path / 'd'}?frames=all")
    assert src.ids == ["a/vol.dcm#0", "a/vol.dcm#1", "a/vol.dcm#2", "b/one.dcm"]
    assert src.groups == ["file:a/vol.dcm"] * 3 + ["file:b/one.dcm"]  # no PatientID: the file is the group
    assert_allclose(_grey(src.load_image(2)), np.array([[0, 1], [2, 3]]) / 3.0, atol=1e-7)  # frame 2, min-max
    assert src.subset_digest(np.array([0, 1])) != src.subset_digest(np.array([0, 2]))
    middle = open_source(f"dicom:{tmp_path / 'd'}")
    assert len(middle) == 2 and middle.ids[0] == "a/vol.dcm"


def test_manifests_with_dicom_paths(tmp_path: Path) -> None:
    root = write_dicom_folder(tmp_path / "ct", per_class=4)
    rows = [("benign/benign_00.dcm", "benign", "train", ""), ("benign/benign_01.dcm", "benign", "test", "x9")]
    rows += [
        ("malignant/malignant_00.dcm", "malignant", "train", ""),
        ("malignant/malignant_01.dcm", "malignant", "test", ""),
    ]
    manifest = root / "m.csv"
    with open(manifest, "w", newline="") as f:
        csv.writer(f).writerows([("path", "label", "split", "patient"), *rows])
    src = open_source(f"dicom:{manifest}")
    assert src.groups == ["b0", "x9", "m0", "m0"]  # manifest value first, PatientID where it is empty
    plain = open_source(f"csv:{manifest}")  # a csv: manifest decodes DICOM rows too (file window)
    assert_array_equal(plain.load_image(0), src.load_image(0))
    assert plain.groups == ["", "x9", "", ""]
    windowed = open_source(f"csv:{manifest}?window=40,400")
    assert windowed.spec.endswith("m.csv?window=40,400") and windowed.decode_options()["dicom"]["window"] == "40,400"
    with pytest.raises(ConfigError, match=r"dicom:.*\?frames=all instead of csv:"):
        open_source(f"csv:{manifest}?frames=all")


def test_curve_and_report_on_a_dicom_folder(tmp_path: Path) -> None:
    from cli.main import app

    root = write_dicom_folder(tmp_path / "ct", per_class=12)
    runner = CliRunner()
    results, emb = str(tmp_path / "res"), str(tmp_path / "emb")
    spec = f"dicom:{root}?window=soft_tissue&split=50,25,25&split_seed=3"
    args = ["curve", spec, "--backbone", "timm:test_vit", "--random-weights", "--shots", "1,2,all", "--seeds", "1"]
    res = runner.invoke(app, [*args, "--store-root", emb, "--results", results, "--bootstrap", "50", "--json"])
    assert res.exit_code == 0, res.output
    out = json.loads(res.stdout)
    assert {r["head_name"] for r in out["results"]} == {"knn-k20", "linear", "prototype"}
    assert {r["shots"] for r in out["results"]} == {1, 2, "all"}
    from probe.store import open_store

    store = open_store(out["stores"][0])
    assert store.attrs["source"]["spec"] == f"dicom:{root}?window=soft_tissue&split=0.5,0.25,0.25&split_seed=3"
    assert store.attrs["fingerprint_inputs"]["source"]["decode"]["dicom"]["window"] == "soft_tissue"
    groups, split = np.asarray([str(g) for g in store.groups.tolist()]), np.asarray(store.split)
    assert set(groups) == {f"{c}{i}" for c in "bm" for i in range(6)}
    assert all(np.unique(split[groups == g]).size == 1 for g in set(groups))  # no patient in two splits
    assert set(np.unique(split).tolist()) == {0, 1, 2}
    rep = runner.invoke(app, ["report", results, "--out", str(tmp_path / "rep"), "--json"])
    assert rep.exit_code == 0, rep.output
    html = Path(json.loads(rep.stdout)["html"])
    assert "ct" in html.read_text() and html.stat().st_size > 0
