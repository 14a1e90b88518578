"""Running sums of the loss terms and token counts between two logging steps."""

from __future__ import annotations

import time

import torch

from vittle_cli import layout

# The fields of one metrics.jsonl row, in order (docs: "Run directory").
METRIC_FIELDS = ("step", "epoch", "loss", "ce", "kl_v", "kl_t", "alpha", "lr", "grad_norm", "tokens_per_s")
# Added to a row only on CUDA: peak GPU memory of the logging window, max over ranks (PeakMemoryCallback).
MEMORY_FIELDS = layout.MEMORY_FIELDS
# Fields of an evaluation row ({"step", "epoch", *these}): eval loss on data.eval, train.eval_suite scores.
EVAL_FIELDS = (
    "eval_loss", "suite_clean_accuracy", "suite_shift_accuracy", "suite_clean_f1", "suite_shift_f1",
)  # fmt: skip


class LossMeter:
    """Accumulates ce / kl_v / kl_t per micro-batch and non-pad tokens, on-device (no per-step sync).

    `drain(reduce_sum)` averages over the micro-batches of every rank since the last drain and resets.
    """

    def __init__(self) -> None:
        self._sums: torch.Tensor | None = None  # [ce, kl_v, kl_t, micro_batches, tokens]
        self._since = time.perf_counter()

    def restart_clock(self) -> None:
        """Start the tokens/s window now (call when training starts, after setup)."""
        self._since = time.perf_counter()

    def add(
        self, ce: torch.Tensor, kl_v: torch.Tensor | float, kl_t: torch.Tensor | float, tokens: torch.Tensor
    ) -> None:
        """Add one micro-batch's (detached) terms and its count of non-pad tokens."""
        dev = ce.device
        row = torch.stack(
            [
                ce.detach().double(),
                torch.as_tensor(kl_v, device=dev).detach().double(),
                torch.as_tensor(kl_t, device=dev).detach().double(),
                torch.ones((), dtype=torch.float64, device=dev),
                tokens.detach().to(dev).double(),
            ]
        )
        self._sums = row if self._sums is None else self._sums + row

    def drain(self, reduce_sum, device: torch.device | str = "cpu") -> dict[str, float] | None:
        """Mean ce/kl_v/kl_t over all ranks' micro-batches and tokens/s since the last drain; then reset.

        Args:
            reduce_sum: sums a tensor over ranks (identity in one process). Every rank must call drain.
            device: where the zero row lives when this rank added nothing (the collective's device).
        Returns:
            None if nothing was added anywhere since the last drain.
        """
        now = time.perf_counter()
        sums = self._sums if self._sums is not None else torch.zeros(5, dtype=torch.float64, device=device)
        total = reduce_sum(sums).cpu()
        self._sums, elapsed, self._since = None, now - self._since, now
        n = float(total[3])
        if n == 0:
            return None
        return {
            "ce": float(total[0]) / n,
            "kl_v": float(total[1]) / n,
            "kl_t": float(total[2]) / n,
            "tokens_per_s": float(total[4]) / max(elapsed, 1e-9),
        }
