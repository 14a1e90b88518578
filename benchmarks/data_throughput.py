"""Data-pipeline throughput: samples/s of vittle's training dataset for LLaVA-1.5-shaped samples.

The samples are shaped like llava_v1_5_mix665k: a 640x480 JPEG, a 336 px CLIP image processor (built in
code: CLIP's mean/std, shortest edge 336, centre crop 336, patch 14 -> 576 image tokens) and a multi-turn
conversation of about 600 tokens in all. Measured, in one process:
  (1) the per-sample pipeline in the main process (decode + resize + render + tokenise), with the
      chat template rendered once per sample (default) and with the exact method that renders every prefix
      (the ratio is the render speed-up);
  (2) a DataLoader with 1 and with 2 worker processes (samples/s per worker is what one GPU needs:
      >= 15 samples/s keeps up with a 7B step);
  (3) long text-only conversations (200 and 400 turns): seconds per sample, once-rendered vs exact.

    python benchmarks/data_throughput.py
    python benchmarks/data_throughput.py --samples 128 --workers 1 2 4
"""

from __future__ import annotations

import argparse
import json
import random
import tempfile
import time
from pathlib import Path

SENTENCES = (
    "What is the man in the picture doing with the red umbrella near the bus stop?",
    "The man is holding a red umbrella while waiting at the bus stop on a rainy street.",
    "Describe the scene in detail, including the weather, the people and the vehicles.",
    "It is raining; several people with umbrellas stand on the pavement while a white and red bus arrives.",
)


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--samples", type=int, default=64, help="samples in the data set (default 64)")
    p.add_argument("--turns", type=int, default=4, help="messages per sample (default 4: 2 exchanges)")
    p.add_argument("--workers", type=int, nargs="+", default=[1, 2], help="DataLoader worker counts")
    p.add_argument("--long-turns", type=int, nargs="+", default=[200, 400], help="long-conversation sizes")
    return p.parse_args(argv)


def llava15_processor():
    """A LLaVA-1.5-shaped processor from code: 336 px CLIP preprocessing, 576 image tokens per image."""
    from llava7b_shape import llava15_processor as shaped

    from vittle_cli.model.builtin import CHAT_TEMPLATE, build_tiny_tokenizer

    tokenizer = build_tiny_tokenizer()
    tokenizer.model_max_length = 8192
    return shaped(tokenizer, CHAT_TEMPLATE)


def write_samples(root: Path, n: int, turns: int) -> Path:
    import numpy as np
    from PIL import Image

    rng = np.random.default_rng(0)
    (root / "images").mkdir()
    rows = []
    for i in range(n):
        name = f"{i:012d}.jpg"
        Image.fromarray(rng.integers(0, 255, (480, 640, 3), dtype=np.uint8)).save(root / "images" / name)
        conv = []
        for t in range(turns):
            text = SENTENCES[t % len(SENTENCES)]
            conv.append(
                {"from": "human" if t % 2 == 0 else "gpt", "value": ("<image>\n" if t == 0 else "") + text}
            )
        rows.append({"id": f"{i:012d}", "image": name, "conversations": conv})
    (root / "data.json").write_text(json.dumps(rows))
    return root / "data.json"


def per_sample_rate(dataset, exact: bool) -> float:
    from vittle_cli.data import render

    template = dataset.processor.chat_template
    saved = render._WRAPPERS.pop(template, None)
    if exact:
        render._WRAPPERS[template] = None  # no verified wrapper: every sample takes the exact method
    try:
        dataset[0]  # warm-up (and the probe of the fast path)
        start = time.perf_counter()
        for i in range(len(dataset)):
            dataset[i]
        return len(dataset) / (time.perf_counter() - start)
    finally:
        render._WRAPPERS.pop(template, None)
        if saved is not None:
            render._WRAPPERS[template] = saved


def loader_rate(dataset, workers: int) -> float:
    from torch.utils.data import DataLoader

    from vittle_cli.data import DataCollator

    loader = DataLoader(
        dataset, batch_size=4, num_workers=workers, collate_fn=DataCollator(dataset.processor)
    )
    it = iter(loader)
    next(it)  # worker start-up is paid once per run (persistent workers), not per sample
    start, n = time.perf_counter(), 0
    for batch in it:
        n += batch["input_ids"].shape[0]
    return n / (time.perf_counter() - start)


def long_conversation_seconds(processor, turns: int) -> tuple[float, float]:
    from vittle_cli.data import render
    from vittle_cli.data.render import render_conversation

    rng = random.Random(0)
    messages = [
        {
            "role": "user" if t % 2 == 0 else "assistant",
            "content": [{"type": "text", "text": rng.choice(SENTENCES)}],
        }
        for t in range(turns)
    ]
    out = []
    for exact in (False, True):
        template = processor.chat_template
        render._WRAPPERS.pop(template, None)
        if exact:
            render._WRAPPERS[template] = None
        render_conversation(processor, messages[:4], [], 10**6)  # probe outside the timing
        start = time.perf_counter()
        render_conversation(processor, messages, [], 10**6)
        out.append(time.perf_counter() - start)
        render._WRAPPERS.pop(template, None)
    return out[0], out[1]


def main(argv=None) -> int:
    args = parse_args(argv)
    from vittle_cli.data.llava import build_dataset
    from vittle_cli.recipe import DataSection

    processor = llava15_processor()
    with tempfile.TemporaryDirectory() as tmp:
        path = write_samples(Path(tmp), args.samples, args.turns)
        data = DataSection(train=str(path), image_root=str(Path(tmp) / "images"), max_length=4096)
        dataset, _ = build_dataset(str(path), data, processor, cache_dir=Path(tmp) / "cache")
        dataset.on_bad_sample = "error"  # a benchmark of skipped samples would measure nothing
        tokens = sum(len(dataset[i]["input_ids"]) for i in range(min(8, len(dataset)))) / min(8, len(dataset))
        print(f"{len(dataset)} samples, {tokens:.0f} tokens each (576 image tokens), 640x480 JPEG -> 336 px")
        fast, exact = per_sample_rate(dataset, exact=False), per_sample_rate(dataset, exact=True)
        print(
            f"main process: {fast:.1f} samples/s (template rendered once), {exact:.1f} samples/s (every prefix)"
            f" -> {fast / exact:.2f}x"
        )
        for w in args.workers:
            rate = loader_rate(dataset, w)
            print(f"DataLoader, {w} worker(s): {rate:.1f} samples/s ({rate / w:.1f} per worker)")
    for turns in args.long_turns:
        once, every = long_conversation_seconds(processor, turns)
        print(
            f"{turns}-turn conversation: {once:.3f} s rendered once vs {every:.2f} s every prefix"
            f" -> {every / once:.0f}x"
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
