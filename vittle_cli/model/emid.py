"""EMID, the paper's information-theoretic robustness metric, and its JSD upper bound (pure math, no I/O).

Follows the authors' published pipeline (github.com/deeplearning-wisc/mllmshift-emi, main.py, ICML 2025):

* CLUB (Cheng et al. 2020) estimates I(X; Y) with a Gaussian q(y|x): two MLPs x -> hidden/2 -> y for the
  mean and for the log-variance (the latter ending in tanh, so the variance stays in [1/e, e]); the
  published estimator uses x_dim = y_dim = 768 and hidden_size = 500. The estimate is
  mean_i [log q(y_i|x_i) - mean_j log q(y_j|x_i)] without the log-variance and constant terms (they cancel
  between the two parts). The negative part is computed in closed form per dimension
  (mean_j (y_j - mu_i)^2 = mean(y^2) - 2 mu_i mean(y) + mu_i^2), so it costs O(n d), not O(n^2 d).
  q is fitted by maximising log q(y|x) (the `learning_loss` of the reference).
* EMI = I(x; model answer) - I(x; reference answer), x = (image vector + query vector) / 2.
* EMID = EMI(clean) - EMI(shifted): positive when the model's answers lose information about the input
  under the shift (less robust), 0 when nothing changes.
* The scale-adjusted bound sqrt(JSD_v) + sqrt(JSD_t) + JSD_y(clean)^(1/4) + JSD_y(shifted)^(1/4), each JSD
  the matrix-based one of vittle_cli.model.repr_metrics (von Neumann entropy of the uncentred covariance).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from torch import nn

from vittle_cli.model.repr_metrics import matrix_jsd

PUBLISHED_FEATURE_DIM = 768
PUBLISHED_HIDDEN_SIZE = 500


class ClubEstimator(nn.Module):
    """CLUB with a Gaussian q(y|x); parameter names match the published checkpoint (p_mu.*, p_logvar.*)."""

    def __init__(self, x_dim: int = PUBLISHED_FEATURE_DIM, y_dim: int = PUBLISHED_FEATURE_DIM,
                 hidden_size: int = PUBLISHED_HIDDEN_SIZE):  # fmt: skip
        super().__init__()
        half = hidden_size // 2
        self.p_mu = nn.Sequential(nn.Linear(x_dim, half), nn.Tanh(), nn.Linear(half, y_dim))
        self.p_logvar = nn.Sequential(nn.Linear(x_dim, half), nn.Tanh(), nn.Linear(half, y_dim), nn.Tanh())

    def log_likelihood(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        """Mean over samples of log q(y|x) up to constants (x2): the quantity training maximises."""
        mu, logvar = self.p_mu(x), self.p_logvar(x)
        return (-((mu - y) ** 2) / logvar.exp() - logvar).sum(dim=1).mean()

    def forward(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        """The CLUB estimate of I(X; Y) in nats on paired samples (n, x_dim), (n, y_dim)."""
        mu, logvar = self.p_mu(x), self.p_logvar(x)
        inv_var = (-logvar).exp()
        positive = -((mu - y) ** 2) / 2.0 * inv_var
        y_mean, y_sq_mean = y.mean(dim=0, keepdim=True), (y**2).mean(dim=0, keepdim=True)
        negative = -(y_sq_mean - 2 * mu * y_mean + mu**2) / 2.0 * inv_var
        return (positive.sum(dim=-1) - negative.sum(dim=-1)).mean()


def train_club(x, y, *, hidden_size: int = PUBLISHED_HIDDEN_SIZE, steps: int = 500, lr: float = 1e-3,
               batch_size: int = 256, seed: int = 0, device: str = "cpu") -> ClubEstimator:  # fmt: skip
    """Fit q(y|x) of a new CLUB estimator on paired samples (Adam, seeded minibatches) on `device`; the
    fitted estimator is returned on the CPU (estimates and the bootstrap run there)."""
    x, y = _tensor(x).to(device), _tensor(y).to(device)
    gen = torch.Generator().manual_seed(seed)
    torch.manual_seed(seed)  # the layers' initialisation
    club = ClubEstimator(x.shape[1], y.shape[1], hidden_size).to(device)
    opt = torch.optim.Adam(club.parameters(), lr=lr)
    n = x.shape[0]
    for _ in range(steps):
        idx = torch.randperm(n, generator=gen)[: min(batch_size, n)].to(device)
        loss = -club.log_likelihood(x[idx], y[idx])
        opt.zero_grad()
        loss.backward()
        opt.step()
    return club.cpu().eval()


def _tensor(a) -> torch.Tensor:
    if isinstance(a, torch.Tensor):
        return a.detach().to("cpu", torch.float32)
    return torch.as_tensor(np.asarray(a), dtype=torch.float32)


def club_mi(club: ClubEstimator, x, y) -> float:
    """The CLUB estimate of I(x; y) in nats."""
    with torch.no_grad():
        return float(club(_tensor(x), _tensor(y)))


@dataclass(frozen=True)
class Embedded:
    """One variant's L2-normalised embeddings, rows paired by question: image, query, model, reference."""

    image: np.ndarray
    query: np.ndarray
    model: np.ndarray
    reference: np.ndarray

    @property
    def inputs(self) -> np.ndarray:
        """x of the reference pipeline: the mean of the image and query vectors (not renormalised)."""
        return (self.image + self.query) / 2.0

    def take(self, idx: np.ndarray) -> Embedded:
        return Embedded(self.image[idx], self.query[idx], self.model[idx], self.reference[idx])


