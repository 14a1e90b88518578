"""Evaluation throughput: the one-at-a-time reference protocol vs vittle's generation engine.

Prints questions/s of (1) one `model.generate` call per question, (2) left-padded batches of full prompts
and (3) the default engine (the [system prompt + image] prefix computed once per image and its KV cache
reused for that image's questions), each ratio to (1), and whether the answers are identical to (1).
The questions are POPE-shaped: Q yes/no questions per image (18 in POPE) and a few new tokens.
`--family qwen2-vl` runs the same on a tiny Qwen2-VL (M-RoPE positions; built in code like the tests').
`--text-variants K` adds the cross-variant comparison: the clean questions plus K text-shifted copies
(pope-shift's text shifts), grouped per variant (each variant re-encodes the image) vs shared per image
(what `vittle eval` does: text-only variants reuse the clean image's prefix).
The methods alternate for --rounds rounds (which goes first alternates too), timed by this process's CPU
time on CPU and CUDA events on GPU (benchmarks/_timing.py); the median per-round ratio and its spread are
printed last. In float32 it exits 1 when any answer differs from the reference; in reduced precision
(bfloat16/float16) batching changes rounding, so it reports the agreement % instead of failing. Exits 2 on bad
options (e.g. --llava7b without CUDA). --json writes the figures to a file.

    python benchmarks/eval_throughput.py                                  # builtin:tiny-llava on CPU
    python benchmarks/eval_throughput.py --family qwen2-vl                # tiny Qwen2-VL on CPU
    python benchmarks/eval_throughput.py --text-variants 9 --images 4     # cross-variant prefix sharing
    python benchmarks/eval_throughput.py --llava7b --images 20            # LLaVA-1.5-7B shape, CUDA, bf16
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path

from _timing import agreement_pct, make_clock, paired_ratio, spread_pct

LLAVA_V1_SYSTEM = (
    "A chat between a curious human and an artificial intelligence assistant. "
    "The assistant gives helpful, detailed, and polite answers to the human's questions."
)
POPE_SUFFIX = "\nAnswer the question using a single word or phrase."
OBJECTS = "person dog cat car chair bottle cup bicycle horse bird bus train dining table umbrella".split()


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--device", default=None, help="cpu or cuda (default: cuda with --llava7b, else cpu)")
    p.add_argument(
        "--dtype",
        default="auto",
        choices=["auto", "float32", "bfloat16", "float16"],
        help="model dtype (auto: bfloat16 on CUDA, float32 on CPU)",
    )
    p.add_argument("--images", type=int, default=8, help="number of images (default 8)")
    p.add_argument("--questions-per-image", type=int, default=18, help="questions per image (POPE: 18)")
    p.add_argument("--max-new-tokens", type=int, default=3, help="new tokens per answer (default 3)")
    p.add_argument("--batch-size", type=int, default=16, help="engine batch size (default 16)")
    p.add_argument(
        "--threads",
        type=int,
        default=1,
        help="torch CPU threads (default 1: the tiny model's matmuls gain nothing from more)",
    )
    p.add_argument("--family", default="llava", choices=["llava", "qwen2-vl"], help="tiny model family")
    p.add_argument(
        "--text-variants",
        type=int,
        default=0,
        help="also compare per-variant vs shared prefixes over clean + K text-shifted variants (max 9)",
    )
    p.add_argument("--rounds", type=int, default=15, help="alternating rounds of the methods (default 15)")
    p.add_argument("--json", default=None, help="also write the figures to this JSON file")
    p.add_argument(
        "--llava7b",
        action="store_true",
        help="LLaVA-1.5-7B-shaped model with random weights (CLIP-L/336 + Llama-7B; needs CUDA)",
    )
    return p.parse_args(argv)


def build_llava7b(device: str, dtype, num_layers: int = 32):
    """A LLaVA-1.5-7B-shaped model (random weights, nothing downloaded) and a processor for it.

    The tokenizer is builtin:tiny-llava's, padded with plain added tokens to Llama's 32064-token vocabulary
    so every generated id decodes; the chat template carries LLaVA-1.5's system prompt.
    """
    import torch
    from llava7b_shape import llava15_7b_config, llava15_processor
    from transformers import LlavaForConditionalGeneration

    from vittle_cli.model.builtin import CHAT_TEMPLATE, SYSTEM_PROMPT, build_tiny_llava

    _, tiny = build_tiny_llava(0)
    tokenizer = tiny.tokenizer
    tokenizer.add_tokens([f"<extra_{i}>" for i in range(32064 - len(tokenizer))])
    template = CHAT_TEMPLATE.replace(SYSTEM_PROMPT, LLAVA_V1_SYSTEM.replace("'", "\\'"))
    tokenizer.chat_template = template
    tokenizer.model_max_length = 4096
    config = llava15_7b_config(
        vocab_size=len(tokenizer),
        image_token_id=tokenizer.convert_tokens_to_ids("<image>"),
        num_layers=num_layers,
        rms_norm_eps=1e-5,
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
    )
    config.pad_token_id = tokenizer.pad_token_id
    torch.manual_seed(0)
    with torch.device(device):  # initialise on the GPU: seconds instead of minutes on the CPU
        model = LlavaForConditionalGeneration._from_config(config, dtype=dtype)
    model.generation_config.eos_token_id = tokenizer.eos_token_id
    model.generation_config.pad_token_id = tokenizer.pad_token_id
    processor = llava15_processor(tokenizer, template)
    return model.eval(), processor


def build_tiny(device: str, dtype):
    from vittle_cli.model.builtin import build_tiny_llava

    model, processor = build_tiny_llava(0)
    return model.to(device=device, dtype=dtype).eval(), processor


def build_tiny_qwen2_vl(device: str, dtype):
    """The tests' tiny Qwen2-VL (tests/qwen_tiny.py: Qwen2VLProcessor cannot be built without torchvision)."""
    from pathlib import Path

    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
    from qwen_tiny import tiny_qwen2_vl

    model, processor = tiny_qwen2_vl(layers=8, hidden=128)
    return model.to(device=device, dtype=dtype).eval(), processor


