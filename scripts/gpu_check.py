"""One-command GPU check (`make gpu-check`): the CUDA tests, the two GPU benchmarks, MFU of a 7B-shaped step
and the memory plan vs the measured peak, in one JSON + a readable table. Runs offline in about 8 minutes on one
GPU; needs torch + transformers (+ peft, accelerate and vittle's small pure-Python dependencies).

    python scripts/gpu_check.py                                  # real sizes on CUDA, results in gpu-check/
    GPU_CHECK_WHEELS=wheels/ python scripts/gpu_check.py         # first install the wheels in wheels/ offline
    python scripts/gpu_check.py --cpu-smoke                      # tiny shapes on CPU, seconds (the tests run this)

Optional packages (a bare GPU machine lacks them; pass their wheels to run those parts):
  datasets      every `vittle train` run reads data through it (CLI bf16 run, QLoRA, ZeRO-3, memory plan)
  bitsandbytes  QLoRA 4-bit;  deepspeed  ZeRO-3.
Build the folder on a machine with internet and the same Python: `pip wheel -w wheels deepspeed bitsandbytes
datasets` (delete the torch*/nvidia* wheels it pulls in: the GPU machine has them).

The core (bf16 training, eval agreement, both benchmarks, MFU) always runs; a part whose package is absent
is skipped with a named reason; a part that fails is recorded with the end of its output, never a crash.
Exit status: 0 when no part failed (skips and missed targets are reported, not failures), 1 otherwise.
"""

from __future__ import annotations

import argparse
import importlib
import importlib.util
import json
import os
import subprocess
import sys
import time
import xml.etree.ElementTree as ET
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
OPTIONAL = {"datasets": "datasets", "bitsandbytes": "bitsandbytes", "deepspeed": "deepspeed"}
REQUIRED = [
    "torch",
    "transformers",
    "peft",
    "accelerate",
    "typer",
    "rich",
    "pydantic",
    "yaml",
    "PIL",
    "safetensors",
]
# Dense bf16 peak FLOP/s per GPU (vendor datasheets, without sparsity), matched against the device name.
PEAK_BF16_TFLOPS = {"H200": 989.0, "H100": 989.0, "A100": 312.0, "L40S": 362.0, "A10G": 70.0, "L4": 121.0}
TARGETS = {"step_overhead": ("ratio", "<=", 1.02), "eval_throughput": ("engine_speedup", ">=", 10.0)}


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--cpu-smoke", action="store_true", help="tiny shapes on CPU: tests the script itself")
    p.add_argument("--out", default="gpu-check", help="folder for gpu_check.json and gpu_check.md")
    p.add_argument("--wheels", default=os.environ.get("GPU_CHECK_WHEELS") or None, help="folder of wheels")
    p.add_argument("--layers", type=int, default=32, help="decoder layers of the 7B-shaped models")
    p.add_argument("--peak-tflops", type=float, default=None, help="the GPU's dense bf16 peak, for MFU")
    return p.parse_args(argv)


def run(cmd: list[str], timeout: int, log: Path) -> tuple[int, str]:
    """(exit status, last 2000 characters of its output); 124 on timeout. The full output goes to `log`."""
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")])}
    try:
        proc = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True, timeout=timeout)
        code, text = proc.returncode, proc.stdout + proc.stderr
    except subprocess.TimeoutExpired as err:
        code, text = 124, f"{err.stdout or ''}{err.stderr or ''}\ntimed out after {timeout}s"
        text = text if isinstance(text, str) else text.decode(errors="replace")
    log.write_text(text)
    return code, text[-2000:]


def part(name: str, status: str, reason: str = "", **figures) -> dict:
    return {"name": name, "status": status, "reason": reason, **figures}


def environment() -> dict:
    import torch
    import transformers

    cuda = torch.cuda.is_available()
    return {
        "torch": torch.__version__,
        "transformers": transformers.__version__,
        "cuda": torch.version.cuda,
        "devices": [torch.cuda.get_device_name(i) for i in range(torch.cuda.device_count())] if cuda else [],
        "optional": {m: importlib.util.find_spec(m) is not None for m in OPTIONAL},
        "missing_required": [m for m in REQUIRED if importlib.util.find_spec(m) is None],
    }


