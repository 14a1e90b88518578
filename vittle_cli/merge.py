"""`vittle merge`: a run / checkpoint / PEFT adapter -> one standalone Hugging Face model folder.

LoRA is folded into the base weights with peft's merge_and_unload; the base is always reloaded in float32
(never merged into 4-bit weights, whatever a QLoRA run trained on) and cast to the requested dtype after the
merge. A ZeRO-3 checkpoint without gathered weights is consolidated first (zero_to_fp32). The bottleneck stays
a separate pair of files (vittle_config.json + vittle_bottleneck.safetensors): its keys never enter the base
weights, so plain transformers loads the result as the baseline architecture. The folder is written into a
temp dir beside --out, reloaded with load_vittle_model and checked (same logits, one generation) before it
is renamed into place.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

from vittle_cli.errors import ModelError, UsageError
from vittle_cli.layout import (
    ADAPTER_CONFIG,
    MODEL_CONFIG,
    PROCESSOR_FILES,
    VITTLE_CONFIG,
    has_full_weights,
)
from vittle_cli.model.reference import classify_model_ref

# Logit agreement between the in-memory merged model and the reloaded folder, relative to the largest logit.
# In 16-bit the two are not bit-identical: `.to(dtype)` also casts the rotary inv_freq buffer, which a fresh
# from_pretrained(dtype=...) keeps in float32; on the tiny model that alone moves bf16 logits by ~2.5%.
# A lost adapter or bottleneck moves them far more.
_RELOAD_TOL = {"float32": 1e-4, "bfloat16": 5e-2, "float16": 2e-2}


@dataclass
class MergeResult:
    """What `vittle merge` did."""

    source: str
    out: str
    kind: str  # "adapter" | "zero" | "merged" (already merged: nothing done)
    dtype: str
    noop: bool = False
    base: str | None = None
    has_bottleneck: bool = False
    files: list[str] = field(default_factory=list)
    max_logit_diff: float | None = None
    sample_output: str | None = None
    notes: list[str] = field(default_factory=list)


# ----------------------------------------------------------------------------------------------------------
# What are we looking at?


def resolve_source(source: str) -> tuple[Path, str, dict]:
    """The folder to merge, its kind ("adapter", "zero": ZeRO shards only, "merged": full weights already)
    and the recipe of the run it belongs to ({} if none). A run directory resolves to its final/.

    Raises:
        UsageError: as model/reference.py's classify_model_ref, or a builtin / hub name (nothing to merge).
    """
    import yaml

    ref = classify_model_ref(source, role="SOURCE")
    if ref.folder is None:
        raise UsageError(
            f"SOURCE {source} is a {ref.kind} name; merge needs a local run, checkpoint-N or PEFT adapter "
            "directory"
        )
    if ref.kind == "model" and not has_full_weights(ref.folder):
        raise UsageError(f"SOURCE {source} has {MODEL_CONFIG} but no model weights; nothing to merge")
    recipe = {}
    if ref.recipe_file is not None and ref.recipe_file.is_file():
        recipe = yaml.safe_load(ref.recipe_file.read_text(encoding="utf-8")) or {}
    return ref.folder, {"model": "merged"}.get(ref.kind, ref.kind), recipe


def _base_name(folder: Path, base: str | None, recipe: dict) -> str:
    """--base, else the adapter's base_model_name_or_path, else the run recipe's model.name."""
    if base:
        return base
    config = folder / ADAPTER_CONFIG
    if config.is_file():
        named = json.loads(config.read_text(encoding="utf-8")).get("base_model_name_or_path")
        if named and (Path(named).expanduser().exists() or not named.startswith((".", "/", "~"))):
            return named
    named = (recipe.get("model") or {}).get("name")
    if named:
        return named
    raise UsageError(f"cannot tell the base model of {folder}; pass --base <model dir or hub id>")


# ----------------------------------------------------------------------------------------------------------
# Loading + merging


def _merge_adapter(folder: Path, base: str):
    """(merged model with its bottleneck attached, processor) from a PEFT adapter folder, in float32."""
    from vittle_cli.model.checkpoint import load_vittle_model

    model, processor = load_vittle_model(folder, base=base, dtype="float32")
    _refuse_quantised(model)
    return model.merge_and_unload(), processor


def _consolidate_zero(folder: Path, base: str | None, recipe: dict):
    """(model, processor) rebuilt from a ZeRO checkpoint's shards (zero_to_fp32), bottleneck attached.

    The architecture comes from the checkpoint's config.json (else the base model); every weight, the
    bottleneck's included, comes from the shards, and every one must fit.
    """
    import torch
    from deepspeed.utils.zero_to_fp32 import get_fp32_state_dict_from_zero_checkpoint
    from transformers import AutoConfig, AutoModelForImageTextToText

    from vittle_cli.model.attach import attach_bottleneck
    from vittle_cli.model.bottleneck import VittleConfig
    from vittle_cli.model.builtin import resolve_model_source
    from vittle_cli.model.families import load_processor
    from vittle_cli.model.safe_load import check_checkpoint_pickles

    check_checkpoint_pickles(folder)  # zero_to_fp32 unpickles the shards with weights_only=False
    state = get_fp32_state_dict_from_zero_checkpoint(str(folder))
    if any(".lora_" in k for k in state):
        raise ModelError(
            f"{folder} holds LoRA weights only as ZeRO shards; merge the run's final/ adapter instead"
        )
    has_config = (folder / MODEL_CONFIG).is_file()
    has_processor = any((folder / n).is_file() for n in PROCESSOR_FILES)
    base_name = (
        None if has_config and has_processor else resolve_model_source(_base_name(folder, base, recipe))
    )
    if has_config:
        config = AutoConfig.from_pretrained(str(folder))
        model = AutoModelForImageTextToText.from_config(config, dtype=torch.float32)
    else:
        model = AutoModelForImageTextToText.from_pretrained(base_name, dtype=torch.float32)
    if any(".vittle_bottleneck." in f".{k}" for k in state):
        if (folder / VITTLE_CONFIG).is_file():
            cfg = VittleConfig.read(folder)
        else:  # the run's recipe knows the bottleneck's hyperparameters
            cfg = VittleConfig.from_section(recipe.get("bottleneck") or {})
        attach_bottleneck(model, cfg)
    missing, unexpected = model.load_state_dict(state, strict=False)
    if missing or unexpected:
        raise ModelError(
            f"the consolidated ZeRO state of {folder} does not fit {type(model).__name__} "
            f"(missing {missing[:3]}, unexpected {unexpected[:3]}); pass the run's base with --base"
        )
    processor = load_processor(str(folder) if has_processor else base_name)
    return model, processor


def _refuse_quantised(model) -> None:
    """Merging LoRA into 4-/8-bit weights loses the adapter in rounding: never do it."""
    for module in model.modules():
        if type(module).__name__ in ("Linear4bit", "Linear8bitLt", "Params4bit"):
            raise ModelError(
                "the base model was loaded quantised; merge needs it in 16/32-bit (remove "
                "quantization_config from the base's config.json or pass an unquantised --base)"
            )


# ----------------------------------------------------------------------------------------------------------
# Writing + checking


def _probe_inputs(processor):
    """A fixed image + question that every LLaVA-style processor accepts."""
    import numpy as np
    from PIL import Image

    grid = np.indices((64, 64)).sum(axis=0) % 256
    image = Image.fromarray(np.stack([grid, grid[::-1], 255 - grid], axis=-1).astype("uint8"))
    from vittle_cli.model.prompt import render_query_prompt

    prompt = render_query_prompt(processor, "Describe the image.", has_image=True)
    return processor(images=[image], text=[prompt], return_tensors="pt")


def _logits(model, inputs):
    import torch

    with torch.no_grad():
        return model(**inputs, use_cache=False).logits.float()


def _save_folder(model, processor, tmp: Path, max_shard_size: str) -> bool:
    """Bottleneck files first, then the base weights without the bottleneck (detached), then the processor."""
    from vittle_cli.model.attach import detach_bottleneck, get_bottleneck
    from vittle_cli.model.checkpoint import save_vittle

    has_bn = get_bottleneck(model) is not None
    if has_bn:
        save_vittle(model, tmp)
        detach_bottleneck(model)
    if getattr(model.config, "quantization_config", None) is not None:
        del model.config.quantization_config  # the merged weights are plain 16/32-bit
    model.save_pretrained(tmp, max_shard_size=max_shard_size)
    processor.save_pretrained(tmp)
    return has_bn


def _verify(tmp: Path, inputs, reference, dtype: str) -> tuple[float, str]:
    """Reload the written folder, compare its logits with the in-memory model's, and generate a few tokens."""
    import torch

    from vittle_cli.model.checkpoint import load_vittle_model

    model, processor = load_vittle_model(tmp, dtype=dtype)
    got = _logits(model, inputs)
    diff = float((got - reference).abs().max())
    scale = max(1.0, float(reference.abs().max()))
    if not torch.isfinite(got).all() or diff > _RELOAD_TOL[dtype] * scale:
        raise ModelError(
            f"the merged folder does not reproduce the merged model (max logit difference {diff:.3g}); "
            "nothing was written to --out"
        )
    with torch.no_grad():
        out = model.generate(**inputs, max_new_tokens=4, do_sample=False)
    text = processor.batch_decode(out[:, inputs["input_ids"].shape[1] :], skip_special_tokens=True)[0]
    return diff, text


