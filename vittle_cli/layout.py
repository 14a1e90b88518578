"""Names of the files and folders vittle writes and reads, in one place (no torch).

A run directory (output.dir/run_name) holds config.yaml (the resolved recipe), run_info.json, metrics.jsonl,
loss.png, checkpoint-N/ and final/. Every model or adapter folder vittle writes holds the Hugging Face files
(config.json + weights, or adapter_config.json + adapter weights) and, when the bottleneck is on,
vittle_config.json + vittle_bottleneck.safetensors.
"""

from __future__ import annotations

import re
from pathlib import Path

# Run directory
RUN_CONFIG = "config.yaml"
RUN_INFO = "run_info.json"
METRICS_FILE = "metrics.jsonl"
# metrics.jsonl fields written on CUDA only: peak GPU memory (GiB) of each logging window, max over ranks
MEMORY_FIELDS = ("max_mem_allocated_gib", "max_mem_reserved_gib")
LOSS_PLOT = "loss.png"
FINAL_DIR = "final"
STAGING_DIR = ".staging"  # checkpoints are written here first and renamed into place when complete
RUN_MARKER = ".vittle-run"  # in every run directory vittle creates: --overwrite deletes only folders with it
CHECKPOINT_RE = re.compile(r"^checkpoint-(\d+)$")

# Model / adapter folders
MODEL_CONFIG = "config.json"
ADAPTER_CONFIG = "adapter_config.json"
VITTLE_CONFIG = "vittle_config.json"
VITTLE_WEIGHTS = "vittle_bottleneck.safetensors"
ZERO_SHARDS_GLOB = "global_step*"  # DeepSpeed ZeRO checkpoint tag folders
PROCESSOR_FILES = ("processor_config.json", "preprocessor_config.json", "tokenizer_config.json")


def list_checkpoints(run_dir: Path) -> list[tuple[int, Path]]:
    """(step, folder) of a run's checkpoint-N folders, oldest step first ([] if the run dir is missing)."""
    if not run_dir.is_dir():
        return []
    found = [
        (int(m.group(1)), p) for p in run_dir.iterdir() if p.is_dir() and (m := CHECKPOINT_RE.match(p.name))
    ]
    return sorted(found)


def has_full_weights(folder: Path) -> bool:
    """True when `folder` holds Hugging Face model weights (safetensors or .bin, sharded or not)."""
    return any(folder.glob("model*.safetensors")) or any(folder.glob("pytorch_model*.bin"))


def has_zero_shards(folder: Path) -> bool:
    """True when `folder` holds DeepSpeed ZeRO checkpoint tag folders (global_stepN/)."""
    return any(p.is_dir() for p in folder.glob(ZERO_SHARDS_GLOB))
