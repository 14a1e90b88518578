"""`vittle eval`: robustness evaluation on a suite; `vittle eval compare`: results side by side."""

from __future__ import annotations

from pathlib import Path

import typer

from vittle_cli.commands.options import (
    Base,
    BatchSize,
    ClubCheckpoint,
    ClubSteps,
    Device,
    Dtype,
    ModelRef,
    PopeRoot,
    TextEncoder,
    VisionEncoder,
)
from vittle_cli.model.emid_embed import DEFAULT_CLUB_STEPS, DEFAULT_TEXT_ENCODER, DEFAULT_VISION_ENCODER

eval_app = typer.Typer(
    invoke_without_command=True,
    no_args_is_help=False,
    context_settings={"help_option_names": ["-h", "--help"]},
)


# long: one parameter per command-line option (typer declares options as parameters).
@eval_app.callback()
def eval_run(
    ctx: typer.Context,
    suite: str = typer.Option(
        None, "--suite", "-s", help="Suite name (see --list-suites) or a suite .yaml file."
    ),
    model: ModelRef = None,
    out: Path = typer.Option(None, "--out", "-o", help="Output folder (default: evals/<model>/<suite>)."),
    batch_size: BatchSize = 16,
    limit: int = typer.Option(None, "--limit", help="Only the first N questions of each split."),
    device: Device = "auto",
    dtype: Dtype = "auto",
    max_new_tokens: int = typer.Option(
        None, "--max-new-tokens", help="Answer length cap (default: the suite's)."
    ),
    overwrite: bool = typer.Option(
        False, "--overwrite", help="Redo a finished eval in --out (cached answers are reused)."
    ),
    base: Base = None,
    pope_root: PopeRoot = None,
    pope_layout: str = typer.Option(
        None, "--pope-layout", help="Force the POPE layout: llava, pope or hf (default: detected)."
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
    nproc_per_node: int = typer.Option(
        1, "--nproc-per-node", min=1, help="Processes (GPUs) per node; questions are sharded by image."
    ),
    nnodes: int = typer.Option(1, "--nnodes", min=1, help="Number of nodes."),
    node_rank: int = typer.Option(0, "--node-rank", min=0, help="This node's rank (multi-node torchrun)."),
    master_addr: str = typer.Option("127.0.0.1", "--master-addr", help="Address of the rank-0 node."),
    master_port: int = typer.Option(29500, "--master-port", help="Port of the rank-0 node."),
    data_root: Path = typer.Option(
        None, "--data-root", help="Folder of an LLM-judged suite's files (fills ${data_root})."
    ),
    judge: str = typer.Option(
        None, "--judge", help="LLM judge: an API model (gpt-4o), azure:DEPLOYMENT or hf:NAME_OR_PATH."
    ),
    judge_runs: int = typer.Option(
        None, "--judge-runs", help="Judgments per answer (default 3 for API judges, 1 for hf:)."
    ),
    judge_url: str = typer.Option(
        None, "--judge-url", help="OpenAI-compatible base URL (vLLM/SGLang/Ollama; Azure endpoint)."
    ),
    judge_key_env: str = typer.Option(
        None, "--judge-key-env", help="Env var holding the API key (default OPENAI_API_KEY)."
    ),
    judge_concurrency: int = typer.Option(8, "--judge-concurrency", help="Judge requests in flight."),
    judge_timeout: float = typer.Option(120.0, "--judge-timeout", help="Seconds per judge request."),
    judge_retries: int = typer.Option(6, "--judge-retries", help="Retries on 429/5xx/timeouts, backoff."),
    severities: str = typer.Option(
        None,
        "--severities",
        help="Severity sweep: every visual and text shift of the suite at each of "
        "these severities (e.g. 1,2,3,4,5), no joint shifts; writes severity.png and severity.json.",
    ),
    sweep_shifts: str = typer.Option(
        None, "--sweep-shifts", help="With --severities: only these shifts (e.g. snow,keyboard)."
    ),
    emid: bool = typer.Option(
        False,
        "--emid",
        help="Open-ended suites: add EMID per variant and group (and its JSD bound terms) to the results, "
        "as `vittle inspect emid` computes it (external encoders + CLUB; cached in OUT/emid/).",
    ),
    vision_encoder: VisionEncoder = DEFAULT_VISION_ENCODER,
    text_encoder: TextEncoder = DEFAULT_TEXT_ENCODER,
    club: ClubCheckpoint = None,
    club_steps: ClubSteps = DEFAULT_CLUB_STEPS,
) -> None:
    """Evaluate a model on a robustness suite: clean + visual, text and joint shifts.

    Writes results.json, predictions.jsonl (a resumable answer cache) and results.png into --out.

    Examples:

      vittle eval --suite shapes-shift --model runs/tiny/final --limit 50

      vittle eval --suite pope-shift --model runs/llava15-vittle-f/final --pope-root playground/data/eval/pope

      vittle eval --suite lbcoco-shift --model runs/llava15-vittle-f/final --data-root playground/data/eval/llava-bench-coco --judge gpt-4o --emid

      vittle eval --suite mmmu --model runs/llava15-vittle-f/final --source MMMU/MMMU
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
    extend_results = None
    if emid:  # refused before any work: a suite without reference answers, a missing encoder
        from vittle_cli.commands.eval_emid import check_emid_request, emid_step

        check_emid_request(suite, vision_encoder, text_encoder, club)
        extend_results = emid_step(vision_encoder, text_encoder, club, club_steps, device, batch_size)
    from vittle_cli.launch import LaunchOptions, is_distributed_child

    launch = LaunchOptions(nproc_per_node, nnodes, node_rank, master_addr, master_port)
    if launch.wants_launch and not is_distributed_child():
        _relaunch(ctx, launch)
        return
    from vittle_cli.eval.judge.backends import JudgeOptions
    from vittle_cli.eval.runner import run_eval

    judge_options = JudgeOptions(
        url=judge_url,
        key_env=judge_key_env,
        timeout=judge_timeout,
        max_retries=judge_retries,
        concurrency=judge_concurrency,
    )
    data_vars = {
        k: str(v) for k, v in (("pope_root", pope_root), ("data_root", data_root), ("source", source)) if v
    }
    pope_files = {
        "questions": questions,
        "labels_dir": labels_dir,
        "image_root": image_root,
        "layout": pope_layout,
    }
    if severities:
        suite = _sweep_suite(suite, severities, sweep_shifts)
    interrupted = False
    try:
        results = run_eval(
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
            data_vars=data_vars or None,
            pope_files={k: str(v) for k, v in pope_files.items() if v is not None},
            judge=judge,
            judge_runs=judge_runs,
            judge_options=judge_options,
            extend_results=extend_results,
        )
    except KeyboardInterrupt:
        if is_distributed_child():  # the launching parent says it once, for all processes
            raise
        interrupted = True
    if interrupted:  # raised outside `except`: no chained traceback keeps the model alive
        from vittle_cli.errors import Interrupted

        raise Interrupted(_interrupted_message(suite, model, out))
    if severities:
        from vittle_cli.eval.runner import default_out_dir
        from vittle_cli.eval.sweep import write_severity

        written = write_severity({str(model): results}, out or default_out_dir(model, suite.name))
        if written:
            typer.echo(f"wrote {written[0]}, {written[1]}")


def _sweep_suite(suite: str, severities: str, only: str | None):
    """The `--severities` expansion of a suite name or file (vittle_cli/data/shift/sweep.py)."""
    from vittle_cli.data.shift.suite import load_suite
    from vittle_cli.data.shift.sweep import parse_int_list, severity_sweep

    levels = parse_int_list(severities, "--severities")
    names = [n.strip() for n in only.split(",") if n.strip()] if only else None
    return severity_sweep(load_suite(suite), levels, names)


def _relaunch(ctx: typer.Context, launch) -> None:
    """Re-run this `vittle eval` under torchrun, one process per shard, and pass its exit code on."""
    from vittle_cli.eval.runner import prepare_suite
    from vittle_cli.launch import build_launch_command, run_launch

    p = ctx.params
    pope_vars = {"pope_root": p["pope_root"]} if p["pope_root"] else None
    pope_files = {k: p[k] for k in ("questions", "labels_dir", "image_root") if p[k] is not None}
    suite, _ = prepare_suite(p["suite"], pope_vars, {k: str(v) for k, v in pope_files.items()})  # fail early
    if suite.is_openended:
        from vittle_cli.errors import UsageError

        raise UsageError(
            f"--nproc-per-node shards the questions of POPE-family suites; run {suite.name!r} (LLM-judged) in "
            "one process"
        )
    argv = ["eval"]
    for name, value in p.items():
        if name in ("list_suites", "nproc_per_node", "nnodes", "node_rank", "master_addr", "master_port"):
            continue
        if isinstance(value, bool):
            argv += [f"--{name.replace('_', '-')}"] if value else []
        elif value is not None:
            argv += [f"--{name.replace('_', '-')}", str(value)]
    command = build_launch_command(
        argv,
        command="eval",
        nproc_per_node=launch.nproc_per_node,
        nnodes=launch.nnodes,
        node_rank=launch.node_rank,
        master_addr=launch.master_addr,
        master_port=launch.master_port,
    )
    code = run_launch(command)
    if code == 130:
        from vittle_cli.errors import Interrupted

        raise Interrupted(_interrupted_message(p["suite"], p["model"], p["out"]))
    if code:
        raise typer.Exit(code)


def _interrupted_message(suite: str, model: str, out: Path | None) -> str:
    """How many answers the cache kept and the command that continues (it skips what is cached)."""
    import shlex
    import sys

    from vittle_cli.cli import invoked_command

    if out is None:
        from vittle_cli.data.shift.suite import load_suite
        from vittle_cli.eval.runner import default_out_dir

        try:
            out = default_out_dir(model, suite.name if hasattr(suite, "name") else load_suite(suite).name)
        except Exception:  # the suite itself was the problem: say no more than what is known
            return "interrupted before any answer was kept"
    cache = Path(out) / "predictions.jsonl"
    kept = sum(1 for line in cache.open(encoding="utf-8") if line.strip()) if cache.is_file() else 0
    command = invoked_command() or ["vittle", *sys.argv[1:]]
    return (
        f"interrupted; kept {kept} answers in {cache}; continue with the same command (cached answers are "
        f"not asked again): {shlex.join(command)}"
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
        if s.is_openended:
            data = f"{s.data.openended.layout} files (--data-root), LLM judge (--judge)"
        elif isinstance(s.data, dict):
            data = f"{s.task} data (--source)"
        table.add_row(name, str(len(s.variants)), data, s.description)
    Console().print(table)


# --arm NAME EVAL... takes a variable number of values, which click options cannot: unknown options
# pass through to `results` in order and compare_arms.parse_arm_args reads them.
@eval_app.command("compare", context_settings={"ignore_unknown_options": True})
def eval_compare(
    results: list[str] = typer.Argument(
        ...,
        help="results.json files or eval folders; the first is the reference. Or several seeds per arm: "
        "--arm NAME EVAL_DIR... --arm NAME EVAL_DIR... (mean, spread over seeds, paired bootstrap interval).",
    ),
    out: Path = typer.Option(None, "--out", "-o", help="Also write compare.json and compare.png here."),
    metric: str = typer.Option(
        None,
        "--metric",
        help="A metric of the runs' task (POPE: accuracy, precision, recall, f1, yes_ratio; LLM-judged "
        "suites: relative_score); default: the task's primary one.",
    ),
    common: bool = typer.Option(
        False,
        "--common",
        help="Compare on the questions all runs answered (rescored from predictions.jsonl).",
    ),
) -> None:
    """Compare evals side by side: per variant and group mean, with deltas against the first.

    Runs of different suites, splits, --limit or question sets are refused (or, with --common, compared on
    the questions they share). Columns are named by model.

    Examples:

      vittle eval compare evals/baseline/pope-shift evals/vittle-f/pope-shift

      vittle eval compare a/results.json b/results.json c/results.json --metric accuracy --out cmp/

      vittle eval compare --arm vittle ev/v1 ev/v2 ev/v3 --arm baseline ev/b1 ev/b2 ev/b3 --out cmp/
    """
    if "--arm" in results:
        from vittle_cli.eval.compare_arms import parse_arm_args, run_compare_arms

        run_compare_arms(parse_arm_args(results), out=out, metric=metric)
        return
    from vittle_cli.eval.compare import run_compare

    run_compare(results, out=out, metric=metric, common=common)
    if out is not None:  # severity sweeps: the models' curves together (vittle_cli/eval/sweep.py)
        from vittle_cli.eval.sweep import compare_severity

        compare_severity(results, out, metric)


@eval_app.command("export")
def eval_export(
    eval_dir: Path = typer.Argument(..., help="An eval folder (holds predictions.jsonl)."),
    out: Path = typer.Option(..., "--out", "-o", help="The answer file to write (.jsonl)."),
    fmt: str = typer.Option("llava", "--format", help="llava (eval_pope.py answer file) or lmms-eval."),
    variant: str = typer.Option("clean", "--variant", help="Which variant's answers to export."),
) -> None:
    """Export an eval's answers in LLaVA's answer-file format or lmms-eval's sample-log format.

    Examples:

      vittle eval export evals/vittle-f/pope --out answers.jsonl

      vittle eval export evals/vittle-f/pope-shift --variant snow@3 --format lmms-eval --out snow.jsonl
    """
    from vittle_cli.eval.export import run_export

    n = run_export(eval_dir, out, fmt=fmt, variant=variant)
    typer.echo(f"wrote {n} answers of {variant} to {out}")


def register(app: typer.Typer, inspect_app: typer.Typer) -> None:
    """Add `vittle eval` (and `vittle eval compare`)."""
    app.add_typer(eval_app, name="eval")