def emi(club: ClubEstimator, e: Embedded) -> dict:
    """{"emi", "mi_model", "mi_reference"}: EMI = I(x; model answer) - I(x; reference answer)."""
    mi_model, mi_ref = club_mi(club, e.inputs, e.model), club_mi(club, e.inputs, e.reference)
    return {"emi": mi_model - mi_ref, "mi_model": mi_model, "mi_reference": mi_ref}


def emid(club: ClubEstimator, clean: Embedded, shifted: Embedded) -> float:
    """EMID = EMI(clean) - EMI(shifted); positive = the shift costs effective information."""
    return emi(club, clean)["emi"] - emi(club, shifted)["emi"]


def emid_upper_bound(clean: Embedded, shifted: Embedded) -> dict:
    """The JSD terms of the bound and their scale-adjusted sum (the reference's default form)."""
    terms = {
        "jsd_image": matrix_jsd(clean.image, shifted.image),
        "jsd_query": matrix_jsd(clean.query, shifted.query),
        "jsd_answers_clean": matrix_jsd(clean.model, clean.reference),
        "jsd_answers_shifted": matrix_jsd(shifted.model, shifted.reference),
    }
    terms["bound"] = (
        terms["jsd_image"] ** 0.5
        + terms["jsd_query"] ** 0.5
        + terms["jsd_answers_clean"] ** 0.25
        + terms["jsd_answers_shifted"] ** 0.25
    )
    return terms


def bootstrap_emid_draws(club: ClubEstimator, clean: Embedded, shifted: dict[str, Embedded], *,
                         resamples: int = 200, seed: int = 0) -> dict[str, np.ndarray]:  # fmt: skip
    """EMID of every shifted variant on `resamples` question resamples, one array per variant.

    Every draw takes the same questions for the clean set and for all variants, so that a group's mean can
    be bootstrapped from the same draws (`percentile_interval` of the mean over the group's arrays).
    """
    n = clean.image.shape[0]
    for name, e in shifted.items():
        if e.image.shape[0] != n:
            raise ValueError(f"variant {name!r} pairs {e.image.shape[0]} questions, the clean set {n}")
    rng = np.random.default_rng(seed)
    # A resample is a weight vector w (counts / n) over the questions; q(y|x) depends on x alone, so the
    # networks run once per set and every CLUB term is a weighted mean (see _weighted_club): all the
    # resamples are a few matrix products instead of resamples x variants network passes.
    weights = np.stack([np.bincount(rng.integers(0, n, size=n), minlength=n) / n for _ in range(resamples)])
    clean_emi = _weighted_emi(club, clean, weights)
    return {name: clean_emi - _weighted_emi(club, e, weights) for name, e in shifted.items()}


def _weighted_emi(club: ClubEstimator, e: Embedded, weights: np.ndarray) -> np.ndarray:
    """EMI of `e` under each row of `weights` (resample weights summing to 1), float64."""
    with torch.no_grad():
        x = _tensor(e.inputs)
        mu, logvar = club.p_mu(x).double().numpy(), club.p_logvar(x).double().numpy()
    inv_var = np.exp(-logvar)
    return _weighted_club(mu, inv_var, e.model, weights) - _weighted_club(mu, inv_var, e.reference, weights)


def _weighted_club(mu: np.ndarray, inv_var: np.ndarray, y, weights: np.ndarray) -> np.ndarray:
    """ClubEstimator.forward with sample weights w: sum_i w_i [positive_i - negative_i], where
    negative_i = -1/2 sum_d inv_var_id (E_w[y^2]_d - 2 mu_id E_w[y]_d + mu_id^2) and E_w is the weighted
    mean over the same resample (for w = 1/n this is the module's formula exactly)."""
    y = np.asarray(y, dtype=np.float64)
    positive = (-((mu - y) ** 2) / 2.0 * inv_var).sum(axis=1)  # (n,)
    y_mean, y_sq_mean = weights @ y, weights @ (y**2)  # (R, d)
    mixed = (
        ((weights @ inv_var) * y_sq_mean).sum(axis=1)
        - 2 * ((weights @ (inv_var * mu)) * y_mean).sum(axis=1)
        + weights @ (inv_var * mu**2).sum(axis=1)
    )
    return weights @ positive + mixed / 2.0


def percentile_interval(draws, level: float = 0.95) -> tuple[float, float]:
    """The central `level` percentile interval of bootstrap draws."""
    tail = (1.0 - level) / 2.0 * 100.0
    lo, hi = np.percentile(np.asarray(draws, dtype=np.float64), [tail, 100.0 - tail])
    return float(lo), float(hi)
