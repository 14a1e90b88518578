"""Shared fixtures. Nothing here downloads: the tiny model is built from code into a per-session cache."""

from __future__ import annotations

import os

import pytest


@pytest.fixture(scope="session", autouse=True)
def _vittle_cache(tmp_path_factory):
    """Point the built-in model/data cache at a session temp dir (unless the caller chose one)."""
    os.environ.setdefault("VITTLE_CACHE", str(tmp_path_factory.mktemp("vittle-cache")))
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    yield


@pytest.fixture(scope="session", autouse=True)
def _one_torch_thread():
    """One intra-op thread per test process: the tiny models gain nothing from more, and on a 2-core
    machine (with xdist workers or torchrun children beside) extra OpenMP threads spin against each other
    and make runs several times slower."""
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="session")
def tiny_model_dir():
    """Directory of builtin:tiny-llava (built once per session)."""
    from vittle_cli.model.builtin import resolve_builtin_model

    return resolve_builtin_model("builtin:tiny-llava")


@pytest.fixture(scope="session")
def tiny_vittle_model_dir(tiny_model_dir, tmp_path_factory):
    """The tiny LLaVA + a random (non-trivial) Vittle (F) bottleneck, saved as a full model folder."""
    import torch
    from transformers import AutoProcessor, LlavaForConditionalGeneration

    from vittle_cli.model.attach import attach_bottleneck, detach_bottleneck
    from vittle_cli.model.bottleneck import VittleConfig
    from vittle_cli.model.checkpoint import save_vittle

    out = tmp_path_factory.mktemp("vittle-model")
    model = LlavaForConditionalGeneration.from_pretrained(tiny_model_dir, dtype=torch.float32)
    bn = attach_bottleneck(model, VittleConfig())
    gen = torch.Generator().manual_seed(0)
    with torch.no_grad():
        for p in bn.parameters():
            p.copy_(torch.randn(p.shape, generator=gen) * 0.1)
    save_vittle(model, out)
    detach_bottleneck(model)
    model.save_pretrained(out)
    AutoProcessor.from_pretrained(tiny_model_dir).save_pretrained(out)
    return out


@pytest.fixture()
def tiny_llava(tiny_model_dir):
    """A fresh (model, processor) pair of builtin:tiny-llava in float32 eval mode, loaded from disk."""
    from transformers import AutoProcessor, LlavaForConditionalGeneration

    model = LlavaForConditionalGeneration.from_pretrained(tiny_model_dir, dtype="float32").eval()
    processor = AutoProcessor.from_pretrained(tiny_model_dir)
    return model, processor
