"""`vittle eval`: robustness evaluation on a suite; `vittle eval compare`: results side by side."""

from __future__ import annotations

from pathlib import Path

import typer

eval_app = typer.Typer(
    invoke_without_command=True,
    no_args_is_help=False,
    context_settings={"help_option_names": ["-h", "--help"]},
)


@eval_app.callback()
def eval_run(
    ctx: typer.Context,
    suite: str = typer.Option(
        None, "--suite", "-s", help="Suite name (see --list-suites) or a suite .yaml file."
    ),
    model: str = typer.Option(
        None, "--model", "-m", help="Run dir, model dir, adapter dir, hub name or builtin:tiny-llava."
    ),
    out: Path = typer.Option(None, "--out", "-o", help="Output folder (default: evals/<model>/<suite>)."),
    batch_size: int = typer.Option(16, "--batch-size", help="Sequences per forward pass."),
    limit: int = typer.Option(None, "--limit", help="Only the first N questions of each split."),
    device: str = typer.Option("cpu", "--device", help="torch device, e.g. cuda, cuda:1, cpu."),
    dtype: str = typer.Option("float32", "--dtype", help="float32, bfloat16 or float16."),
    max_new_tokens: int = typer.Option(
        None, "--max-new-tokens", help="Answer length cap (default: the suite's)."
    ),
    overwrite: bool = typer.Option(
        False, "--overwrite", help="Redo a finished eval in --out (cached answers are reused)."
    ),
    base: str = typer.Option(
        None, "--base", help="Base model of a PEFT adapter, if its config does not name one."
    ),
    pope_root: Path = typer.Option(
        None, "--pope-root", help="POPE folder in LLaVA layout (fills ${pope_root})."
    ),
    questions: Path = typer.Option(None, "--questions", help="POPE question file (llava_pope_test.jsonl)."),
    labels_dir: Path = typer.Option(
        None, "--labels-dir", help="Folder of coco_pope_<split>.json label files."
    ),
    image_root: Path = typer.Option(None, "--image-root", help="Folder of the POPE images (COCO val2014)."),
    source: str = typer.Option(
        None,
        "--source",
        help="ScienceQA/MMMU/MME/MMStar data (fills ${source}): parquet file or folder, save_to_disk "
        "folder, or hub id.",
    ),
    list_suites: bool = typer.Option(False, "--list-suites", help="List the shipped suites and exit."),
) -> None:
    """Evaluate a model on a robustness suite: clean + visual, text and joint shifts.

    Writes results.json, predictions.jsonl (a resumable answer cache) and results.png into --out.

    Examples:

      vittle eval --suite shapes-shift --model runs/tiny/final --limit 50

      vittle eval --suite pope-shift --model runs/llava15-vittle-f/final --pope-root playground/data/eval/pope --device cuda

      vittle eval compare evals/baseline/pope-shift evals/vittle-f/pope-shift
    """
    if ctx.invoked_subcommand is not None:
        return
    if list_suites:
        _print_suites()
        return
    from vittle_cli.errors import UsageError

    if not suite or not model:
        raise UsageError(
            "vittle eval needs --suite and --model (see vittle eval --help, vittle eval --list-suites)"
        )
    from vittle_cli.eval.runner import run_eval

    pope_files = {"questions": questions, "labels_dir": labels_dir, "image_root": image_root}
    run_eval(
        suite,
        model,
        out=out,
        batch_size=batch_size,
        limit=limit,
        device=device,
        dtype=dtype,
        max_new_tokens=max_new_tokens,
        overwrite=overwrite,
        base=base,
        data_vars={k: str(v) for k, v in (("pope_root", pope_root), ("source", source)) if v is not None},
        pope_files={k: str(v) for k, v in pope_files.items() if v is not None},
    )


def _print_suites() -> None:
    from rich.console import Console
    from rich.table import Table

    from vittle_cli.data.shift.suite import load_suite, shipped_suites

    table = Table(box=None, pad_edge=False)
    for col in ("suite", "variants", "data", "description"):
        table.add_column(col, style="bold cyan" if col == "suite" else None)
    for name in shipped_suites():
        s = load_suite(name)
        data = s.data if isinstance(s.data, str) else "POPE files (--pope-root)"
        data = f"{s.task} data (--source)" if isinstance(s.data, dict) else data
        table.add_row(name, str(len(s.variants)), data, s.description)
    Console().print(table)


@eval_app.command("compare")
def eval_compare(
    results: list[str] = typer.Argument(
        ..., help="results.json files or eval folders; the first is the reference."
    ),
    out: Path = typer.Option(None, "--out", "-o", help="Also write compare.json and compare.png here."),
    metric: str = typer.Option("f1", "--metric", help="accuracy, precision, recall, f1 or yes_ratio."),
) -> None:
    """Compare evals side by side: per variant and group mean, with deltas against the first.

    Examples:

      vittle eval compare evals/baseline/pope-shift evals/vittle-f/pope-shift

      vittle eval compare a/results.json b/results.json c/results.json --metric accuracy --out cmp/
    """
    from vittle_cli.eval.compare import run_compare

    run_compare(results, out=out, metric=metric)


def register(app: typer.Typer, inspect_app: typer.Typer) -> None:
    """Add `vittle eval` (and `vittle eval compare`)."""
    app.add_typer(eval_app, name="eval")
