"""Paired cosine distance and the shared PCA frame."""

from __future__ import annotations

import numpy as np
import pytest

from vittle_cli.model.repr_metrics import cosine_distances, mean_cosine_distance, pca_2d


def test_cosine_distance_paired_by_sample():
    a = np.array([[1.0, 0.0], [0.0, 2.0], [1.0, 1.0]])
    b = np.array([[3.0, 0.0], [2.0, 0.0], [-1.0, -1.0]])  # same dir, orthogonal, opposite
    np.testing.assert_allclose(cosine_distances(a, b), [0.0, 1.0, 2.0], atol=1e-12)
    assert mean_cosine_distance(a, b) == pytest.approx(1.0)
    # pairing matters: permuting one side changes the answer
    assert mean_cosine_distance(a, b[[0, 2, 1]]) == pytest.approx(2 / 3)


def test_cosine_distance_grows_with_noise():
    rng = np.random.default_rng(0)
    z = rng.normal(size=(50, 8))
    noise = rng.normal(size=z.shape)
    vals = [mean_cosine_distance(z, z + s * noise) for s in (0.0, 0.1, 0.5, 2.0)]
    assert vals[0] == pytest.approx(0.0, abs=1e-12)
    assert all(b > a for a, b in zip(vals, vals[1:], strict=False))


def test_cosine_distance_shape_mismatch():
    with pytest.raises(ValueError, match="same shape"):
        cosine_distances(np.ones((2, 3)), np.ones((3, 3)))


def test_pca_shared_frame_separates_shifted_set():
    rng = np.random.default_rng(0)
    clean = rng.normal(size=(40, 10))
    shifted = clean + np.r_[8.0, np.zeros(9)]  # moved far along one axis
    pc, ps = pca_2d(clean, shifted)
    assert pc.shape == (40, 2) and ps.shape == (40, 2)
    # the first component is the shift direction: the two sets sit on opposite sides
    assert np.sign(pc[:, 0].mean()) != np.sign(ps[:, 0].mean())
    assert abs(pc[:, 0].mean() - ps[:, 0].mean()) > 6.0


def test_pca_degenerate_single_feature():
    (p,) = pca_2d(np.arange(5.0).reshape(5, 1))
    assert p.shape == (5, 2) and np.all(p[:, 1] == 0)


def test_pca_matches_sklearn_up_to_sign():
    from sklearn.decomposition import PCA

    rng = np.random.default_rng(4)
    a, b = rng.normal(size=(30, 6)) * [5, 3, 1, 1, 1, 1], rng.normal(size=(20, 6)) + 1
    pa, pb = pca_2d(a, b)
    ref = PCA(n_components=2).fit_transform(np.concatenate([a, b]))
    got = np.concatenate([pa, pb])
    for k in range(2):
        sign = np.sign(got[:, k] @ ref[:, k])
        np.testing.assert_allclose(sign * got[:, k], ref[:, k], atol=1e-9)
