"""A synthetic multi-label set with known signal, shared by the multi-label tests."""

from __future__ import annotations

import numpy as np

LABELS = ("atelectasis", "cardiomegaly", "edema", "effusion")


def make_multilabel(
    n: int = 600, *, d: int = 16, uncertain: float = 0.0, seed: int = 0
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Features and (n, 4) targets: labels 0-2 follow their own linear direction, label 3 needs label 0.

    Label j (j < 3) is positive where ``x @ w_j + noise > 0.6`` (orthogonal unit directions, so each
    label is linearly decodable on its own); label 3 is positive where label 0 is and ``x @ w_3 > 0``
    (correlated with label 0). A fraction ``uncertain`` of entries is set to -1.

    Returns:
        X: (n, d) float32 features.
        Y: (n, 4) int64 targets in {1, 0, -1}.
        truth: (n, 4) int64 targets before the uncertain entries were planted.
    """
    rng = np.random.default_rng(seed)
    X = rng.normal(size=(n, d))
    w = np.linalg.qr(rng.normal(size=(d, 4)))[0].T  # (4, d) orthonormal directions
    z = X @ w.T
    truth = np.zeros((n, 4), dtype=np.int64)
    truth[:, :3] = z[:, :3] + 0.3 * rng.normal(size=(n, 3)) > 0.6
    truth[:, 3] = (truth[:, 0] == 1) & (z[:, 3] > 0)
    Y = truth.copy()
    Y[rng.random((n, 4)) < uncertain] = -1
    return X.astype(np.float32), Y, truth
