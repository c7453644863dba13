"""Seeded draws: determinism, pairing across row orders, nesting, caps, groups and fractions."""

from __future__ import annotations

import numpy as np
import pytest

from probe.errors import ProtocolError
from probe.evaluate.sampling import CapWarning, draw_fraction, draw_queries, draw_shot_levels, draw_shots

rng = np.random.default_rng(0)
LABELS = np.repeat(np.arange(3), [30, 20, 5])
IDS = np.array([f"img{i:03d}" for i in range(LABELS.size)])


def _ids(draw_rows: np.ndarray, ids: np.ndarray = IDS) -> set[str]:
    return set(ids[draw_rows].tolist())


def test_same_seed_same_ids_and_nested_levels() -> None:
    a = draw_shots(IDS, LABELS, shots=4, seed=3, n_classes=3)
    b = draw_shots(IDS, LABELS, shots=4, seed=3, n_classes=3)
    np.testing.assert_array_equal(a.rows, b.rows)
    assert a.digest == b.digest
    assert np.bincount(LABELS[a.rows]).tolist() == [4, 4, 4]
    c = draw_shots(IDS, LABELS, shots=4, seed=4, n_classes=3)
    assert _ids(a.rows) != _ids(c.rows)
    two, four, all_ = draw_shot_levels(IDS, LABELS, shots=[2, 4, "all"], seed=3, n_classes=3)
    assert _ids(two.rows) <= _ids(four.rows)  # nested within a seed
    assert four.digest == a.digest and all_.rows.size == IDS.size


def test_draw_ignores_row_order() -> None:
    """A store with the same samples in another order gets the same sample ids (pairing)."""
    perm = rng.permutation(IDS.size)
    a = draw_shots(IDS, LABELS, shots=3, seed=7, n_classes=3)
    b = draw_shots(IDS[perm], LABELS[perm], shots=3, seed=7, n_classes=3)
    assert _ids(a.rows) == _ids(b.rows, IDS[perm])
    assert a.digest == b.digest


def test_cap_warns_and_records_or_strict_raises() -> None:
    with pytest.warns(CapWarning, match="class 2: 5"):
        d = draw_shots(IDS, LABELS, shots=8, seed=0, n_classes=3)
    assert d.caps == {2: 5} and np.bincount(LABELS[d.rows]).tolist() == [8, 8, 5]
    with pytest.raises(ProtocolError, match="8 shots asked.*class 2: 5.*lower the shots"):
        draw_shots(IDS, LABELS, shots=8, seed=0, n_classes=3, strict=True)


@pytest.mark.parametrize("bad", [0, -1, "many", 2.5, True])
def test_bad_shots(bad: object) -> None:
    with pytest.raises(ProtocolError, match="positive integer or 'all'"):
        draw_shots(IDS, LABELS, shots=bad, seed=0, n_classes=3)  # type: ignore[arg-type]


def test_groups_spread_over_patients() -> None:
    groups = np.array([f"p{i % 10}" for i in range(LABELS.size)])  # 10 patients, several images each
    with pytest.warns(CapWarning):
        d = draw_shots(IDS, LABELS, groups, shots=6, seed=1, n_classes=3)
    for c in (0, 1):
        picked = d.rows[LABELS[d.rows] == c]
        assert len(set(groups[picked])) == 6  # six shots from six distinct patients
    with pytest.warns(CapWarning):
        assert d.digest == draw_shots(IDS, LABELS, groups, shots=6, seed=1, n_classes=3).digest


def test_fractions_stratified_and_queries() -> None:
    d = draw_fraction(IDS, LABELS, fraction=0.1, seed=0, n_classes=3)
    assert np.bincount(LABELS[d.rows]).tolist() == [3, 2, 1]
    assert draw_fraction(IDS, LABELS, fraction=1.0, seed=0, n_classes=3).rows.size == IDS.size
    with pytest.raises(ProtocolError, match=r"fraction 0 must lie in \(0, 1\]"):
        draw_fraction(IDS, LABELS, fraction=0, seed=0, n_classes=3)
    q = draw_queries(IDS, LABELS, per_class=2, seed=5, n_classes=3)
    assert np.bincount(LABELS[q]).tolist() == [2, 2, 2]
    assert draw_queries(IDS, LABELS, per_class=None, seed=5, n_classes=3).size == IDS.size


def test_rows_without_a_group_are_each_their_own_patient() -> None:
    from probe.evaluate.sampling import class_order

    ids = np.array([f"s{i}" for i in range(6)])
    labels = np.zeros(6, dtype=np.int64)
    groups = np.array(["", "", "", "", "p1", "p1"])
    first = class_order(ids, labels, groups, cls=0, seed=3)[:5]
    assert len({groups[i] or ids[i] for i in first}) == 5  # the five distinct "patients" come first
