"""On CUDA: the CLUB estimator of EMID fits on the GPU (`--device`) and comes back on the CPU, where its
estimate matches a CPU fit of the same seed (float rounding apart)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from vittle_cli.model.emid import club_mi, train_club

pytestmark = [pytest.mark.gpu, pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")]


def test_club_fits_on_cuda_like_on_cpu():
    rng = np.random.default_rng(0)
    x = rng.normal(size=(2000, 8)).astype(np.float32)
    y = (0.8 * x + 0.6 * rng.normal(size=(2000, 8))).astype(np.float32)
    on_gpu = train_club(x, y, hidden_size=64, steps=300, lr=5e-3, seed=0, device="cuda")
    on_cpu = train_club(x, y, hidden_size=64, steps=300, lr=5e-3, seed=0)
    assert next(on_gpu.parameters()).device.type == "cpu"
    assert club_mi(on_gpu, x, y) == pytest.approx(club_mi(on_cpu, x, y), rel=0.05)