def with_text_variants(requests, k: int, shared: bool):
    """Each request plus k text-shifted copies (pope-shift's first k text shifts); groups per variant,
    or per image when `shared` (the runner's grouping: same visual shift, same image)."""
    from vittle_cli.data.shift import load_suite
    from vittle_cli.data.shift.registry import derive_seed
    from vittle_cli.data.shift.text import perturb_text
    from vittle_cli.eval.generate import GenerationRequest

    shifts = [v.text for v in load_suite("pope-shift").variants if v.group == "text"][:k]
    out = []
    for n, r in enumerate(requests):
        question = r.text.removesuffix(POPE_SUFFIX)
        out.append(GenerationRequest(r.image, r.text, (None, r.group) if shared else ("clean", r.group)))
        for ts in shifts:
            text = perturb_text(question, ts.name, ts.rate, derive_seed(0, ts.spec, str(n))) + POPE_SUFFIX
            out.append(GenerationRequest(r.image, text, (None, r.group) if shared else (ts.spec, r.group)))
    return out


def make_requests(n_images: int, per_image: int):
    """POPE-shaped requests: `per_image` yes/no questions about each of `n_images` noise images."""
    import numpy as np
    from PIL import Image

    from vittle_cli.eval.generate import GenerationRequest

    rng = np.random.default_rng(0)
    requests = []
    for i in range(n_images):
        image = Image.fromarray((rng.random((480, 640, 3)) * 255).astype("uint8"))
        for q in range(per_image):
            obj = OBJECTS[(i + q) % len(OBJECTS)] + (" on the left" if q % 3 == 0 else "")
            requests.append(GenerationRequest(image, f"Is there a {obj} in the image?{POPE_SUFFIX}", group=i))
    return requests


def timed(fn, device: str):
    """(result, seconds) of one call of fn on the device's honest clock (benchmarks/_timing.py)."""
    _, timer = make_clock(device)
    box = []
    seconds = timer(lambda: box.append(fn()))
    return box[0], seconds


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    import torch
    import transformers

    from vittle_cli.eval.generate import generate_answers, generate_one_at_a_time, render_prompt

    device = args.device or ("cuda" if args.llava7b else "cpu")
    if device.startswith("cuda") and not torch.cuda.is_available():
        print(
            f"error: {'--llava7b' if args.llava7b else '--device cuda'} needs a CUDA GPU and none is "
            "visible; run without it for the tiny model on CPU",
            file=sys.stderr,
        )
        return 2
    if args.llava7b and not device.startswith("cuda"):
        print("error: --llava7b runs on CUDA only; drop --device or pass --device cuda", file=sys.stderr)
        return 2
    if device == "cpu":
        torch.set_num_threads(args.threads)
    dtype_name = (
        args.dtype if args.dtype != "auto" else ("bfloat16" if device.startswith("cuda") else "float32")
    )
    dtype = getattr(torch, dtype_name)

    t0 = time.perf_counter()
    builder = (
        build_llava7b if args.llava7b else build_tiny_qwen2_vl if args.family == "qwen2-vl" else build_tiny
    )
    model, processor = builder(device, dtype)
    build_s = time.perf_counter() - t0
    requests = make_requests(args.images, args.questions_per_image)
    prompt_len = len(
        processor(text=[render_prompt(processor, requests[0])], images=[requests[0].image])["input_ids"][0]
    )
    print(
        f"model: {'LLaVA-1.5-7B-shaped (random)' if args.llava7b else name_of(args)} on {device} "
        f"({torch.cuda.get_device_name() if device.startswith('cuda') else 'CPU'}), {dtype_name}, "
        f"built in {build_s:.1f}s; torch {torch.__version__}, transformers {transformers.__version__}"
    )
    print(
        f"questions: {len(requests)} ({args.images} images x {args.questions_per_image}), prompt "
        f"{prompt_len} tokens, {args.max_new_tokens} new tokens, batch size {args.batch_size}"
    )

    n_new = args.max_new_tokens
    warm = requests[: min(4, len(requests))]  # first-call costs (CUDA context, kernels) out of the timings
    generate_one_at_a_time(model, processor, warm, max_new_tokens=n_new)
    generate_answers(model, processor, warm, batch_size=args.batch_size, max_new_tokens=n_new)

    methods = {
        "one at a time (reference)": lambda: generate_one_at_a_time(
            model, processor, requests, max_new_tokens=n_new
        ),
        "batched, full prompts": lambda: generate_answers(
            model, processor, requests, batch_size=args.batch_size, max_new_tokens=n_new, reuse_prefix=False
        ),
        "engine (prefix reuse)": lambda: generate_answers(
            model, processor, requests, batch_size=args.batch_size, max_new_tokens=n_new, reuse_prefix=True
        ),
    }
    seconds, answers = alternate_methods(methods, args.rounds, device)
    exact = dtype_name == "float32"
    result = report(methods, seconds, answers, len(requests), exact)
    model_name = "LLaVA-1.5-7B-shaped (random)" if args.llava7b else name_of(args)
    result.update(device=device, dtype=dtype_name, model=model_name, questions=len(requests))
    ok = exact is False or all(a == 100.0 for a in result["agreement_pct"].values())
    if args.text_variants:
        same = compare_variant_grouping(model, processor, requests, args, device)
        ok = ok and (same or not exact)  # reduced precision: rounding may flip answers; reported above
    if args.json:
        Path(args.json).write_text(json.dumps(result, indent=2) + "\n")
    ratio = result["engine_speedup"]
    print(
        f"engine speedup over one at a time: {ratio['median']:.2f}x (±{ratio['spread_pct']:.1f}% over {args.rounds} rounds)"
    )
    return 0 if ok else 1


