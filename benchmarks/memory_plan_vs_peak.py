"""The memory plan (`vittle train --dry-run`) against the measured peak of a real run, on CUDA.

Trains a few steps of the tiny model and/or a LLaVA-1.5-7B-shaped model (random weights, nothing downloaded)
through `run_train`, reads the peak allocated memory that PeakMemoryCallback wrote to metrics.jsonl, and
compares it with the plan of the same recipe. The plan assumes every sample is as long as data.max_length, so
data.max_length is set to the longest sample of the data first. Exits 1 when a plan is off by more than the
tolerance (default 15%). The GPU check script calls `compare_plan_with_peak` directly.

    python benchmarks/memory_plan_vs_peak.py                       # tiny + 7B-shaped (LoRA), CUDA
    python benchmarks/memory_plan_vs_peak.py --model llava7b --mode full --layers 8
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
sys.path.insert(0, str(Path(__file__).resolve().parent))

MODES = {
    "full": [],
    "lora": ["train.lora.enabled=true", "train.lora.r=64", "train.lora.alpha=128"],
    "qlora": [
        "train.lora.enabled=true",
        "train.lora.r=64",
        "train.lora.alpha=128",
        "train.qlora.enabled=true",
    ],
}


def _llava7b_dir(work: Path, layers: int) -> Path:
    """Save a 7B-shaped model (bf16, random) + processor once; `layers` decoder layers (32 = the real depth)."""
    import torch
    from eval_throughput import build_llava7b

    target = work / f"llava7b-{layers}l"
    if not (target / "config.json").is_file():
        model, processor = build_llava7b("cuda", torch.bfloat16, num_layers=layers)
        model.save_pretrained(target)
        processor.save_pretrained(target)
        del model
        torch.cuda.empty_cache()
    return target


def _recipe(
    model: str, mode: str, work: Path, layers: int, batch: int, steps: int, limit: int, extra: list[str]
):
    from vittle_cli.data import build_train_dataset
    from vittle_cli.model.builtin import resolve_model_source
    from vittle_cli.recipe import load_recipe

    overrides = [f"train.max_steps={steps}", "train.logging_steps=1", f"train.per_device_batch_size={batch}",
                 "output.report_to=[]", f"output.save_steps={steps * 10}", f"output.dir={work / 'runs'}",
                 f"output.run_name={model}-{mode}", f"data.limit={limit}", *MODES[mode]]  # fmt: skip
    if model == "llava7b":
        overrides += [f"model.name={_llava7b_dir(work, layers)}", "model.dtype=bfloat16", "train.precision=bf16",
                      "model.train_vision_tower=false", "train.gradient_checkpointing=true", "train.lr=1e-5"]  # fmt: skip
    recipe = load_recipe("tiny", overrides + extra)
    from transformers import AutoProcessor

    processor = AutoProcessor.from_pretrained(resolve_model_source(recipe.model.name))
    dataset, _ = build_train_dataset(recipe.data, processor, seed=recipe.train.seed)
    longest = max(len(dataset[i]["input_ids"]) for i in range(len(dataset)))  # exact, not the estimates
    return load_recipe("tiny", [*overrides, *extra, f"data.max_length={longest}"])


def compare_plan_with_peak(
    model: str = "tiny", mode: str = "full", *, work: Path | None = None, layers: int = 32, batch: int = 4,
    steps: int = 4, limit: int = 256, extra: list[str] | None = None,
) -> dict:  # fmt: skip
    """Plan and measured peak (GiB) of one short run, and their ratio (None without CUDA: nothing measured).

    Args:
        model: "tiny" (builtin:tiny-llava) or "llava7b" (LLaVA-1.5-7B-shaped, random bf16 weights).
        mode: full, lora or qlora (qlora needs bitsandbytes).
        work: folder for the saved 7B-shaped model and the runs (default: a temp folder).
        limit: training samples (the longest of them sets data.max_length, as the plan assumes full length).
        extra: more recipe overrides.
    """
    import torch

    from vittle_cli.train.memory_report import memory_plan_for_recipe
    from vittle_cli.train.run import run_train

    work = Path(work or tempfile.mkdtemp(prefix="vittle-memplan-"))
    recipe = _recipe(model, mode, work, layers, batch, steps, limit, list(extra or []))
    plan = memory_plan_for_recipe(recipe)
    result = run_train(recipe, overwrite=True)
    rows = [json.loads(line) for line in (result.run_dir / "metrics.jsonl").read_text().splitlines()]
    peak = max(r.get("max_mem_allocated_gib") or 0.0 for r in rows)
    reserved = max(r.get("max_mem_reserved_gib") or 0.0 for r in rows)
    planned = plan.total / 2**30
    if torch.cuda.is_available():
        torch.cuda.empty_cache()
    return {
        "model": model if model == "tiny" else f"llava7b-{layers}l",
        "mode": mode,
        "batch": batch,
        "seq_len": recipe.data.max_length,
        "plan_gib": round(planned, 3),
        "peak_allocated_gib": peak,
        "peak_reserved_gib": reserved,
        "plan_over_peak": round(planned / peak, 3) if peak else None,
        "plan_rows_gib": {k: round(v / 2**30, 3) for k, v in plan.rows.items()},
    }


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model", choices=["tiny", "llava7b", "both"], default="both")
    p.add_argument(
        "--mode", choices=sorted(MODES), default=None, help="default: full for tiny, lora for llava7b"
    )
    p.add_argument("--layers", type=int, default=32, help="decoder layers of the 7B-shaped model")
    p.add_argument("--batch", type=int, default=4)
    p.add_argument("--steps", type=int, default=4)
    p.add_argument("--tolerance", type=float, default=0.15)
    p.add_argument("--work", default=None, help="folder for the saved model and runs (default: temp)")
    p.add_argument("--json", default=None, help="also write the results to this JSON file")
    args = p.parse_args()
    import torch

    if not torch.cuda.is_available():
        print("error: memory_plan_vs_peak measures CUDA memory and no CUDA GPU is visible", file=sys.stderr)
        return 2
    models = ["tiny", "llava7b"] if args.model == "both" else [args.model]
    results = []
    for model in models:
        mode = args.mode or ("full" if model == "tiny" else "lora")
        r = compare_plan_with_peak(model, mode, work=args.work and Path(args.work), layers=args.layers,
                                   batch=args.batch, steps=args.steps)  # fmt: skip
        results.append(r)
        print(f"{r['model']:>14} {r['mode']:>5} batch {r['batch']} x {r['seq_len']} tokens: plan {r['plan_gib']:.2f} "
              f"GiB, measured peak {r['peak_allocated_gib']:.2f} GiB allocated ({r['peak_reserved_gib']:.2f} "
              f"reserved), plan / peak {r['plan_over_peak']}")  # fmt: skip
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=2))
    off = [r for r in results if r["plan_over_peak"] is None or abs(r["plan_over_peak"] - 1) > args.tolerance]
    return 1 if off else 0


if __name__ == "__main__":
    sys.exit(main())
