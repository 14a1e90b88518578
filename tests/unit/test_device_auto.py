"""`--device auto` / `--dtype auto`: the fastest the hardware allows, and clear errors otherwise."""

from __future__ import annotations

import pytest
import torch

from vittle_cli.errors import UsageError
from vittle_cli.model.device import resolve_device_dtype


def test_auto_on_a_machine_without_cuda(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    assert resolve_device_dtype() == ("cpu", "float32")
    assert resolve_device_dtype("auto", "bfloat16") == ("cpu", "bfloat16")
    with pytest.raises(UsageError, match="no CUDA device is visible"):
        resolve_device_dtype("cuda:1", "auto")
    with pytest.raises(UsageError, match="--dtype must be one of"):
        resolve_device_dtype("cpu", "fp8")


@pytest.mark.parametrize(("bf16", "expected"), [(True, "bfloat16"), (False, "float16")])
def test_auto_on_a_cuda_machine(monkeypatch, bf16, expected):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda *a, **k: bf16)
    assert resolve_device_dtype() == ("cuda", expected)
    assert resolve_device_dtype("cuda:1", "auto") == ("cuda:1", expected)
    assert resolve_device_dtype("cpu", "auto") == ("cpu", "float32")


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_auto_picks_the_gpu_for_real():
    device, dtype = resolve_device_dtype()
    assert device == "cuda" and dtype in ("bfloat16", "float16")
