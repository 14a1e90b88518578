"""`vittle inspect embeddings|bottleneck|model|run` (`vittle inspect recipe` lives in core.py)."""

from __future__ import annotations

import json
from pathlib import Path

import typer

from vittle_cli.commands.options import (
    MODEL_HELP,
    Base,
    BatchSize,
    ClubCheckpoint,
    ClubSteps,
    Device,
    Dtype,
    PopeRoot,
    RequiredModelRef,
    TextEncoder,
    VisionEncoder,
)
from vittle_cli.model.emid_embed import DEFAULT_CLUB_STEPS, DEFAULT_TEXT_ENCODER, DEFAULT_VISION_ENCODER


def _console():
    from rich.console import Console

    return Console(highlight=False)


def _print_json(obj: dict) -> None:
    typer.echo(json.dumps(obj, indent=2, default=str))


def _data_vars(pope_root: Path | None, data_root: Path | None = None) -> dict[str, str] | None:
    found = {k: str(v) for k, v in (("pope_root", pope_root), ("data_root", data_root)) if v}
    return found or None


def inspect_embeddings(
    model: RequiredModelRef,
    suite: str = typer.Option(
        ..., "--suite", "-s", help="Suite name (vittle eval --list-suites) or a suite .yaml."
    ),
    layer: int = typer.Option(
        None,
        "--layer",
        help="Decoder layer to read (default: the bottleneck's, else round(0.75 * n_layers)).",
    ),
    limit: int = typer.Option(50, "--limit", help="First N questions of each split (all: --limit 0)."),
    compare: str = typer.Option(
        None, "--compare", help="A second model (e.g. the baseline) analysed side by side."
    ),
    out: str = typer.Option(None, "--out", "-o", help="Output folder (default: inspect/<model>-<suite>)."),
    variants: list[str] = typer.Option(
        None, "--variants", help="Shifted variants to analyse (repeat the option; default: all of the suite)."
    ),
    batch_size: BatchSize = 8,
    device: Device = "auto",
    dtype: Dtype = "auto",
    base: Base = None,
    pope_root: PopeRoot = None,
    overwrite: bool = typer.Option(False, "--overwrite", help="Replace an earlier analysis in --out."),
    data_root: Path = typer.Option(
        None,
        "--data-root",
        help="Folder of an LLM-judged suite's files, e.g. lbcoco-shift (fills ${data_root}).",
    ),
) -> None:
    """Representation shift at the bottleneck layer: clean vs shifted queries, before and after the bottleneck.

    Per variant: mean paired cosine distance and matrix-based JSD, for visual and text tokens. Writes
    embeddings.safetensors, manifest.json, pca.png and cosine_hist.png.

    Examples:

      vittle inspect embeddings --model runs/tiny/final --suite shapes-shift --limit 20

      vittle inspect embeddings --model merged/vittle-f --compare merged/baseline --suite pope-shift --pope-root pope/ --device cuda

      vittle inspect embeddings --model runs/tiny/final --suite shapes-shift --variants snow@3 --variants keyboard@3
    """
    from vittle_cli.inspect.embeddings import render_embeddings_report, run_inspect_embeddings

    report = run_inspect_embeddings(
        model,
        suite,
        out=out,
        layer=layer,
        limit=limit or None,
        compare=compare,
        variants=variants or None,
        batch_size=batch_size,
        device=device,
        dtype=dtype,
        base=base,
        data_vars=_data_vars(pope_root, data_root),
        overwrite=overwrite,
    )
    render_embeddings_report(report, _console())


def inspect_bottleneck(
    model: RequiredModelRef,
    suite: str = typer.Option(
        None, "--suite", "-s", help="Suite whose clean questions to use (default: shapes)."
    ),
    limit: int = typer.Option(4, "--limit", help="First N clean questions of each split."),
    batch_size: BatchSize = 8,
    device: Device = "auto",
    dtype: Dtype = "auto",
    base: Base = None,
    pope_root: PopeRoot = None,
    as_json: bool = typer.Option(False, "--json", help="Print the report as JSON instead of tables."),
) -> None:
    """Posterior statistics of the bottleneck per modality: sigma, KL per token, clamped share, alpha, layers.

    Examples:

      vittle inspect bottleneck --model runs/tiny/final

      vittle inspect bottleneck --model merged/vittle-f --suite pope --pope-root pope/ --limit 20 --device cuda

      vittle inspect bottleneck --model runs/tiny/final --json
    """
    from vittle_cli.inspect.bottleneck_stats import render_bottleneck_report, run_inspect_bottleneck

    report = run_inspect_bottleneck(
        model,
        suite=suite,
        limit=limit or None,
        batch_size=batch_size,
        device=device,
        dtype=dtype,
        base=base,
        data_vars=_data_vars(pope_root),
    )
    if as_json:
        _print_json(report.to_json())
    else:
        render_bottleneck_report(report, _console())


