"""Matrix-based JSD (METHOD.md §6) against a direct float64 numpy reference, plus its properties."""

from __future__ import annotations

import numpy as np
import pytest

from vittle_cli.model.repr_metrics import matrix_entropy, matrix_jsd


def _reference_entropy(z: np.ndarray) -> float:
    """Textbook form: rows L2-normalised, C = Z^T Z / trace (d x d), H = -sum lam log lam."""
    z = z / np.linalg.norm(z, axis=1, keepdims=True)
    c = z.T @ z
    c = c / np.trace(c)
    lam = np.linalg.eigvalsh(c)
    lam = lam[lam > 1e-12]
    return float(-(lam * np.log(lam)).sum())


def _reference_jsd(p: np.ndarray, q: np.ndarray) -> float:
    def cov(z):
        z = z / np.linalg.norm(z, axis=1, keepdims=True)
        c = z.T @ z
        return c / np.trace(c)

    def ent(c):
        lam = np.linalg.eigvalsh(c)
        lam = lam[lam > 1e-12]
        return float(-(lam * np.log(lam)).sum())

    cp, cq = cov(p), cov(q)
    return ent((cp + cq) / 2) - (ent(cp) + ent(cq)) / 2


@pytest.fixture()
def feats():
    rng = np.random.default_rng(0)
    # anisotropic features so that perturbations change the spectrum visibly
    return rng.normal(size=(64, 16)) * np.linspace(3.0, 0.2, 16)


@pytest.mark.parametrize("n,d", [(40, 16), (10, 32)])  # d x d path and n x n (Gram) path
def test_matches_numpy_reference(n, d):
    rng = np.random.default_rng(n + d)
    p, q = rng.normal(size=(n, d)), rng.normal(size=(n + 5, d)) + 0.5
    assert matrix_jsd(p, q) == pytest.approx(_reference_jsd(p, q), abs=1e-10)
    assert matrix_entropy(p) == pytest.approx(_reference_entropy(p), abs=1e-10)


def test_zero_for_identical_sets(feats):
    assert matrix_jsd(feats, feats.copy()) == pytest.approx(0.0, abs=1e-10)


def test_symmetric_and_non_negative(feats):
    rng = np.random.default_rng(1)
    for scale in (0.1, 1.0, 5.0):
        q = feats + scale * rng.normal(size=feats.shape)
        a, b = matrix_jsd(feats, q), matrix_jsd(q, feats)
        assert a == pytest.approx(b, abs=1e-12)
        assert a > 0


def test_bounded_by_ln2():
    # two sets on orthogonal subspaces: the maximum, ln 2
    p = np.concatenate([np.random.default_rng(1).normal(size=(30, 4)), np.zeros((30, 4))], axis=1)
    q = np.concatenate([np.zeros((30, 4)), np.random.default_rng(2).normal(size=(30, 4))], axis=1)
    assert matrix_jsd(p, q) == pytest.approx(np.log(2), abs=1e-9)


def test_grows_with_noise_scale(feats):
    rng = np.random.default_rng(2)
    noise = rng.normal(size=feats.shape)
    values = [matrix_jsd(feats, feats + s * noise) for s in (0.05, 0.3, 1.0, 3.0)]
    assert all(b > a for a, b in zip(values, values[1:], strict=False)), values


def test_grows_with_rotation_angle(feats):
    def rotate(z, theta):
        r = np.eye(z.shape[1])
        c, s = np.cos(theta), np.sin(theta)
        r[0, 0], r[0, 1], r[1, 0], r[1, 1] = c, -s, s, c  # plane of the two largest-variance axes
        return z @ r.T

    values = [matrix_jsd(feats, rotate(feats, t)) for t in (0.1, 0.4, 0.8, 1.5)]
    assert all(b > a for a, b in zip(values, values[1:], strict=False)), values


def test_invariant_to_row_scaling(feats):
    # the L2-normalisation choice: per-sample scale does not move the JSD
    scales = np.random.default_rng(3).uniform(0.1, 10, size=(feats.shape[0], 1))
    q = feats + 0.5
    assert matrix_jsd(feats * scales, q) == pytest.approx(matrix_jsd(feats, q), abs=1e-10)


def test_accepts_torch_tensors(feats):
    torch = pytest.importorskip("torch")
    q = feats + 1.0
    got = matrix_jsd(torch.tensor(feats, dtype=torch.float32), torch.tensor(q, dtype=torch.float32))
    assert got == pytest.approx(_reference_jsd(feats, q), abs=1e-5)


def test_rejects_mismatched_dims():
    with pytest.raises(ValueError, match="feature sizes"):
        matrix_jsd(np.ones((3, 4)), np.ones((3, 5)))
