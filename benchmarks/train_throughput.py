"""Training throughput (non-pad tokens/s) of Vittle vs the baseline, through the real `vittle train` path.

    python benchmarks/train_throughput.py                                   # recipes/tiny.yaml on CPU
    python benchmarks/train_throughput.py --device cuda --steps 60
    python benchmarks/train_throughput.py --recipe my.yaml --set train.per_device_batch_size=8

Both variants run the same recipe in this process (data pipeline, collator, Trainer, logging; checkpoints
off) and differ only in bottleneck.enabled. tokens/s comes from metrics.jsonl; the first logging window
(warm-up) is dropped. Variants alternate for --repeats rounds, and which goes first alternates per round, so
drift on a shared machine hits both. On CPU the metrics clock is this process's CPU time (--clock cpu: the
time other processes hold the CPU is not counted; tokens/s is then per CPU-second), on CUDA wall time with the
GPU synchronised by the Trainer's logging. The per-round ratios, their median and spread are printed last
(ratio < 1: Vittle is slower).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path
from types import SimpleNamespace
from unittest import mock

from _timing import paired_ratio


def parse_args(argv: list[str]) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--recipe", default="recipes/tiny.yaml")
    p.add_argument("--device", choices=("cpu", "cuda"), default="cpu")
    p.add_argument("--steps", type=int, default=30, help="optimizer steps per measurement")
    p.add_argument("--log-every", type=int, default=5, help="logging window (steps)")
    p.add_argument("--repeats", type=int, default=4, help="rounds of (baseline, vittle)")
    p.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: torch's choice)")
    p.add_argument("--set", action="append", default=[], help="extra recipe override key=value")
    p.add_argument(
        "--clock", choices=("auto", "cpu", "wall"), default="auto", help="auto: cpu on CPU, wall on CUDA"
    )
    return p.parse_args(argv)


def measure(recipe_path: str, overrides: list[str], out_dir: Path, cpu_clock: bool) -> float:
    """Median tokens/s of one short training run (first logging window dropped)."""
    from vittle_cli.recipe import load_recipe
    from vittle_cli.train import metrics
    from vittle_cli.train.run import run_train

    recipe = load_recipe(
        recipe_path, overrides + [f"output.dir={out_dir.parent}", f"output.run_name={out_dir.name}"]
    )
    # The metrics accumulator times its windows with time.perf_counter; on a shared CPU, CPU time instead.
    clock = SimpleNamespace(perf_counter=time.process_time) if cpu_clock else time
    with mock.patch.object(metrics, "time", clock):
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
    cpu_clock = args.clock == "cpu" or (args.clock == "auto" and args.device == "cpu")
    results: dict[str, list[float]] = {"baseline": [], "vittle": []}
    variants = [("baseline", "false"), ("vittle", "true")]
    with tempfile.TemporaryDirectory(prefix="vittle-throughput-") as tmp:
        for round_ in range(args.repeats):
            for name, enabled in variants if round_ % 2 == 0 else variants[::-1]:
                rate = measure(
                    args.recipe,
                    [*common, f"bottleneck.enabled={enabled}"],
                    Path(tmp) / f"{name}-{round_}",
                    cpu_clock,
                )
                results[name].append(rate)
                print(f"round {round_ + 1} {name:8s} {rate:10.1f} tokens/s", flush=True)
    base, vit = (statistics.median(results[k]) for k in ("baseline", "vittle"))
    # Each round's ratio compares neighbouring measurements, so slow drift of a shared machine cancels.
    ratio = paired_ratio(results["vittle"], results["baseline"])
    device = (
        torch.cuda.get_device_name() if args.device == "cuda" else f"cpu x{torch.get_num_threads()} threads"
    )
    unit = "tokens per CPU-second" if cpu_clock else "tokens/s"
    print(f"\n{args.recipe} on {device}: baseline {base:.1f}, vittle {vit:.1f} {unit} (medians); "
          f"ratio vittle/baseline per round {', '.join(f'{r:.3f}' for r in ratio.per_round)}")  # fmt: skip
    print(
        f"throughput ratio (vittle / baseline): {ratio.median:.3f} (±{ratio.spread_pct:.1f}% over {args.repeats} rounds)"
    )


if __name__ == "__main__":
    main(sys.argv[1:])
