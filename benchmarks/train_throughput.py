"""Training throughput (non-pad tokens/s) of Vittle vs the baseline, through the real `vittle train` path.

    python benchmarks/train_throughput.py                                   # recipes/tiny.yaml on CPU
    python benchmarks/train_throughput.py --device cuda --steps 60
    python benchmarks/train_throughput.py --recipe my.yaml --set train.per_device_batch_size=8

Both variants run the same recipe in this process (data pipeline, collator, Trainer, logging; checkpoints
off) and differ only in bottleneck.enabled. tokens/s comes from metrics.jsonl; the first logging window
(warm-up) is dropped. Variants alternate for --repeats rounds so drift on a shared machine hits both;
medians and the per-round ratios are printed (ratio < 1: Vittle is slower).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
from pathlib import Path


def parse_args(argv: list[str]) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--recipe", default="recipes/tiny.yaml")
    p.add_argument("--device", choices=("cpu", "cuda"), default="cpu")
    p.add_argument("--steps", type=int, default=30, help="optimizer steps per measurement")
    p.add_argument("--log-every", type=int, default=5, help="logging window (steps)")
    p.add_argument("--repeats", type=int, default=2, help="rounds of (baseline, vittle)")
    p.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: torch's choice)")
    p.add_argument("--set", action="append", default=[], help="extra recipe override key=value")
    return p.parse_args(argv)


def measure(recipe_path: str, overrides: list[str], out_dir: Path) -> float:
    """Median tokens/s of one short training run (first logging window dropped)."""
    from vittle_cli.recipe import load_recipe
    from vittle_cli.train.run import run_train

    recipe = load_recipe(
        recipe_path, overrides + [f"output.dir={out_dir.parent}", f"output.run_name={out_dir.name}"]
    )
    run_train(recipe, recipe_path=recipe_path, overwrite=True)
    rows = [json.loads(line) for line in (out_dir / "metrics.jsonl").read_text().splitlines() if line]
    rates = [r["tokens_per_s"] for r in rows[1:] if r.get("tokens_per_s")]
    if not rates:
        raise SystemExit("too few logging windows: raise --steps or lower --log-every")
    return statistics.median(rates)


def main(argv: list[str]) -> None:
    args = parse_args(argv)
    if args.device == "cpu":
        os.environ["CUDA_VISIBLE_DEVICES"] = ""  # before torch is imported
    import torch

    if args.device == "cuda" and not torch.cuda.is_available():
        raise SystemExit("--device cuda: no CUDA device visible")
    if args.threads:
        torch.set_num_threads(args.threads)
    common = [
        f"train.max_steps={args.steps}",
        f"train.logging_steps={args.log_every}",
        f"output.save_steps={10**9}",
        "output.save_total_limit=null",
        "output.report_to=[none]",
        *args.set,
    ]
    results: dict[str, list[float]] = {"baseline": [], "vittle": []}
    with tempfile.TemporaryDirectory(prefix="vittle-throughput-") as tmp:
        for round_ in range(args.repeats):
            for name, enabled in (("baseline", "false"), ("vittle", "true")):
                rate = measure(
                    args.recipe, [*common, f"bottleneck.enabled={enabled}"], Path(tmp) / f"{name}-{round_}"
                )
                results[name].append(rate)
                print(f"round {round_ + 1} {name:8s} {rate:10.1f} tokens/s", flush=True)
    base, vit = (statistics.median(results[k]) for k in ("baseline", "vittle"))
    # Each round's ratio compares neighbouring measurements, so slow drift of a shared machine cancels.
    ratios = [v / b for b, v in zip(results["baseline"], results["vittle"], strict=True)]
    device = (
        torch.cuda.get_device_name() if args.device == "cuda" else f"cpu x{torch.get_num_threads()} threads"
    )
    print(f"\n{args.recipe} on {device}: baseline {base:.1f} tokens/s, vittle {vit:.1f} tokens/s (medians); "
          f"ratio vittle/baseline per round {', '.join(f'{r:.3f}' for r in ratios)}, "
          f"median {statistics.median(ratios):.3f}")  # fmt: skip


if __name__ == "__main__":
    main(sys.argv[1:])
