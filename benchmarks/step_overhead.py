"""Train-step time with vs without the Vittle bottleneck, in one process, same model and batch.

    python benchmarks/step_overhead.py                      # builtin:tiny-llava on CPU
    python benchmarks/step_overhead.py --lm7b               # Llama-7B-shaped decoder, bf16, sdpa, 2 x 2048, CUDA

A step is forward + vittle_loss + backward + AdamW step. The two sides alternate single steps (--block) on one
model: the same bottleneck module is attached before each Vittle block and detached after it (untimed), and
which side goes first alternates per round, so drift of a shared machine hits both sides. Time is the
process's CPU time on CPU and CUDA events on GPU (benchmarks/_timing.py). The median per-round ratio and its
spread are printed last. --lm7b builds a LLaVA-1.5-7B-shaped model with random weights (hidden 4096,
intermediate 11008, 32 heads, CLIP-L/336 vision tower, 576 image tokens); nothing is downloaded. --json writes
the figures (and the 7B step's model FLOPs, for MFU) to a file.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
from pathlib import Path

import torch
from _timing import Side, describe, interleave, paired_ratio

from vittle_cli.model.attach import attach_bottleneck, detach_bottleneck
from vittle_cli.model.bottleneck import VittleConfig
from vittle_cli.model.loss import vittle_loss


def tiny_setup(batch_size: int):
    """builtin:tiny-llava (float32, CPU) and a batch of image + question + answer samples."""
    import numpy as np
    from PIL import Image
    from transformers import AutoProcessor, LlavaForConditionalGeneration

    from vittle_cli.model.builtin import resolve_builtin_model

    source = resolve_builtin_model("builtin:tiny-llava")
    model = LlavaForConditionalGeneration.from_pretrained(source, dtype="float32")
    processor = AutoProcessor.from_pretrained(source)
    rng = np.random.RandomState(0)
    images = [Image.fromarray(rng.randint(0, 255, (48, 48, 3), dtype=np.uint8)) for _ in range(batch_size)]
    messages = [
        {"role": "user", "content": [{"type": "image"}, {"type": "text", "text": "Is there a red circle?"}]},
        {"role": "assistant", "content": [{"type": "text", "text": "Yes, there is a red circle."}]},
    ]
    text = processor.apply_chat_template(messages)
    batch = processor(images=images, text=[text] * batch_size, padding=True, return_tensors="pt")
    labels = torch.full_like(batch["input_ids"], -100)
    labels[:, -8:] = batch["input_ids"][:, -8:]
    batch["labels"] = labels
    return model, dict(batch)


def lm7b_setup(n_layers: int, batch_size: int, seq_len: int):
    """A LLaVA-1.5-7B-shaped model with random bf16 weights on CUDA, and a batch of `seq_len` tokens with
    576 image tokens after a 35-token system prompt."""
    from llava7b_shape import llava15_7b_config
    from transformers import LlavaForConditionalGeneration

    image_token = 32000
    config = llava15_7b_config(vocab_size=32064, image_token_id=image_token, num_layers=n_layers)
    with torch.device("cuda"):  # initialise on the GPU: seconds instead of minutes on the CPU
        model = LlavaForConditionalGeneration._from_config(
            config, dtype=torch.bfloat16, attn_implementation="sdpa"
        )
    model.config.use_cache = False
    n_image, n_prefix = 576, 35
    if seq_len < n_prefix + n_image + 16:
        raise SystemExit(f"--seq-len must be at least {n_prefix + n_image + 16} (576 image tokens + text)")
    ids = torch.randint(2, 31000, (batch_size, seq_len), device="cuda")
    ids[:, n_prefix : n_prefix + n_image] = image_token
    labels = torch.full_like(ids, -100)
    labels[:, -seq_len // 4 :] = ids[:, -seq_len // 4 :]
    batch = {
        "input_ids": ids,
        "attention_mask": torch.ones_like(ids),
        "pixel_values": torch.randn(batch_size, 3, 336, 336, device="cuda", dtype=torch.bfloat16),
        "labels": labels,
    }
    return model, batch


def make_step(model, batch: dict, optimizers: list):
    """One train step: forward + vittle_loss + backward + optimizer steps (the bottleneck's optimizer only
    while it is attached, so each side pays exactly its own cost)."""
    from vittle_cli.model.attach import get_bottleneck

    def step() -> None:
        bottleneck = get_bottleneck(model)
        out = model(**batch)
        loss = vittle_loss(out.loss, bottleneck, batch["labels"], batch["attention_mask"]).loss
        loss.backward()
        for optimizer in optimizers if bottleneck is not None else optimizers[:1]:
            optimizer.step()
            optimizer.zero_grad(set_to_none=True)

    return step


def step_flops(model, batch: dict) -> float:
    """Model FLOPs of one training step of the language model (fwd + bwd): 6 N per token for the dense
    weights plus 12 L d S per token for attention scores (PaLM's MFU convention, no causal discount); the
    vision tower is left out, so MFU is slightly understated."""
    text = model.config.text_config
    decoder = model.model.language_model
    n_dense = sum(p.numel() for p in decoder.parameters()) - decoder.embed_tokens.weight.numel()
    n_dense += model.lm_head.weight.numel()
    b, s = batch["input_ids"].shape
    return b * s * (6 * n_dense + 12 * text.num_hidden_layers * text.hidden_size * s)


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--lm7b", action="store_true", help="Llama-7B-shaped decoder, bf16, sdpa, on CUDA")
    p.add_argument(
        "--layers", type=int, default=32, help="decoder layers for --lm7b (fewer fit smaller GPUs)"
    )
    p.add_argument("--seq-len", type=int, default=2048, help="tokens per sample for --lm7b")
    p.add_argument("--batch-size", type=int, default=None, help="default: 8 (tiny), 2 (--lm7b)")
    p.add_argument("--rounds", type=int, default=30, help="alternating rounds (each: one block per side)")
    p.add_argument("--block", type=int, default=1, help="steps per side per round (1: single steps)")
    p.add_argument("--warmup", type=int, default=2, help="untimed steps per side before the rounds")
    p.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: torch's choice)")
    p.add_argument("--gradient-checkpointing", action="store_true", help="non-reentrant checkpointing")
    p.add_argument("--json", default=None, help="also write the figures to this JSON file")
    return p.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    torch.manual_seed(0)
    if args.lm7b:
        if not torch.cuda.is_available():
            print(
                "error: --lm7b needs a CUDA GPU (a 7B-shaped bf16 model); run without --lm7b for the CPU "
                "measurement on builtin:tiny-llava",
                file=sys.stderr,
            )
            return 2
        model, batch = lm7b_setup(args.layers, args.batch_size or 2, args.seq_len)
        device, where = "cuda", f"CUDA ({torch.cuda.get_device_name()}), bf16, sdpa"
    else:
        if args.threads:
            torch.set_num_threads(args.threads)
        model, batch = tiny_setup(args.batch_size or 8)
        device, where = "cpu", f"CPU ({torch.get_num_threads()} threads), float32"
    model.train()
    if args.gradient_checkpointing:
        model.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})

    base_params = sum(p.numel() for p in model.parameters())
    bottleneck = attach_bottleneck(model, VittleConfig())
    bottleneck.alpha = 0.5  # mid-run value; it does not change the cost
    config = bottleneck.config
    detach_bottleneck(model)
    extra = sum(p.numel() for p in bottleneck.parameters())
    model_opt = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-6)
    bottleneck_opt = torch.optim.AdamW(bottleneck.parameters(), lr=1e-6)
    step = make_step(model, batch, [model_opt, bottleneck_opt])
    sides = [
        Side("without", step),
        Side(
            "with",
            step,
            before=lambda: attach_bottleneck(model, config, existing=bottleneck),
            after=lambda: detach_bottleneck(model),
        ),
    ]
    samples = interleave(sides, rounds=args.rounds, block=args.block, warmup=args.warmup, device=device)
    base, vittle = samples.per_side["without"], samples.per_side["with"]
    ratio = paired_ratio(vittle, base)

    tokens = batch["input_ids"].numel()
    text = model.config.text_config
    print(
        f"device: {where}; batch {tuple(batch['input_ids'].shape)} ({tokens} tokens); clock: {samples.clock}"
    )
    print(f"decoder layers: {text.num_hidden_layers}, hidden {text.hidden_size}")
    print(f"bottleneck parameters: {extra:,} ({100 * extra / base_params:.2f}% of {base_params:,})")
    print(f"step without bottleneck: {describe(base)}")
    print(f"step with bottleneck:    {describe(vittle)}")
    result = {
        "device": where,
        "clock": samples.clock,
        "batch": list(batch["input_ids"].shape),
        "layers": text.num_hidden_layers,
        "rounds": args.rounds,
        "block": args.block,
        "median_step_s_without": statistics.median(base),
        "median_step_s_with": statistics.median(vittle),
        "ratio": ratio.median,
        "ratio_spread_pct": ratio.spread_pct,
        "step_flops": step_flops(model, batch),
    }
    if args.lm7b:
        result["peak_gpu_gib"] = torch.cuda.max_memory_allocated() / 2**30
        print(f"peak GPU memory: {result['peak_gpu_gib']:.1f} GiB")
    if args.json:
        Path(args.json).write_text(json.dumps(result, indent=2) + "\n")
    print(
        f"step-time ratio (with / without): {ratio.median:.3f} (±{ratio.spread_pct:.1f}% over {args.rounds} rounds)"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
