"""Options that several commands take, declared once (same flag, same help, same vocabulary everywhere).

Use as annotations: `device: Device = "auto"`. Values are resolved (auto, dtype spellings) by
vittle_cli/model/device.py inside the command's run function, not here: parsing stays torch-free.
"""

from __future__ import annotations

from typing import Annotated

import typer

Device = Annotated[
    str,
    typer.Option("--device", help="torch device: auto (CUDA when present, else CPU), cpu, cuda, cuda:N."),
]
Dtype = Annotated[
    str,
    typer.Option(
        "--dtype",
        help="Weight dtype: auto (bfloat16 on CUDA, else float32), float32 / fp32, bfloat16 / bf16, "
        "float16 / fp16.",
    ),
]
Base = Annotated[
    str | None,
    typer.Option(
        "--base",
        help="Base model of a PEFT adapter (default: the one its adapter_config.json names, else the run's "
        "model.name).",
    ),
]
PopeRoot = Annotated[
    str | None,
    typer.Option(
        "--pope-root",
        help="POPE data, layout detected: a LLaVA eval folder, the POPE repository's output/coco/, "
        "lmms-lab/POPE parquet file/folder/save_to_disk folder, or the hub id (fills ${pope_root}).",
    ),
]
BatchSize = Annotated[int, typer.Option("--batch-size", min=1, help="Sequences per forward pass.")]
MODEL_HELP = (
    "Run dir, checkpoint-N or model dir, PEFT adapter dir, hub name (org/name) or builtin:tiny-llava."
)
ModelRef = Annotated[str | None, typer.Option("--model", "-m", help=MODEL_HELP)]
# The same option where a command cannot run without it (declare the parameter without a default).
RequiredModelRef = Annotated[str, typer.Option("--model", "-m", help=MODEL_HELP)]

# EMID (`vittle inspect emid`, `vittle eval --emid`): the external encoders and the CLUB estimator; the
# commands take their defaults from vittle_cli.model.emid_embed (DEFAULT_*_ENCODER, DEFAULT_CLUB_STEPS).
VisionEncoder = Annotated[
    str, typer.Option("--vision-encoder", help="EMID image encoder, a CLIP vision tower: hub id or folder.")
]
TextEncoder = Annotated[str, typer.Option("--text-encoder", help="EMID text encoder: hub id or folder.")]
ClubCheckpoint = Annotated[
    str | None,
    typer.Option(
        "--club",
        help="A fitted CLUB estimator for EMID (.safetensors or the published weights-only .pt); default: "
        "fit one on the eval's pooled variants (cached in EVAL_DIR/emid/).",
    ),
]
ClubSteps = Annotated[
    int, typer.Option("--club-steps", min=1, help="CLUB fitting steps for EMID (Adam, batch 256).")
]
