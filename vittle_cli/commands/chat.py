"""`vittle chat`: ask a model about an image, once or line by line, optionally beside a shifted copy."""

from __future__ import annotations

from pathlib import Path

import typer

from vittle_cli.commands.options import Base, Device, Dtype, RequiredModelRef


def chat(
    model: RequiredModelRef,
    image: Path = typer.Option(..., "--image", "-i", help="The image to ask about (PNG, JPEG, ...)."),
    question: str = typer.Option(
        None, "--question", "-q", help="Answer this once and exit (default: read questions from stdin)."
    ),
    shift: str = typer.Option(
        None,
        "--shift",
        help="A visual perturbation NAME@SEVERITY (e.g. snow@3; an unknown name lists the known ones): "
        "also answer on the shifted image, beside the clean answer.",
    ),
    base: Base = None,
    device: Device = "auto",
    dtype: Dtype = "auto",
    max_new_tokens: int = typer.Option(32, "--max-new-tokens", help="Answer length cap in tokens."),
) -> None:
    """Answer questions about one image with the model (its Vittle bottleneck on when it has one).

    Without --question, each line of stdin is a question until EOF (a prompt is shown only on a terminal).

    Examples:

      vittle chat --model runs/tiny --image demo-out/cat.png --question "Is there a red circle in the image?"

      vittle chat --model runs/tiny --image photo.jpg --shift snow@3

      printf 'Is there a square?\\nWhat is in the image?\\n' | vittle chat -m runs/tiny -i img.png --shift glass_blur@5
    """
    from vittle_cli.eval.chat import run_chat

    run_chat(
        model,
        image,
        question=question,
        shift=shift,
        base=base,
        device=device,
        dtype=dtype,
        max_new_tokens=max_new_tokens,
    )


def register(app: typer.Typer, inspect_app: typer.Typer) -> None:
    """Add `vittle chat`."""
    app.command("chat")(chat)
