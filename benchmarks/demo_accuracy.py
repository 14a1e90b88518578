"""Does the built-in demo learn? Checks `make demo`'s results against the target of issue #18.

Reads the demo's eval folders (default demo-out/eval/{vittle,baseline}) or, with --run, first runs
scripts/demo.sh (the whole demo, timed). For each arm prints the clean accuracy, F1 and yes-rate and the
shift group means; exits 1 when an arm misses the target (clean accuracy >= 90%, yes-rate 40-60%) or,
with --run, when the demo took longer than --budget-s seconds (the target: 5 minutes on 2 idle cores).

    python benchmarks/demo_accuracy.py                    # after make demo
    python benchmarks/demo_accuracy.py --run              # run the demo, then check it (and its time)
    python benchmarks/demo_accuracy.py --out study-out/eval --arms vittle-s1 baseline-s1
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import time
from pathlib import Path

MIN_CLEAN_ACCURACY = 0.90
YES_RATE = (0.40, 0.60)


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument(
        "--out", default="demo-out/eval", help="folder of the eval folders (default demo-out/eval)"
    )
    p.add_argument("--arms", nargs="+", default=["vittle", "baseline"], help="eval folder names to check")
    p.add_argument("--run", action="store_true", help="run scripts/demo.sh first (timed)")
    p.add_argument("--budget-s", type=float, default=300.0, help="time budget of the whole demo with --run")
    return p.parse_args(argv)


def run_demo() -> tuple[float, float]:
    """Run the demo; return (wall seconds, CPU seconds of all its processes)."""
    root = Path(__file__).resolve().parent.parent
    env = {**os.environ, "VITTLE": os.environ.get("VITTLE", f"{sys.executable} -m vittle_cli")}
    start = time.perf_counter()
    subprocess.run(["bash", str(root / "scripts" / "demo.sh")], check=True, env=env, cwd=root)
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return time.perf_counter() - start, usage.ru_utime + usage.ru_stime


def check_arm(folder: Path) -> list[str]:
    """Print the arm's figures; return the targets it misses."""
    doc = json.loads((folder / "results.json").read_text())
    clean = doc["metrics"]["clean"]["all"]
    groups = doc["summary"]["groups"]
    shifted = "  ".join(f"{g} F1 {m['f1'] * 100:.1f}" for g, m in groups.items() if g != "clean")
    print(
        f"{folder.name}: clean acc {clean['accuracy'] * 100:.1f}  F1 {clean['f1'] * 100:.1f}  "
        f"yes {clean['yes_ratio'] * 100:.1f}  (n={clean['n']})  {shifted}"
    )
    misses = []
    if clean["accuracy"] < MIN_CLEAN_ACCURACY:
        misses.append(f"{folder.name}: clean accuracy {clean['accuracy']:.3f} < {MIN_CLEAN_ACCURACY}")
    if not YES_RATE[0] <= clean["yes_ratio"] <= YES_RATE[1]:
        misses.append(f"{folder.name}: yes-rate {clean['yes_ratio']:.3f} outside {YES_RATE}")
    return misses


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    misses = []
    if args.run:
        wall, cpu = run_demo()
        print(f"demo: {wall:.0f} s wall, {cpu:.0f} s CPU (user+sys), load {os.getloadavg()[0]:.1f}")
        if wall > args.budget_s:
            misses.append(f"demo took {wall:.0f} s > {args.budget_s:.0f} s")
    for arm in args.arms:
        misses += check_arm(Path(args.out) / arm)
    for m in misses:
        print(f"MISSED {m}")
    return 1 if misses else 0


if __name__ == "__main__":
    sys.exit(main())
