"""The processes of a sharded eval (`vittle eval --nproc-per-node N`): who this process is, and a barrier.

Sharded eval needs no collective maths, only "wait until every shard has written its answers", so it
uses a gloo process group (CPU and GPU alike) with a long timeout: a shard may take much longer than
another to reach the barrier.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import timedelta

from vittle_cli.launch import world_from_env

BARRIER_TIMEOUT = timedelta(hours=24)


@dataclass
class Shards:
    rank: int = 0
    local_rank: int = 0
    world: int = 1
    _group: bool = False

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @classmethod
    def from_env(cls) -> Shards:
        """This process's place; joins the launcher's process group when there are several."""
        rank, local, world = world_from_env()
        shards = cls(rank, local, world)
        if world > 1:
            import torch.distributed as dist

            if not dist.is_initialized():
                dist.init_process_group("gloo", timeout=BARRIER_TIMEOUT)
                shards._group = True
        return shards

    def barrier(self) -> None:
        if self.world > 1:
            import torch.distributed as dist

            dist.barrier()

    def close(self) -> None:
        if self._group:
            import torch.distributed as dist

            dist.destroy_process_group()
            self._group = False

    def device(self, device: str) -> str:
        """One GPU per local process: "cuda" becomes "cuda:<local rank>" in a sharded eval."""
        return f"cuda:{self.local_rank}" if self.world > 1 and device == "cuda" else device
