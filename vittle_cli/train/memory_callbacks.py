"""Callbacks for memory and the optimizer: measured peak GPU memory per logging window, and a guard that the
bottleneck's parameters are in the optimizer."""

from __future__ import annotations

from transformers import TrainerCallback

from vittle_cli.errors import VittleError
from vittle_cli.model.attach import BOTTLENECK_ATTR
from vittle_cli.train.metrics import MEMORY_FIELDS

GIB = 1024**3


def peak_memory_gib(reduce_max=None) -> dict[str, float] | None:
    """{max_mem_allocated_gib, max_mem_reserved_gib} since the last reset on this process's GPU (the maximum
    over ranks when `reduce_max` is given), then reset the peaks; None without CUDA."""
    import torch

    if not torch.cuda.is_available():
        return None
    peaks = torch.tensor(
        [torch.cuda.max_memory_allocated(), torch.cuda.max_memory_reserved()],
        dtype=torch.float64,
        device="cuda",
    )
    if reduce_max is not None:
        peaks = reduce_max(peaks)
    torch.cuda.reset_peak_memory_stats()
    return {name: round(float(v) / GIB, 4) for name, v in zip(MEMORY_FIELDS, peaks.tolist(), strict=True)}


def _all_ranks_max(tensor):
    import torch.distributed as dist

    if dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1:
        dist.all_reduce(tensor, op=dist.ReduceOp.MAX)
    return tensor


class PeakMemoryCallback(TrainerCallback):
    """Adds the peak allocated / reserved GPU memory (GiB, max over ranks) of each logging window to the
    training log row, so metrics.jsonl, TensorBoard and `vittle inspect run` see it. Nothing on CPU.

    Must come before MetricsJsonlCallback in the callback list: it writes into the shared `logs` dict.
    Every rank calls on_log (Trainer.log runs everywhere), so the max over ranks is a safe collective.
    """

    def on_train_begin(self, args, state, control, **kwargs):
        import torch

        if torch.cuda.is_available():  # the first window starts here, not at model loading
            torch.cuda.reset_peak_memory_stats()

    def on_log(self, args, state, control, logs=None, **kwargs):
        if logs is None or "loss" not in logs:
            return
        peaks = peak_memory_gib(_all_ranks_max)
        if peaks is not None:
            logs.update(peaks)


class BottleneckInOptimizerCallback(TrainerCallback):
    """Fails the run at its start if a trainable bottleneck parameter is missing from the optimizer (a
    custom optimizer or parameter-group split that forgot it would silently train without the bottleneck).
    Under DeepSpeed the optimizer holds flattened partitions, so the check is left to its own bookkeeping."""

    def on_train_begin(self, args, state, control, model=None, optimizer=None, **kwargs):
        if model is None or optimizer is None or args.deepspeed:
            return
        in_optimizer = {id(p) for group in optimizer.param_groups for p in group["params"]}
        missing = [
            name
            for name, p in model.named_parameters()
            if BOTTLENECK_ATTR in name.split(".") and p.requires_grad and id(p) not in in_optimizer
        ]
        if missing:
            raise VittleError(
                f"the optimizer does not update the bottleneck's parameters ({', '.join(missing[:3])}); "
                "report this with the recipe, or set bottleneck.enabled=false to train without it"
            )