def alternate_methods(methods: dict, rounds: int, device: str):
    """Seconds per method per round (order reversed every round) and each method's first answers."""
    names = list(methods)
    seconds: dict[str, list[float]] = {n: [] for n in names}
    answers: dict[str, list[str]] = {}
    for round_ in range(rounds):
        for name in names if round_ % 2 == 0 else names[::-1]:
            result, s = timed(methods[name], device)
            seconds[name].append(s)
            answers.setdefault(name, result)
    return seconds, answers


def report(methods: dict, seconds: dict, answers: dict, n: int, exact: bool) -> dict:
    """Print the table (median seconds, q/s, ratio to the reference, agreement) and return the figures."""
    names = list(methods)
    ref_name = names[0]
    ref = answers[ref_name]
    what = "identical answers" if exact else "agreement with reference (reduced precision)"
    print(f"\n{'method':<28}{'seconds':>9}{'spread':>8}{'q/s':>9}{'ratio':>8}  {what}")
    figures: dict = {"seconds": {}, "agreement_pct": {}, "speedup": {}}
    for name in names:
        med = statistics.median(seconds[name])
        ratio = paired_ratio(seconds[ref_name], seconds[name])
        agree = agreement_pct(answers[name], ref)
        figures["seconds"][name] = med
        figures["agreement_pct"][name] = agree
        figures["speedup"][name] = ratio.median
        print(f"{name:<28}{med:>9.2f}{spread_pct(seconds[name]):>7.1f}%{n / med:>9.1f}{ratio.median:>7.1f}x  "
              f"{sum(a == b for a, b in zip(answers[name], ref, strict=True))}/{n} ({agree:.1f}%)")  # fmt: skip
    print(f"distinct reference answers: {len(set(ref))}")
    engine = paired_ratio(seconds[ref_name], seconds[names[-1]])
    figures["engine_speedup"] = {"median": engine.median, "spread_pct": engine.spread_pct}
    return figures


def name_of(args) -> str:
    return "tiny Qwen2-VL (random, M-RoPE)" if args.family == "qwen2-vl" else "builtin:tiny-llava"


def compare_variant_grouping(model, processor, requests, args, device) -> bool:
    """Per-variant groups vs one group per image across text-only variants; answers must agree."""
    from vittle_cli.eval.generate import generate_answers

    k = min(args.text_variants, 9)
    results = {}
    for name, shared in (("per-variant prefixes", False), ("shared across variants", True)):
        reqs = with_text_variants(requests, k, shared)
        results[name] = timed(
            lambda reqs=reqs: generate_answers(
                model, processor, reqs, batch_size=args.batch_size, max_new_tokens=args.max_new_tokens
            ),
            device,
        )
    (base, base_s), (shared_answers, shared_s) = results.values()
    n = len(base)
    print(f"\ncross-variant sharing: clean + {k} text variants = {n} questions ({args.images} images)")
    print(f"{'grouping':<28}{'seconds':>9}{'q/s':>10}{'ratio':>8}  identical answers")
    for name, (answers, seconds) in results.items():
        same = sum(a == b for a, b in zip(answers, base, strict=True))
        print(f"{name:<28}{seconds:>9.2f}{n / seconds:>10.1f}{base_s / seconds:>7.1f}x  {same}/{n}")
    return shared_answers == base


if __name__ == "__main__":
    sys.exit(main())
