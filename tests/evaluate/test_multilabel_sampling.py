"""Multi-label n-shot draws: n positives of every label, union of seeded prefixes, nested, capped."""

from __future__ import annotations

import warnings

import numpy as np
import pytest

from probe.errors import ProtocolError
from probe.evaluate.sampling import (
    CapWarning,
    draw_fraction,
    draw_label_levels,
    draw_queries,
    draw_shot_levels,
    label_order,
)
from tests.multilabel_synth import make_multilabel

_, Y, _ = make_multilabel(400, uncertain=0.1, seed=4)
IDS = np.array([f"img{i:04d}" for i in range(400)])


def test_n_positives_per_label_as_a_union_of_seeded_prefixes() -> None:
    draws = draw_shot_levels(IDS, Y, shots=[1, 4, 16], seed=3, n_classes=4)
    for d in draws:
        n = int(d.shots)  # type: ignore[arg-type]
        picked = Y[d.rows]
        assert ((picked == 1).sum(axis=0) >= n).all()  # at least n positives of every label
        union = np.unique(np.concatenate([label_order(IDS, Y, None, label=j, seed=3)[:n] for j in range(4)]))
        assert np.array_equal(d.rows, union) and d.rows.size <= 4 * n
        assert not d.caps
    assert set(draws[0].rows) <= set(draws[1].rows) <= set(draws[2].rows)  # nested across shot levels
    # ignored entries never count as positives: each label's order holds exactly its positives
    for j in range(4):
        order = label_order(IDS, Y, None, label=j, seed=3)
        assert np.array_equal(np.sort(order), np.flatnonzero(Y[:, j] == 1))


def test_draws_depend_on_ids_and_seed_not_row_order() -> None:
    perm = np.random.default_rng(0).permutation(400)
    a = draw_label_levels(IDS, Y, shots=[4], seed=1)[0]
    b = draw_label_levels(IDS[perm], Y[perm], shots=[4], seed=1)[0]
    assert set(IDS[a.rows]) == set(IDS[perm][b.rows]) and a.digest == b.digest
    assert draw_label_levels(IDS, Y, shots=[4], seed=2)[0].digest != a.digest


def test_caps_warn_or_raise() -> None:
    y = Y.copy()
    y[:, 2] = 0
    y[[5, 9], 2] = 1  # label 2 has two positives only
    with pytest.warns(CapWarning, match="label 2: 2"):
        (d,) = draw_label_levels(IDS, y, shots=[4], seed=0)
    assert d.caps == {2: 2} and set(np.flatnonzero(y[:, 2] == 1)) <= set(d.rows)
    with pytest.raises(ProtocolError, match="fewer positive training samples"):
        draw_label_levels(IDS, y, shots=[4], seed=0, strict=True)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        (full,) = draw_label_levels(IDS, y, shots=["all"], seed=0)  # "all" never caps
    assert full.rows.size == 400


def test_groups_spread_a_labels_positives_over_patients() -> None:
    groups = np.array([f"p{i // 10}" for i in range(400)])  # 40 patients of 10 images each
    (d,) = draw_label_levels(IDS, Y, groups, shots=[8], seed=0)
    for j in range(4):
        first = label_order(IDS, Y, groups, label=j, seed=0)[:8]
        assert np.unique(groups[first]).size == min(8, np.unique(groups[Y[:, j] == 1]).size)
        assert set(first) <= set(d.rows)


def test_fractions_and_queries() -> None:
    small = draw_fraction(IDS, Y, fraction=0.1, seed=0, n_classes=4)
    large = draw_fraction(IDS, Y, fraction=0.5, seed=0, n_classes=4)
    assert small.rows.size == 40 and large.rows.size == 200 and set(small.rows) <= set(large.rows)
    q = draw_queries(IDS, Y, per_class=3, seed=0, n_classes=4)
    assert ((Y[q] == 1).sum(axis=0) >= 3).all() and q.size <= 12