def install_wheels(folder: str | None, out: Path) -> dict:
    if not folder:
        return part("wheels", "skip", "no wheel folder given (GPU_CHECK_WHEELS=dir or --wheels dir)")
    wheels = sorted(Path(folder).glob("*.whl")) if Path(folder).is_dir() else []
    if not wheels:
        return part("wheels", "fail", f"{folder} is not a folder with *.whl files")
    cmd = [sys.executable, "-m", "pip", "install", "--no-index", "--find-links", folder, *map(str, wheels)]
    code, tail = run(cmd, 300, out / "wheels.log")
    return part("wheels", "pass" if code == 0 else "fail", "" if code == 0 else tail, installed=len(wheels))


def gpu_tests(out: Path, smoke: bool) -> dict:
    """The tests marked gpu, one row per test (skips keep pytest's reason)."""
    xml = out / "gpu-tests.xml"
    cmd = [
        sys.executable,
        "-m",
        "pytest",
        "-q",
        "-m",
        "gpu",
        "tests/gpu",
        f"--junitxml={xml}",
        "-p",
        "no:cacheprovider",
    ]
    code, tail = run(cmd, 60 if smoke else 240, out / "gpu-tests.log")
    if not xml.is_file():
        return part("gpu tests", "fail", tail)
    cases = []
    for case in ET.parse(xml).getroot().iter("testcase"):
        outcome, reason = "pass", ""
        for tag in ("failure", "error", "skipped"):
            node = case.find(tag)
            if node is not None:
                outcome = "skip" if tag == "skipped" else "fail"
                reason = (
                    (node.get("message") or "").strip().splitlines()[0][:200] if node.get("message") else tag
                )
        cases.append({"test": f"{case.get('classname', '').split('.')[-1]}::{case.get('name')}", "status": outcome,
                      "reason": reason})  # fmt: skip
    failed = [c for c in cases if c["status"] == "fail"]
    status = "fail" if failed or code not in (0, 5) else "pass"
    return part("gpu tests", status, f"{len(failed)} failed" if failed else "", tests=cases)


def benchmark(name: str, args: list[str], out: Path, timeout: int) -> dict:
    result_file = out / f"{name}.json"
    code, tail = run([sys.executable, f"benchmarks/{name}.py", *args, "--json", str(result_file)], timeout,
                     out / f"{name}.log")  # fmt: skip
    if not result_file.is_file():
        return part(name, "fail", tail)
    figures = json.loads(result_file.read_text())
    if name == "eval_throughput":
        figures["engine_speedup"] = figures["engine_speedup"]["median"]
    key, op, target = TARGETS[name]
    met = figures[key] <= target if op == "<=" else figures[key] >= target
    return part(name, "pass" if code == 0 else "fail", "" if code == 0 else tail, target=f"{key} {op} {target}",
                target_met=met, **figures)  # fmt: skip


def mfu(step: dict, devices: list[str], peak_tflops: float | None) -> dict:
    if step.get("status") != "pass":
        return part("mfu", "fail", "step_overhead did not run")
    achieved = step["step_flops"] / step["median_step_s_without"] / 1e12
    if peak_tflops is None and devices:
        peak_tflops = next((v for k, v in PEAK_BF16_TFLOPS.items() if k in devices[0]), None)
    if peak_tflops is None:
        reason = f"peak FLOP/s unknown for {devices[0] if devices else 'CPU'}; pass --peak-tflops"
        return part("mfu", "skip", reason, achieved_tflops=achieved)
    return part("mfu", "pass", achieved_tflops=achieved, peak_tflops=peak_tflops, mfu=achieved / peak_tflops)


def memory_plan(env: dict, out: Path, smoke: bool) -> dict:
    if smoke or not env["devices"]:
        return part("memory plan vs peak", "skip", "needs CUDA (it measures CUDA memory)")
    if not env["optional"]["datasets"]:
        return part(
            "memory plan vs peak", "skip", "datasets is not installed: pass its wheel (GPU_CHECK_WHEELS)"
        )
    result_file, work = out / "memory_plan.json", str(out / "memplan")
    code = (
        "import json, pathlib, sys; sys.path.insert(0, 'benchmarks'); "
        "from memory_plan_vs_peak import compare_plan_with_peak as c; "
        f"rows = [c('tiny', 'full', work=pathlib.Path({work!r})), "
        f"c('llava7b', 'lora', layers=8, work=pathlib.Path({work!r}))]; "
        f"pathlib.Path({str(result_file)!r}).write_text(json.dumps(rows))"
    )
    rc, tail = run([sys.executable, "-c", code], 150, out / "memory_plan.log")
    if rc != 0 or not result_file.is_file():
        return part("memory plan vs peak", "fail", tail)
    rows = json.loads(result_file.read_text())
    ok = all(r["plan_over_peak"] is not None and abs(r["plan_over_peak"] - 1) <= 0.15 for r in rows)
    return part("memory plan vs peak", "pass", target="|plan/peak - 1| <= 0.15", target_met=ok, runs=rows)


