"""`vittle chat`: ask a model about one image, once or question by question, and, with a visual shift
named, see the answer on the shifted image beside the clean one.

Questions go through the same prompt builder and greedy engine as `vittle eval` (model/prompt.py via
eval/generate.py), so an answer here is the answer eval would score. The shift is a registered visual
perturbation (data/shift/) applied with a fixed seed, so the same command gives the same shifted image.
"""

from __future__ import annotations

import sys
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import TextIO

from vittle_cli.errors import UsageError

DEFAULT_SEVERITY = 3
SHIFT_SEED = 0  # the suite seed chat perturbs with (derive_seed mixes in the spec)


def parse_visual_shift(spec: str) -> tuple[str, int]:
    """ "snow@3" -> ("snow", 3); a bare name takes severity 3.

    Raises:
        UsageError: an unknown or non-visual perturbation, a severity outside 1-5.
    """
    from vittle_cli.data.shift.registry import get_perturbation

    name, _, level = spec.partition("@")
    try:
        severity = int(level) if level else DEFAULT_SEVERITY
    except ValueError:
        raise UsageError(
            f"--shift {spec!r}: the severity after @ must be a number 1-5, e.g. snow@3"
        ) from None
    if not 1 <= severity <= 5:
        raise UsageError(f"--shift {spec!r}: severity must be 1-5")
    get_perturbation(name, "visual")  # lists the known visual perturbations when unknown
    return name, severity


def load_image(path: str | Path):
    """The image as RGB.

    Raises:
        UsageError: no such file, or a file PIL cannot read as an image.
    """
    from PIL import Image, UnidentifiedImageError

    p = Path(path)
    if not p.is_file():
        raise UsageError(f"--image {path}: no such file; pass a PNG or JPEG file")
    try:
        with Image.open(p) as img:
            return img.convert("RGB")
    except (UnidentifiedImageError, OSError) as e:
        raise UsageError(f"--image {path} is not a readable image ({e}); pass a PNG or JPEG file") from None


def shift_image(image, spec: str):
    """`image` under the visual shift `spec` (name@severity), deterministically."""
    from vittle_cli.data.shift.registry import derive_seed
    from vittle_cli.data.shift.visual import perturb_image

    name, severity = parse_visual_shift(spec)
    return perturb_image(image, name, severity, derive_seed(SHIFT_SEED, f"{name}@{severity}", "chat"))


def questions_from(stream: TextIO, ask: bool) -> Iterator[str]:
    """Non-empty lines of `stream` until EOF; with `ask` (a terminal) a prompt before each."""
    while True:
        if ask:
            print("question> ", end="", flush=True)
        line = stream.readline()
        if not line:
            return
        if line.strip():
            yield line.strip()


def run_chat(
    model: str,
    image: str | Path,
    *,
    question: str | None = None,
    shift: str | None = None,
    base: str | None = None,
    device: str = "auto",
    dtype: str = "auto",
    max_new_tokens: int = 32,
    stdin: TextIO | None = None,
    console=None,
) -> list[dict]:
    """Answer `question`, or each line of `stdin` until EOF; return [{question, clean, shifted?}].

    Raises:
        UsageError: bad --image / --shift / --max-new-tokens or model reference (before loading).
        ModelError: a model that fails to load.
    """
    from rich.console import Console

    from vittle_cli.model.device import resolve_device_dtype
    from vittle_cli.model.reference import loadable_model_ref

    console = console or Console()
    if max_new_tokens < 1:
        raise UsageError(f"--max-new-tokens must be at least 1 (got {max_new_tokens})")
    loadable_model_ref(model)
    clean = load_image(image)
    shifted = shift_image(clean, shift) if shift else None
    device, dtype = resolve_device_dtype(device, dtype)
    mdl, processor = _load(model, base, dtype, device, console)
    stream = stdin if stdin is not None else sys.stdin
    asked: Iterable[str] = [question] if question else questions_from(stream, ask=stream.isatty())
    out = []
    for q in asked:
        answers = _answer(mdl, processor, q, clean, shifted, max_new_tokens)
        out.append({"question": q, "clean": answers[0], **({"shifted": answers[1]} if shifted else {})})
        lines = [f"Q: {q}", f"A (clean): {answers[0]}"] + ([f"A ({shift}): {answers[1]}"] if shifted else [])
        for line in lines:  # model text is not rich markup; long answers stay on one line
            console.print(line, markup=False, highlight=False, soft_wrap=True)
    return out


def _load(model: str, base, dtype: str, device: str, console):
    from vittle_cli.model.attach import get_bottleneck
    from vittle_cli.model.checkpoint import load_vittle_model

    mdl, processor = load_vittle_model(model, base=base, dtype=dtype, device=device)
    bn = get_bottleneck(mdl)
    how = (
        f"Vittle bottleneck on (prior {bn.config.prior})" if bn is not None else "no bottleneck (plain model)"
    )
    console.print(f"{model}: {how}; {dtype} on {device}", markup=False, highlight=False, soft_wrap=True)
    return mdl, processor


def _answer(model, processor, text: str, clean, shifted, max_new_tokens: int) -> list[str]:
    from vittle_cli.eval.generate import GenerationRequest, generate_answers

    requests = [GenerationRequest(image=img, text=text) for img in (clean, shifted) if img is not None]
    return generate_answers(model, processor, requests, max_new_tokens=max_new_tokens, reuse_prefix=False)
