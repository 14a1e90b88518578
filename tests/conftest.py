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


@pytest.fixture()
def tiny_llava(tiny_model_dir):
    """A fresh (model, processor) pair of builtin:tiny-llava in float32 eval mode, loaded from disk."""
    from transformers import AutoProcessor, LlavaForConditionalGeneration

    model = LlavaForConditionalGeneration.from_pretrained(tiny_model_dir, dtype="float32").eval()
    processor = AutoProcessor.from_pretrained(tiny_model_dir)
    return model, processor