def summary_table(report: dict) -> str:
    env = report["environment"]
    lines = [
        f"# vittle gpu-check ({report['mode']}), {report['date']}",
        "",
        f"torch {env['torch']} (CUDA {env['cuda']}), transformers {env['transformers']}; "
        f"devices: {', '.join(env['devices']) or 'none'}; optional: "
        + ", ".join(f"{k} {'yes' if v else 'no'}" for k, v in env["optional"].items()),
        "",
        "| part | status | figure | target | reason |",
        "|---|---|---|---|---|",
    ]
    for p in report["parts"]:
        lines.append(f"| {p['name']} | {p['status']} | {_figure(p)} | {_target(p)} | {_short(p['reason'])} |")
        for case in p.get("tests", []):
            lines.append(f"| &nbsp;&nbsp;{case['test']} | {case['status']} | | | {_short(case['reason'])} |")
    lines += [
        "",
        f"total {report['seconds']:.0f} s; details: gpu_check.json and the *.log files beside it",
        "",
    ]
    return "\n".join(lines)


def _figure(p: dict) -> str:
    if "ratio" in p:
        return f"step ratio {p['ratio']:.3f} (±{p['ratio_spread_pct']:.1f}%)"
    if "engine_speedup" in p:
        return f"engine {p['engine_speedup']:.1f}x, agreement {min(p['agreement_pct'].values()):.0f}%"
    if "achieved_tflops" in p:
        return f"{p['achieved_tflops']:.1f} TFLOP/s" + (f", MFU {100 * p['mfu']:.1f}%" if "mfu" in p else "")
    if "runs" in p:
        return ", ".join(f"{r['model']} plan/peak {r['plan_over_peak']}" for r in p["runs"])
    return ""


def _target(p: dict) -> str:
    return f"{p['target']} ({'met' if p['target_met'] else 'MISSED'})" if "target" in p else ""


def _short(text: str) -> str:
    return " ".join(text.split())[-160:].replace("|", "/")


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    out = Path(args.out).resolve()
    out.mkdir(parents=True, exist_ok=True)
    start = time.perf_counter()
    parts = [install_wheels(args.wheels, out)]
    importlib.invalidate_caches()  # find_spec must see what the wheels just installed
    env = environment()
    if env["missing_required"]:
        parts.append(part("environment", "fail", f"missing {env['missing_required']}: pass their wheels"))
    if not env["devices"] and not args.cpu_smoke:
        parts.append(
            part("environment", "fail", "no CUDA GPU visible; use --cpu-smoke to test the script on CPU")
        )
    else:
        parts += run_parts(args, env, out)
    report = {
        "mode": "cpu-smoke" if args.cpu_smoke else "cuda",
        "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
        "environment": env,
        "parts": parts,
        "seconds": time.perf_counter() - start,
    }
    (out / "gpu_check.json").write_text(json.dumps(report, indent=2) + "\n")
    table = summary_table(report)
    (out / "gpu_check.md").write_text(table)
    print(table)
    return 1 if any(p["status"] == "fail" for p in parts) else 0


def run_parts(args: argparse.Namespace, env: dict, out: Path) -> list[dict]:
    smoke = args.cpu_smoke
    parts = [gpu_tests(out, smoke)]
    if smoke:
        step_args = ["--rounds", "2", "--warmup", "1", "--batch-size", "2", "--threads", "1"]
        eval_args = ["--images", "1", "--questions-per-image", "3", "--rounds", "2", "--max-new-tokens", "2"]
    else:
        step_args = ["--lm7b", "--layers", str(args.layers), "--rounds", "10", "--warmup", "2"]
        eval_args = ["--llava7b", "--images", "4", "--rounds", "3"]
    step = benchmark("step_overhead", step_args, out, 120 if smoke else 180)
    parts += [step, mfu(step, env["devices"], args.peak_tflops)]
    parts.append(benchmark("eval_throughput", eval_args, out, 120 if smoke else 150))
    parts.append(memory_plan(env, out, smoke))
    return parts


if __name__ == "__main__":
    sys.exit(main())
