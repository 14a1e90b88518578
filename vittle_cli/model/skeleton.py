"""Build module skeletons on the meta device (no memory), e.g. to read a model's module paths."""

from __future__ import annotations

import contextlib


@contextlib.contextmanager
def zero3_init_paused():
    """Build meta-device skeletons without transformers' ZeRO-3 init, which would try to initialise (and
    partition) their weights and fails on meta tensors. Real loads (from_pretrained) stay partitioned."""
    from transformers.integrations import deepspeed as hf_deepspeed

    ref = getattr(hf_deepspeed, "_hf_deepspeed_config_weak_ref", None)
    active = ref() if ref is not None else None
    if active is None:
        yield
        return
    hf_deepspeed.unset_hf_deepspeed_config()
    try:
        yield
    finally:
        hf_deepspeed.set_hf_deepspeed_config(active)
