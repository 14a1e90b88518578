"""Optimizer, compile and fused-kernel options of a recipe, as TrainingArguments, checked before any loading."""

from __future__ import annotations

import importlib.util

from vittle_cli.errors import VittleError

# Names vittle accepts -> transformers OptimizerNames values (adamw_8bit is transformers' alias of adamw_bnb_8bit).
_HF_OPTIMIZERS = {
    "adamw_torch": "adamw_torch",
    "adamw_torch_fused": "adamw_torch_fused",
    "adamw_8bit": "adamw_bnb_8bit",
    "paged_adamw_8bit": "paged_adamw_8bit",
    "paged_adamw_32bit": "paged_adamw_32bit",
    "adafactor": "adafactor",
    "sgd": "sgd",
}
BITSANDBYTES_OPTIMIZERS = ("adamw_8bit", "paged_adamw_8bit", "paged_adamw_32bit")


def economy_training_args(train) -> dict:
    """TrainingArguments keywords for train.optimizer / train.torch_compile / train.liger_kernels.

    Raises:
        VittleError: the optimizer or the kernels need a package that is not installed (with the fix).
    """
    if train.optimizer in BITSANDBYTES_OPTIMIZERS and importlib.util.find_spec("bitsandbytes") is None:
        raise VittleError(
            f"train.optimizer={train.optimizer} needs bitsandbytes, which is not installed; run "
            "`pip install bitsandbytes` (or `pip install 'vittle[qlora]'`), or choose train.optimizer=adamw_torch"
        )
    if train.liger_kernels and importlib.util.find_spec("liger_kernel") is None:
        raise VittleError(
            "train.liger_kernels=true needs the liger-kernel package, which is not installed; run "
            "`pip install liger-kernel` (CUDA GPUs only) or set train.liger_kernels=false"
        )
    return {
        "optim": _HF_OPTIMIZERS[train.optimizer],
        "torch_compile": train.torch_compile,
        "use_liger_kernel": train.liger_kernels,
    }
