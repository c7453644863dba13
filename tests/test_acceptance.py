"""Long acceptance checks on real data (``pytest -m slow``; minutes on a 2-core CPU)."""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import pytest

from probe.extraction import ExtractConfig, extract
from probe.sources import SourceRequest
from probe.store import open_store


@pytest.mark.slow
def test_full_bloodmnist_extraction_is_complete_finite_and_idempotent(medmnist_root: Path, tmp_path: Path) -> None:
    cfg = ExtractConfig(store_root=str(tmp_path), progress=False)
    res = extract(
        SourceRequest("medmnist:bloodmnist", data_root=str(medmnist_root)), backbone="efficientnet_lite0", config=cfg
    )
    assert res.rows == 17092 and res.complete and res.poolings == {"gap": 1280}
    feats = open_store(res.store).features("gap")
    assert feats.shape == (17092, 1280) and np.isfinite(feats).all()
    again = extract(
        SourceRequest("medmnist:bloodmnist", data_root=str(medmnist_root)), backbone="efficientnet_lite0", config=cfg
    )
    assert again.noop and again.store == res.store


REPO = Path(__file__).resolve().parents[1]
# the acceptance probes reuse the repository's stores (extraction is a no-op when they are complete)
STORES = os.environ.get("PROBE_ACCEPTANCE_STORES", str(REPO / "embeddings"))


def _store(name: str, root: Path) -> str:
    cfg = ExtractConfig(store_root=STORES, progress=False)
    return extract(
        SourceRequest(f"medmnist:{name}", data_root=str(root)), backbone="efficientnet_lite0", config=cfg
    ).store


def _rows(args: list[str]) -> list[dict]:
    from typer.testing import CliRunner

    from cli.main import app

    res = CliRunner().invoke(app, [*args, "--no-save", "--json"])
    assert res.exit_code == 0, res.output
    return json.loads(res.stdout)["results"]


@pytest.mark.slow
def test_knn_k11_equals_sklearn_on_bloodmnist(medmnist_root: Path) -> None:
    from sklearn.neighbors import KNeighborsClassifier

    from probe.evaluate.data import load_eval_data
    from probe.heads.knn import KNNProbe

    store = _store("bloodmnist", medmnist_root)
    data = load_eval_data(open_store(store))
    for vote, weights in (("temperature", lambda d: np.exp((1 - d) / 0.07)), ("uniform", "uniform")):
        rows = _rows(["knn", "medmnist:bloodmnist", "--store", store, "--k", "11", "--vote", vote, "--bootstrap", "0"])
        acc = next(r["value"] for r in rows if r["metric"] == "accuracy")
        sk = KNeighborsClassifier(n_neighbors=11, metric="cosine", algorithm="brute", weights=weights)
        sk_pred = sk.fit(data.train.X, data.train.y).predict(data.test.X)
        ours = KNNProbe(k=11, vote=vote).fit(data.train.X, data.train.y).predict(data.test.X)
        np.testing.assert_array_equal(ours, sk_pred)  # to the sample
        assert acc == pytest.approx(float((sk_pred == data.test.y).mean()), abs=1e-12)


@pytest.mark.slow
@pytest.mark.parametrize(("name", "majority", "n_classes"), [("breastmnist", 0.7308, 2), ("retinamnist", 0.4350, 5)])
def test_linear_does_not_collapse(medmnist_root: Path, name: str, majority: float, n_classes: int) -> None:
    store = _store(name, medmnist_root)
    rows = {r["metric"]: r for r in _rows(["linear", f"medmnist:{name}", "--store", store])}
    assert rows["accuracy"]["value"] > majority + 0.02
    bal = rows["balanced_accuracy"]
    assert bal["ci_low"] < bal["value"] < bal["ci_high"] and bal["ci_low"] > 1 / n_classes
