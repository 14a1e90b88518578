"""Train-step time with vs without the Vittle bottleneck, in one process, same model and batch.

    python benchmarks/step_overhead.py                      # builtin:tiny-llava on CPU
    python benchmarks/step_overhead.py --lm7b --layers 8    # 7B-shaped Llama decoder, bf16, CUDA

A step is forward + vittle_loss + backward + AdamW step. Blocks of steps alternate (base, vittle, base,
vittle, ...), each after warm-up steps, so drift of a shared machine hits both sides; the medians and
their ratio are printed. --lm7b builds a LLaVA-1.5-7B-shaped model with random weights (hidden 4096,
intermediate 11008, 32 heads, CLIP-L/336 vision tower, 576 image tokens); nothing is downloaded.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time

import torch

from vittle_cli.model.attach import attach_bottleneck, detach_bottleneck, get_bottleneck
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
    previous = torch.get_default_dtype()
    torch.set_default_dtype(torch.bfloat16)
    try:
        with torch.device("cuda"):
            model = LlavaForConditionalGeneration(config)
    finally:
        torch.set_default_dtype(previous)
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


def time_steps(model, batch: dict, steps: int, warmup: int, sync) -> list[float]:
    """Seconds per train step (forward + vittle_loss + backward + AdamW) for `steps` steps after warm-up."""
    optimizer = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-6)
    bottleneck = get_bottleneck(model)
    if bottleneck is not None:
        bottleneck.alpha = 0.5  # mid-run value; it does not change the cost
    times = []
    for i in range(warmup + steps):
        sync()
        start = time.perf_counter()
        out = model(**batch)
        loss = vittle_loss(out.loss, bottleneck, batch["labels"], batch["attention_mask"]).loss
        loss.backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        sync()
        if i >= warmup:
            times.append(time.perf_counter() - start)
    del optimizer
    return times


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--lm7b", action="store_true", help="7B-shaped Llama decoder, bf16, on CUDA")
    parser.add_argument(
        "--layers", type=int, default=32, help="decoder layers for --lm7b (fewer fit smaller GPUs)"
    )
    parser.add_argument("--seq-len", type=int, default=1024, help="tokens per sample for --lm7b")
    parser.add_argument("--batch-size", type=int, default=None, help="default: 8 (tiny), 1 (--lm7b)")
    parser.add_argument("--steps", type=int, default=10, help="timed steps per block")
    parser.add_argument("--warmup", type=int, default=3, help="untimed steps before each block")
    parser.add_argument("--rounds", type=int, default=3, help="alternating (base, vittle) block pairs")
    parser.add_argument("--gradient-checkpointing", action="store_true", help="non-reentrant checkpointing")
    args = parser.parse_args(argv)

    torch.manual_seed(0)
    if args.lm7b:
        if not torch.cuda.is_available():
            print(
                "error: --lm7b needs a CUDA GPU (a 7B-shaped bf16 model); run without --lm7b for the CPU "
                "measurement on builtin:tiny-llava",
                file=sys.stderr,
            )
            return 2
        model, batch = lm7b_setup(args.layers, args.batch_size or 1, args.seq_len)
        sync, where = torch.cuda.synchronize, f"CUDA ({torch.cuda.get_device_name()}), bf16"
    else:
        model, batch = tiny_setup(args.batch_size or 8)
        sync, where = (lambda: None), f"CPU ({torch.get_num_threads()} threads), float32"
    model.train()
    if args.gradient_checkpointing:
        model.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})

    base_params = sum(p.numel() for p in model.parameters())
    base_times: list[float] = []
    vittle_times: list[float] = []
    extra = 0
    for _ in range(args.rounds):
        base_times += time_steps(model, batch, args.steps, args.warmup, sync)
        bottleneck = attach_bottleneck(model, VittleConfig())
        extra = sum(p.numel() for p in bottleneck.parameters())
        vittle_times += time_steps(model, batch, args.steps, args.warmup, sync)
        detach_bottleneck(model)

    base, vittle = statistics.median(base_times), statistics.median(vittle_times)
    tokens = batch["input_ids"].numel()
    print(f"device: {where}; batch {tuple(batch['input_ids'].shape)} ({tokens} tokens)")
    print(
        f"decoder layers: {model.config.text_config.num_hidden_layers}, hidden {model.config.text_config.hidden_size}"
    )
    print(f"bottleneck parameters: {extra:,} ({100 * extra / base_params:.2f}% of {base_params:,})")
    print(f"median step without bottleneck: {1000 * base:.1f} ms  ({len(base_times)} steps)")
    print(f"median step with bottleneck:    {1000 * vittle:.1f} ms  ({len(vittle_times)} steps)")
    print(f"step-time ratio (with / without): {vittle / base:.3f}")
    if args.lm7b:
        print(f"peak GPU memory: {torch.cuda.max_memory_allocated() / 2**30:.1f} GiB")
    return 0


if __name__ == "__main__":
    sys.exit(main())
