"""Shared pieces of the CUDA tests (imported by them; not a conftest, so its name cannot clash) (`make gpu-check` runs them; skipped without a GPU).

Only torch + transformers (+ peft, accelerate) are assumed: nothing here imports datasets, deepspeed or
bitsandbytes, which a bare GPU machine lacks; the tests that need one skip with a reason naming the wheel.
"""

from __future__ import annotations

import os

import numpy as np
import pytest
import torch
from PIL import Image

# VITTLE_GPU_TESTS_DEVICE=cpu runs the core tests' logic on the CPU (slow, for debugging them without a GPU).
DEVICE = os.environ.get("VITTLE_GPU_TESTS_DEVICE", "cuda")
GPU_ONLY = [
    pytest.mark.gpu,
    pytest.mark.skipif(DEVICE == "cuda" and not torch.cuda.is_available(), reason="needs a CUDA GPU"),
]


def needs(module: str, wheel: str):
    """pytest.importorskip with a reason that says which wheel to pass to `make gpu-check`."""
    return pytest.importorskip(
        module, reason=f"{module} is not installed: pass its wheel (GPU_CHECK_WHEELS=dir with {wheel}-*.whl)"
    )


def train_batch(processor, n: int = 4) -> dict:
    """n image + question + answer samples on DEVICE, labels on the answer tokens."""
    rng = np.random.RandomState(1)
    images = [Image.fromarray(rng.randint(0, 255, (48, 48, 3), dtype=np.uint8)) for _ in range(n)]
    msgs = [
        {"role": "user", "content": [{"type": "image"}, {"type": "text", "text": "Is there a red circle?"}]},
        {"role": "assistant", "content": [{"type": "text", "text": "Yes, there is a red circle."}]},
    ]
    batch = processor(images=images, text=[processor.apply_chat_template(msgs)] * n, return_tensors="pt")
    labels = torch.full_like(batch["input_ids"], -100)
    labels[:, -8:] = batch["input_ids"][:, -8:]
    batch["labels"] = labels
    return {k: v.to(DEVICE) for k, v in batch.items()}
