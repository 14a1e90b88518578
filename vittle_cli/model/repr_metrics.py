"""Representation-shift metrics (METHOD.md §6): matrix-based Jensen-Shannon divergence, paired cosine
distance and a 2-D PCA projection. numpy only, float64 inside.

Normalisation choice: every row of Z is L2-normalised before C = Z^T Z / trace(C) is formed. This is the
explicit-feature form of the representation JSD (Hoyos-Osorio & Sanchez-Giraldo) that the paper uses: with
unit-norm features, C = (1/n) sum z z^T has trace 1 and each sample contributes equally, so a few tokens
with huge activations (common in LLM hidden states) cannot dominate the spectrum. No centering (the
uncentred covariance operator, as in the reference). Entropies use the natural log, so 0 <= JSD <= ln 2.
"""

from __future__ import annotations

import numpy as np

_EPS = 1e-12


def _as_float64(z) -> np.ndarray:
    """Accept numpy arrays and torch tensors (any dtype, any device) as a 2-D float64 array."""
    if hasattr(z, "detach"):
        z = z.detach().to("cpu").double().numpy()
    arr = np.asarray(z, dtype=np.float64)
    if arr.ndim != 2 or arr.shape[0] == 0:
        raise ValueError(f"expected a non-empty (n, d) matrix, got shape {arr.shape}")
    return arr


def l2_normalise_rows(z: np.ndarray) -> np.ndarray:
    """Rows scaled to unit L2 norm (all-zero rows stay zero)."""
    norms = np.linalg.norm(z, axis=1, keepdims=True)
    return z / np.maximum(norms, _EPS)


def _spectrum(x: np.ndarray) -> np.ndarray:
    """Eigenvalues of C = x^T x / trace, computed on the smaller of x^T x (d x d) and x x^T (n x n):
    both share their non-zero eigenvalues, so large hidden sizes cost only n x n work."""
    gram = x @ x.T if x.shape[0] < x.shape[1] else x.T @ x
    gram = (gram + gram.T) / 2.0
    trace = float(np.trace(gram))
    if trace <= 0:
        raise ValueError("cannot compute an entropy of all-zero representations")
    lam = np.linalg.eigvalsh(gram / trace)
    return lam[lam > _EPS]  # tiny / negative eigenvalues are round-off; 0 log 0 = 0


def matrix_entropy(z, normalise: bool = True) -> float:
    """von Neumann (Renyi order-1) entropy H(C) = -sum(lambda log lambda) of C = Z^T Z / trace.

    Args:
        z: (n, d) representations, one row per sample.
        normalise: L2-normalise rows first (see the module docstring).
    """
    x = _as_float64(z)
    if normalise:
        x = l2_normalise_rows(x)
    lam = _spectrum(x)
    return float(-(lam * np.log(lam)).sum())


def matrix_jsd(zp, zq, normalise: bool = True) -> float:
    """Matrix-based Jensen-Shannon divergence H((C_P + C_Q)/2) - (H(C_P) + H(C_Q))/2.

    The two sets may have different sizes. The mixture is formed without building d x d matrices:
    (C_P + C_Q)/2 = Y^T Y with Y = [Z_P / sqrt(2 tr_P); Z_Q / sqrt(2 tr_Q)].

    Returns:
        JSD in nats, >= 0 (clipped at 0 against round-off), 0 for identical sets, symmetric.
    """
    p, q = _as_float64(zp), _as_float64(zq)
    if p.shape[1] != q.shape[1]:
        raise ValueError(f"feature sizes differ: {p.shape[1]} vs {q.shape[1]}")
    if normalise:
        p, q = l2_normalise_rows(p), l2_normalise_rows(q)
    tp, tq = float((p * p).sum()), float((q * q).sum())
    if tp <= 0 or tq <= 0:
        raise ValueError("cannot compute an entropy of all-zero representations")
    mix = np.concatenate([p / np.sqrt(2 * tp), q / np.sqrt(2 * tq)], axis=0)
    h = [-(lam * np.log(lam)).sum() for lam in (_spectrum(mix), _spectrum(p), _spectrum(q))]
    return float(max(h[0] - (h[1] + h[2]) / 2.0, 0.0))


def cosine_distances(clean, shifted) -> np.ndarray:
    """Per-sample 1 - cos(clean_i, shifted_i); rows are paired by sample (same question)."""
    a, b = _as_float64(clean), _as_float64(shifted)
    if a.shape != b.shape:
        raise ValueError(f"paired sets must have the same shape: {a.shape} vs {b.shape}")
    cos = (l2_normalise_rows(a) * l2_normalise_rows(b)).sum(axis=1)
    return 1.0 - np.clip(cos, -1.0, 1.0)


def mean_cosine_distance(clean, shifted) -> float:
    """Mean clean-vs-shifted cosine distance over paired samples."""
    return float(cosine_distances(clean, shifted).mean())


def pca_2d(*sets) -> list[np.ndarray]:
    """Project several (n_i, d) sets onto the first two principal components of their union.

    Fitting on the union puts clean and shifted points in one shared frame (Fig. 1b). Returns one (n_i, 2)
    array per set; with fewer than two usable components the missing axis is zero.
    """
    arrays = [_as_float64(s) for s in sets]
    union = np.concatenate(arrays, axis=0)
    centred = union - union.mean(axis=0, keepdims=True)
    # principal axes = right singular vectors of the centred data (what sklearn's PCA computes)
    _, _, vt = np.linalg.svd(centred, full_matrices=False)
    proj = centred @ vt[:2].T
    if proj.shape[1] < 2:
        proj = np.pad(proj, ((0, 0), (0, 2 - proj.shape[1])))
    splits = np.cumsum([a.shape[0] for a in arrays])[:-1]
    return np.split(proj, splits, axis=0)