def inspect_model(
    model: str = typer.Argument(None, help=MODEL_HELP),
    model_opt: str = typer.Option(None, "--model", "-m", help="Same as the argument."),
    as_json: bool = typer.Option(False, "--json", help="Print the report as JSON instead of tables."),
) -> None:
    """Family, decoder depth, where the bottleneck hooks in, parameter counts by component, dtype.

    Examples:

      vittle inspect model --model runs/tiny/final

      vittle inspect model builtin:tiny-llava

      vittle inspect model --model merged/vittle-f --json
    """
    from vittle_cli.errors import UsageError
    from vittle_cli.inspect.model_view import render_model_report, run_inspect_model

    name = model_opt or model
    if not name:
        raise UsageError("vittle inspect model needs a model: --model <run dir, model dir, hub name>")
    report = run_inspect_model(name)
    if as_json:
        _print_json(report.to_json())
    else:
        render_model_report(report, _console())


def inspect_run(
    run: str = typer.Argument(
        ..., help="A run directory (holds config.yaml, metrics.jsonl, checkpoint-N/, final/)."
    ),
    out: str = typer.Option(None, "--out", "-o", help="Folder for loss.png (default: RUN/inspect)."),
    as_json: bool = typer.Option(False, "--json", help="Print the report as JSON instead of tables."),
) -> None:
    """Summary of a training run: resolved recipe, checkpoints, last metrics and a loss-curve PNG.

    Examples:

      vittle inspect run runs/tiny

      vittle inspect run runs/llava15-vittle-f --out reports/llava15

      vittle inspect run runs/tiny --json
    """
    from vittle_cli.inspect.run_view import render_run_report, run_inspect_run

    report = run_inspect_run(run, out=out)
    if as_json:
        _print_json(report.to_json())
    else:
        render_run_report(report, _console())


def inspect_emid(
    eval_dir: Path = typer.Argument(..., help="The --out folder of a finished open-ended `vittle eval`."),
    against: str = typer.Option(
        None, "--against", help="The variant EMID is measured against (default: clean)."
    ),
    vision_encoder: VisionEncoder = DEFAULT_VISION_ENCODER,
    text_encoder: TextEncoder = DEFAULT_TEXT_ENCODER,
    club: ClubCheckpoint = None,
    club_steps: ClubSteps = DEFAULT_CLUB_STEPS,
    resamples: int = typer.Option(200, "--resamples", min=10, help="Bootstrap resamples of the questions."),
    seed: int = typer.Option(0, "--seed", help="Seed of the CLUB fit and of the bootstrap."),
    device: Device = "auto",
    batch_size: BatchSize = 16,
    as_json: bool = typer.Option(False, "--json", help="Print the report as JSON instead of a table."),
) -> None:
    """EMID (effective mutual information difference) and its JSD upper bound per shifted variant.

    Examples:

      vittle inspect emid evals/lbcoco-shift-vittle

      vittle inspect emid evals/lbcoco-shift-vittle --club CLUB_global.pt --against clean
    """
    from vittle_cli.inspect.emid_run import EmidOptions, render_emid_table, run_inspect_emid
    from vittle_cli.model.device import resolve_device_dtype

    dev, _ = resolve_device_dtype(device, "auto")
    opts = EmidOptions(
        against=against, vision_encoder=vision_encoder, text_encoder=text_encoder, club=club,
        train_steps=club_steps, seed=seed, resamples=resamples, batch_size=batch_size, device=dev,
    )  # fmt: skip
    report = run_inspect_emid(eval_dir, opts, _console())
    if as_json:
        _print_json(report)
    else:
        render_emid_table(report, _console())


def register(app: typer.Typer, inspect_app: typer.Typer) -> None:
    inspect_app.command("embeddings")(inspect_embeddings)
    inspect_app.command("bottleneck")(inspect_bottleneck)
    inspect_app.command("model")(inspect_model)
    inspect_app.command("run")(inspect_run)
    inspect_app.command("emid")(inspect_emid)
