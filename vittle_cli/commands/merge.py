"""`vittle merge`: fold a LoRA adapter (+ the bottleneck) into one standalone model folder."""

from __future__ import annotations

import typer

from vittle_cli.commands.options import Base, Dtype


def merge(
    source: str = typer.Argument(
        ..., help="A run dir (its final/ is merged), a checkpoint-N dir or a PEFT adapter dir."
    ),
    out: str = typer.Option(..., "--out", "-o", help="Folder to write the standalone model into."),
    base: Base = None,
    dtype: Dtype = "fp32",
    max_shard_size: str = typer.Option(
        "5GB", "--max-shard-size", help="Largest safetensors shard, e.g. 2GB."
    ),
    overwrite: bool = typer.Option(False, "--overwrite", help="Replace --out if it exists."),
) -> None:
    """Merge LoRA into the base weights and keep the bottleneck beside them: a self-contained HF folder.

    The merge runs in float32 (a QLoRA run's base is reloaded unquantised); ZeRO-3 shards are consolidated
    first. The result is reloaded and generates a test answer before it is moved into place.

    Examples:

      vittle merge runs/tiny-lora --out merged/tiny

      vittle merge runs/llava-lora/checkpoint-1000 --out merged/llava --dtype bf16

      vittle merge my-adapter/ --base llava-hf/llava-1.5-7b-hf --out merged/llava --overwrite
    """
    from rich.console import Console

    from vittle_cli.merge import run_merge

    console = Console(highlight=False)
    result = run_merge(
        source,
        out,
        base=base,
        dtype=dtype,
        overwrite=overwrite,
        max_shard_size=max_shard_size,
        log=lambda msg: console.print(f"[dim]{msg}[/]"),
    )
    for note in result.notes:
        console.print(note)
    if result.noop:
        return
    bottleneck = "with the Vittle bottleneck" if result.has_bottleneck else "no bottleneck"
    console.print(
        f"[bold green]merged[/] {result.source} -> {result.out} ({result.dtype}, {bottleneck}); "
        f"reload check: max logit difference {result.max_logit_diff:.2g}, "
        f"test answer {result.sample_output!r}"
    )


def register(app: typer.Typer, inspect_app: typer.Typer) -> None:
    app.command("merge")(merge)
