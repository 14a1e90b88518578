"""Grouped sampling for data.group_by_length / data.group_by_modality.

Like LLaVA's modality-length grouping: indices are shuffled (seed + epoch), cut into mega-batches, each
mega-batch sorted by length and split into batches, and the batches shuffled again. With by_modality,
image and text-only samples are grouped separately so a batch holds one modality; the leftovers of both
form the last batches.
"""

from __future__ import annotations

import random
from collections.abc import Iterator

from torch.utils.data import Sampler

MEGA_BATCH_MULT = 50  # batches per length-sorted mega-batch, as transformers' LengthGroupedSampler


class GroupedSampler(Sampler[int]):
    """Yield sample indices so that consecutive runs of `batch_size` form homogeneous batches.

    Args:
        lengths: token-length estimate per sample (dataset.lengths).
        has_image: per sample, whether it has images (dataset.has_image).
        batch_size: samples per batch (per device x world size when the index stream is sharded).
        seed: shuffling seed; call set_epoch(e) each epoch for a new, reproducible order.
        by_length: sort within mega-batches by length.
        by_modality: keep image and text-only samples in separate batches.
    """

    def __init__(
        self,
        lengths: list[int],
        has_image: list[bool],
        batch_size: int,
        seed: int = 0,
        by_length: bool = True,
        by_modality: bool = True,
    ):
        if len(lengths) != len(has_image):
            raise ValueError("lengths and has_image must have one entry per sample")
        if batch_size < 1:
            raise ValueError("batch_size must be >= 1")
        self.lengths = list(lengths)
        self.has_image = list(has_image)
        self.batch_size = batch_size
        self.seed = seed
        self.by_length = by_length
        self.by_modality = by_modality
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __len__(self) -> int:
        return len(self.lengths)

    def _batches(self, indices: list[int], rng: random.Random) -> list[list[int]]:
        rng.shuffle(indices)
        if self.by_length:
            mega = self.batch_size * MEGA_BATCH_MULT
            indices = [
                i
                for start in range(0, len(indices), mega)
                for i in sorted(indices[start : start + mega], key=lambda k: -self.lengths[k])
            ]
        return [indices[s : s + self.batch_size] for s in range(0, len(indices), self.batch_size)]

    def batches(self) -> list[list[int]]:
        """This epoch's batches, in order."""
        rng = random.Random(self.seed * 1_000_003 + self.epoch)
        all_idx = range(len(self.lengths))
        groups = [[i for i in all_idx if self.has_image[i]], [i for i in all_idx if not self.has_image[i]]]
        if not self.by_modality:
            groups = [list(all_idx)]
        full, leftovers = [], []
        for group in groups:
            for batch in self._batches(group, rng):
                (full if len(batch) == self.batch_size else leftovers).append(batch)
        rng.shuffle(full)
        rest = [i for batch in leftovers for i in batch]
        return full + [rest[s : s + self.batch_size] for s in range(0, len(rest), self.batch_size)]

    def __iter__(self) -> Iterator[int]:
        for batch in self.batches():
            yield from batch
