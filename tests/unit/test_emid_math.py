"""EMID math (vittle_cli/model/emid.py): CLUB on Gaussians with a known answer, EMID sign and symmetry, the
JSD bound terms, the bootstrap."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from vittle_cli.model.emid import (
    ClubEstimator,
    Embedded,
    bootstrap_emid_draws,
    club_mi,
    emi,
    emid,
    emid_upper_bound,
    percentile_interval,
    train_club,
)
from vittle_cli.model.repr_metrics import matrix_jsd


def _gaussian_pairs(n: int, d: int, rho: float, seed: int):
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(n, d))
    y = rho * x + math.sqrt(1 - rho**2) * rng.normal(size=(n, d))
    return x, y


def _club_of_true_conditional(d: int, rho: float) -> float:
    """CLUB with q = the true p(y|x) equals I + E_x KL(p(y) || p(y|x)) (Cheng et al. 2020, Thm 3.1):
    per dimension I = -1/2 log(1 - rho^2), the gap 1/2 log(1 - rho^2) + (1 + rho^2) / (2 (1 - rho^2)) - 1/2."""
    s2 = 1 - rho**2
    return d * (0.5 * math.log(s2) + (1 + rho**2) / (2 * s2) - 0.5) + d * (-0.5 * math.log(s2))


def test_published_layer_sizes_and_names():
    club = ClubEstimator()
    shapes = {k: tuple(v.shape) for k, v in club.state_dict().items()}
    assert shapes["p_mu.0.weight"] == (250, 768) and shapes["p_mu.2.weight"] == (768, 250)
    assert shapes["p_logvar.0.weight"] == (250, 768) and shapes["p_logvar.2.weight"] == (768, 250)


def test_closed_form_negative_term_matches_all_pairs():
    """The O(n d) negative term equals the reference's all-pairs mean over y_j."""
    torch.manual_seed(0)
    club = ClubEstimator(5, 3, 16)
    x, y = torch.randn(40, 5), torch.randn(40, 3)
    with torch.no_grad():
        mu, logvar = club.p_mu(x), club.p_logvar(x)
        positive = -((mu - y) ** 2) / 2.0 / logvar.exp()
        negative = -((y.unsqueeze(0) - mu.unsqueeze(1)) ** 2).mean(dim=1) / 2.0 / logvar.exp()
        direct = (positive.sum(-1) - negative.sum(-1)).mean()
    assert club_mi(club, x, y) == pytest.approx(float(direct), abs=1e-5)


@pytest.mark.parametrize("rho", [0.0, 0.6])
def test_club_on_gaussians_with_known_mi(rho):
    """Trained on 4000 pairs, the estimate on fresh pairs is within 0.15 nats of CLUB's value for the true
    conditional (which is >= the true MI, 0.89 nats at rho=0.6, d=4), and ~0 for independent x, y."""
    d = 4
    x, y = _gaussian_pairs(4000, d, rho, seed=0)
    club = train_club(x, y, hidden_size=64, steps=1500, lr=5e-3, seed=0)
    xt, yt = _gaussian_pairs(4000, d, rho, seed=1)
    got = club_mi(club, xt, yt)
    want = _club_of_true_conditional(d, rho)
    assert got == pytest.approx(want, abs=0.15)
    if rho:
        assert got >= -d / 2 * math.log(1 - rho**2) - 0.05  # an upper bound of the true MI


def _embedded(rng, n: int, d: int, answer_noise: float) -> Embedded:
    def unit(a):
        return a / np.linalg.norm(a, axis=1, keepdims=True)

    image, query = unit(rng.normal(size=(n, d))), unit(rng.normal(size=(n, d)))
    reference = unit((image + query) / 2 + 0.05 * rng.normal(size=(n, d)))
    model = unit((image + query) / 2 + answer_noise * rng.normal(size=(n, d)))
    return Embedded(image, query, model, reference)


@pytest.fixture(scope="module")
def setting():
    rng = np.random.default_rng(0)
    clean = _embedded(rng, 300, 6, answer_noise=0.05)  # answers as informative as the references
    shifted = _embedded(rng, 300, 6, answer_noise=3.0)  # answers nearly unrelated to the input
    pooled = [clean, shifted]
    x = np.concatenate([e.inputs for e in pooled] * 2)
    y = np.concatenate([e.model for e in pooled] + [e.reference for e in pooled])
    return clean, shifted, train_club(x, y, hidden_size=64, steps=800, lr=5e-3, seed=0)


def test_emid_sign_and_symmetry(setting):
    clean, shifted, club = setting
    assert abs(emi(club, clean)["emi"]) < 0.5 * abs(emi(club, shifted)["emi"])
    forward = emid(club, clean, shifted)
    assert forward > 0.1  # losing information under the shift reads as positive EMID
    assert emid(club, shifted, clean) == pytest.approx(-forward, abs=1e-6)
    assert emid(club, clean, clean) == 0.0


def test_bootstrap_interval_brackets_the_estimate(setting):
    clean, shifted, club = setting
    draws = bootstrap_emid_draws(club, clean, {"s": shifted, "same": clean}, resamples=50, seed=0)
    lo, hi = percentile_interval(draws["s"])
    assert lo < emid(club, clean, shifted) < hi and lo > 0
    assert np.allclose(draws["same"], 0.0)
    again = bootstrap_emid_draws(club, clean, {"s": shifted}, resamples=50, seed=0)
    assert np.array_equal(again["s"], draws["s"])  # seeded


def test_upper_bound_terms(setting):
    clean, shifted, _ = setting
    terms = emid_upper_bound(clean, shifted)
    assert terms["jsd_answers_clean"] == pytest.approx(matrix_jsd(clean.model, clean.reference))
    want = sum(terms[k] ** 0.5 for k in ("jsd_image", "jsd_query")) + sum(
        terms[k] ** 0.25 for k in ("jsd_answers_clean", "jsd_answers_shifted")
    )
    assert terms["bound"] == pytest.approx(want)
    assert terms["jsd_answers_shifted"] > terms["jsd_answers_clean"]
    same = emid_upper_bound(clean, clean)
    assert same["jsd_image"] == pytest.approx(0.0, abs=1e-9) and same["jsd_query"] == pytest.approx(
        0.0, abs=1e-9
    )


def test_bootstrap_draws_equal_emid_on_the_resampled_questions(setting):
    """The fast path (networks run once, then indexing) gives what emid() gives on each resample."""
    clean, shifted, club = setting
    draws = bootstrap_emid_draws(club, clean, {"s": shifted}, resamples=3, seed=7)
    rng = np.random.default_rng(7)
    for r in range(3):
        idx = rng.integers(0, clean.image.shape[0], size=clean.image.shape[0])
        assert draws["s"][r] == pytest.approx(emid(club, clean.take(idx), shifted.take(idx)), abs=1e-4)
