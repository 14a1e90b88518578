"""How long a run is and where its pieces go, computed without building the training setup.

Used by `vittle train --dry-run` and by run_train itself (so the plan printed is the plan executed).
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass, field


@dataclass(frozen=True)
class WorldInfo:
    """This process's place in a (possibly) distributed run, read from torchrun/deepspeed env vars."""

    rank: int = 0
    local_rank: int = 0
    world_size: int = 1

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @classmethod
    def from_env(cls) -> WorldInfo:
        env = os.environ
        return cls(
            rank=int(env.get("RANK", "0")),
            local_rank=int(env.get("LOCAL_RANK", "0")),
            world_size=int(env.get("WORLD_SIZE", "1")),
        )


def total_optimizer_steps(
    n_samples: int, batch_size: int, accumulation: int, world_size: int, epochs: float, max_steps: int | None
) -> int:
    """Optimizer steps of a run, computed exactly as transformers.Trainer does.

    Each rank sees ceil(n / (batch * world)) batches per epoch (accelerate pads the last one), and an
    epoch's last optimizer step may accumulate fewer batches.
    """
    if max_steps:
        return max_steps
    batches_per_rank = math.ceil(n_samples / (batch_size * world_size))
    per_epoch = max(math.ceil(batches_per_rank / accumulation), 1)
    return math.ceil(epochs * per_epoch)


@dataclass
class TrainPlan:
    """What `--dry-run` prints and run_train follows."""

    recipe_yaml: str
    bottleneck: bool = True
    n_layers: int | None = None
    layers: tuple[int, int] | None = None  # (layer_v, layer_t) when the bottleneck is on
    parameters: list[tuple[str, int, int]] = field(default_factory=list)  # (component, trainable, total)
    n_samples: int | None = None
    data_summary: str | None = None
    data_sources: list[tuple[str, int, int, float, int]] = field(default_factory=list)  # mixture.source_rows
    world_size: int = 1
    total_steps: int | None = None
    alphas: dict[str, float] = field(default_factory=dict)  # start / middle / end
    deepspeed_config: dict | None = None
    launch_command: list[str] | None = None
    memory: object | None = None  # a train.memory.MemoryPlan, per device
    notes: list[str] = field(default_factory=list)


def alpha_points(total_steps: int, cfg) -> dict[str, float]:
    """alpha at the first, middle and last optimizer step of a run (`cfg`: the bottleneck's VittleConfig)."""
    from vittle_cli.model.bottleneck import alpha_at

    last = max(total_steps - 1, 0)
    return {
        "start": alpha_at(0, total_steps, cfg),
        "middle": alpha_at(total_steps // 2, total_steps, cfg),
        "end": alpha_at(last, total_steps, cfg),
    }