def _publish(tmp: Path, out: Path, overwrite: bool) -> None:
    """Rename the finished temp folder to --out; an old --out (with --overwrite) is removed only afterwards."""
    mask = os.umask(0)
    os.umask(mask)
    for path in (tmp, *tmp.rglob("*")):  # mkdtemp/mkstemp create 0700/0600; a model folder is for sharing
        path.chmod((0o777 if path.is_dir() else 0o666) & ~mask)
    old = None
    if out.exists():
        if not overwrite:
            raise UsageError(f"{out} exists; pass --overwrite to replace it")
        old = out.with_name(f".{out.name}.old-{tmp.name[-8:]}")
        out.rename(old)
    tmp.rename(out)
    if old is not None:
        shutil.rmtree(old) if old.is_dir() else old.unlink()


def run_merge(
    source: str,
    out: str,
    *,
    base: str | None = None,
    dtype: str = "fp32",
    overwrite: bool = False,
    max_shard_size: str = "5GB",
    log=print,
) -> MergeResult:
    """Merge a run / checkpoint / PEFT adapter (+ bottleneck) into a standalone model folder at `out`.

    Args:
        source: a run dir (its final/ is used), a checkpoint-N dir or a PEFT adapter dir.
        out: the folder to write; must not exist unless `overwrite`.
        base: base model of an adapter (default: the adapter's base_model_name_or_path / the run's model).
        dtype: the written weights' dtype, either spelling (fp32 / float32, bf16, fp16; auto = float32);
            the merge itself runs in float32.
        log: where progress lines go.

    Raises:
        UsageError: bad paths, an existing --out without overwrite, an unknown dtype.
        ModelError: the merged folder fails its reload check.
    """
    import torch
    from transformers.utils import logging as hf_logging

    hf_logging.disable_progress_bar()  # per-file bars drown the few lines merge prints
    from vittle_cli.model.device import resolve_dtype_name

    torch_dtype = resolve_dtype_name(dtype, device="cpu")  # the merge runs on the CPU: auto = float32
    folder, kind, recipe = resolve_source(source)
    out_path = Path(out).expanduser().resolve()
    if out_path == folder.resolve() or folder.resolve() in out_path.parents:
        raise UsageError(f"--out {out} lies inside the source {folder}; choose a folder outside it")
    result = MergeResult(source=str(folder), out=str(out_path), kind=kind, dtype=torch_dtype)
    if kind == "merged":
        result.noop = True
        result.notes.append(f"{folder} already holds full weights and no adapter: nothing to merge")
        return result
    if out_path.exists() and not overwrite:
        raise UsageError(f"{out} exists; pass --overwrite to replace it")

    if ((recipe.get("train") or {}).get("qlora") or {}).get("enabled"):
        result.notes.append("QLoRA run: the base is reloaded unquantised (float32) and merged there")
    if kind == "adapter":
        from vittle_cli.model.builtin import resolve_model_source

        result.base = _base_name(folder, base, recipe)
        log(f"merging LoRA adapter {folder} into {result.base} (float32)")
        model, processor = _merge_adapter(folder, resolve_model_source(result.base))
    else:
        log(f"consolidating ZeRO shards in {folder} (zero_to_fp32)")
        model, processor = _consolidate_zero(folder, base, recipe)
    model = model.to(getattr(torch, torch_dtype)).eval()
    inputs = _probe_inputs(processor)
    reference = _logits(model, inputs)

    out_path.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out_path.name}.merging-", dir=out_path.parent))
    try:
        log(f"writing {torch_dtype} weights (shards of at most {max_shard_size})")
        result.has_bottleneck = _save_folder(model, processor, tmp, max_shard_size)
        del model
        log("reloading the merged folder and generating a test answer")
        result.max_logit_diff, result.sample_output = _verify(tmp, inputs, reference, torch_dtype)
        _publish(tmp, out_path, overwrite)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    result.files = sorted(p.name for p in out_path.iterdir())
    return result
