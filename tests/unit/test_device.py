"""model/device.py: one device/dtype vocabulary (both spellings, auto) for every command."""

from __future__ import annotations

import pytest
import torch

from vittle_cli.errors import UsageError
from vittle_cli.model.device import resolve_device, resolve_device_dtype, resolve_dtype_name


@pytest.mark.parametrize(
    "given, expected",
    [("fp32", "float32"), ("float32", "float32"), ("bf16", "bfloat16"), ("bfloat16", "bfloat16"),
     ("fp16", "float16"), ("float16", "float16")],
)  # fmt: skip
def test_both_dtype_spellings(given, expected):
    assert resolve_dtype_name(given) == expected


def test_auto_follows_the_machine():
    cuda = torch.cuda.is_available()
    assert resolve_device("auto") == ("cuda" if cuda else "cpu")
    assert resolve_dtype_name("auto", "cpu") == "float32"
    expected = (
        ("cuda", "bfloat16" if torch.cuda.is_bf16_supported() else "float32") if cuda else ("cpu", "float32")
    )
    assert resolve_device_dtype("auto", "auto") == expected
    assert resolve_device_dtype("cpu", "bf16") == ("cpu", "bfloat16")


def test_bad_values_are_usage_errors():
    with pytest.raises(UsageError, match=r"--dtype int8: expected one of auto, float32 \(fp32\)"):
        resolve_dtype_name("int8")
    with pytest.raises(UsageError, match="--device gpu0: not a torch device"):
        resolve_device("gpu0")
    if not torch.cuda.is_available():
        with pytest.raises(UsageError, match="no CUDA device"):
            resolve_device("cuda")
