"""The typed recipe: one pydantic section class per recipe section, and `Recipe` that holds them.

Recipes are data. Every field has a type, a default and a description (the docs table is generated from
them). The rest of the recipe API lives beside this file and is importable from here too:
recipe_files.py (shipped recipes: find, resolve, copy), recipe_load.py (YAML + `a.b=c` overrides ->
Recipe, every problem at once; dump), recipe_reference.py (the docs table). No torch here: `vittle inspect
recipe` must start in well under a second.
"""

from __future__ import annotations

import importlib
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from vittle_cli.errors import did_you_mean

SECTIONS = ("model", "data", "bottleneck", "train", "output")
DEEPSPEED_PRESETS = ("zero2", "zero3", "zero3_offload")
# transformers.SchedulerType values, copied so validation needs no transformers import.
SCHEDULERS = (
    "linear", "cosine", "cosine_with_restarts", "polynomial", "constant", "constant_with_warmup",
    "inverse_sqrt", "reduce_lr_on_plateau", "cosine_with_min_lr", "cosine_warmup_with_min_lr",
    "warmup_stable_decay",
)  # fmt: skip
# Optimizers a recipe may name (transformers OptimizerNames values); the 8-bit and paged ones need bitsandbytes.
OPTIMIZERS = (
    "adamw_torch", "adamw_torch_fused", "adamw_8bit", "paged_adamw_8bit", "paged_adamw_32bit", "adafactor", "sgd",
)  # fmt: skip


class _Section(BaseModel):
    # coerce_numbers_to_str: `output.run_name=2024` is a name, not a type error.
    model_config = ConfigDict(extra="forbid", validate_assignment=True, coerce_numbers_to_str=True)


class ComposeSection(_Section):
    """Build a LLaVA-style model from a separate language model and vision tower."""

    language_model: str = Field(description="Hub name or path of the language model (decoder).")
    vision_tower: str = Field(description="Hub name or path of the vision encoder (e.g. a CLIP ViT).")
    projector_weights: str | None = Field(
        default=None, description="Path to pretrained projector weights (stage 1); null = random init."
    )


class ModelSection(_Section):
    """Which vision-language model to train and which of its parts learn."""

    name: str = Field(
        default="builtin:tiny-llava",
        description="Hub name, local path, or builtin:tiny-llava (built from code).",
    )
    dtype: Literal["auto", "float32", "bfloat16", "float16"] = Field(
        default="auto", description="Weight dtype when loading; auto follows train.precision."
    )
    attn_implementation: str | None = Field(
        default="sdpa",
        description="Attention kernel passed to transformers (sdpa, eager, flash_attention_2).",
    )
    revision: str | None = Field(
        default=None, description="Hub revision (branch, tag or commit) of model.name."
    )
    trust_remote_code: bool = Field(default=False, description="Allow custom model code from the hub.")
    train_vision_tower: bool = Field(
        default=False, description="Train the vision encoder (frozen in the paper)."
    )
    train_projector: bool = Field(default=True, description="Train the multimodal projector.")
    train_language_model: bool = Field(default=True, description="Train the language model.")
    compose: ComposeSection | None = Field(
        default=None,
        description="Compose a model from parts instead of loading model.name whole; null = off.",
    )


class DataSourceEntry(_Section):
    """One source of a mix in data.train / data.eval (a plain string entry means {path: ...})."""

    path: str = Field(description="File, save_to_disk folder, hub id (owner/name) or builtin:shapes.")
    weight: float = Field(
        default=1.0,
        gt=0,
        description="Share of an epoch as a multiple of the source's size (2 = each twice).",
    )
    limit: int | None = Field(default=None, ge=1, description="Use only the first N samples; null = all.")
    shuffle: bool = Field(default=False, description="Shuffle (seeded) before taking `limit` samples.")
    image_root: str | None = Field(default=None, description="This source's data.image_root; null = data's.")
    format: Literal["auto", "llava", "sharegpt", "chat"] | None = Field(
        default=None, description="This source's data.format; null = data's."
    )


class DataSection(_Section):
    """Instruction data for training and evaluation."""

    train: str | list[str | DataSourceEntry] = Field(
        default="builtin:shapes",
        description="A source (JSON/JSONL, parquet, save_to_disk folder, hub id owner/name, builtin:shapes) "
        "or a list of sources, each a path or {path, weight, limit, shuffle, image_root, format}.",
    )
    eval: str | list[str | DataSourceEntry] | None = Field(
        default=None, description="Held-out data in the same forms as data.train; null = none."
    )
    format: Literal["auto", "llava", "sharegpt", "chat"] = Field(
        default="auto", description="Sample format: auto (detected per source), llava, sharegpt or chat."
    )
    image_root: str | None = Field(
        default=None,
        description="Folder every image path must lie in (relative paths start there); null = relative to "
        "the data file, absolute paths allowed.",
    )
    max_length: int = Field(
        default=2048, ge=1, description="Maximum tokens per sample; image spans are never cut."
    )
    on_bad_sample: Literal["skip", "error"] = Field(
        default="skip", description="What to do with a sample that cannot be used (missing image, bad turns)."
    )
    max_bad_fraction: float = Field(
        default=0.01, ge=0, le=1, description="Stop (exit 1) when more than this share of samples is bad."
    )
    group_by_length: bool = Field(default=False, description="Batch samples of similar length together.")
    group_by_modality: bool = Field(
        default=False, description="Batch image and text-only samples separately (LLaVA's modality grouping)."
    )
    limit: int | None = Field(
        default=None, ge=1, description="Use only the first N samples of each source; null = all."
    )
    num_workers: int | None = Field(
        default=None, ge=0, description="DataLoader worker processes; null = picked from the CPU count."
    )
    video_fps: float = Field(
        default=2.0,
        gt=0,
        description="Frames taken per second of a video file (LLaMA-Factory's video_fps; the families that "
        "take video: Qwen2-VL, Qwen2.5-VL).",
    )
    video_maxlen: int = Field(default=128, ge=1, description="At most this many frames per video file.")
    video_max_pixels: int = Field(
        default=256 * 256,
        ge=1,
        description="Video frames larger than this many pixels are scaled down first.",
    )

    @field_validator("train", "eval", mode="before")
    @classmethod
    def _source_entries(cls, value: Any) -> Any:
        """Mapping entries become DataSourceEntry here, so a bad one is reported by its index and key."""
        if not isinstance(value, list):
            return value
        out = []
        for i, item in enumerate(value):
            if isinstance(item, dict):
                try:
                    item = DataSourceEntry.model_validate(item)
                except ValidationError as e:
                    err = e.errors()[0]
                    where = ".".join(str(p) for p in err["loc"])
                    raise ValueError(f"entry {i}: {where}: {err['msg']} (got {err.get('input')!r})") from None
            elif not isinstance(item, str | DataSourceEntry):
                raise ValueError(
                    f"entry {i}: expected a path or a mapping with path/weight/limit, got {item!r}"
                )
            out.append(item)
        return out


class BottleneckSection(_Section):
    """The Vittle bottleneck (see docs/method.md): where it sits, its prior, weights and alpha schedule."""

    enabled: bool = Field(
        default=True, description="Attach the bottleneck; false = plain instruction tuning."
    )
    layer_v: int | None = Field(
        default=None,
        description="Decoder layer (0-based) whose output the visual bottleneck transforms; "
        "null = round(0.75 * n_layers); negative counts from the end.",
    )
    layer_t: int | None = Field(
        default=None, description="Decoder layer for the text bottleneck; null = layer_v."
    )
    beta_v: float = Field(default=0.1, ge=0, description="Weight of the visual KL term.")
    beta_t: float = Field(default=0.1, ge=0, description="Weight of the text KL term.")
    prior: Literal["F", "L"] = Field(
        default="F", description="F: fixed N(0, I) prior; L: learnable Gaussian prior."
    )
    alpha_end: float = Field(
        default=0.5, ge=0, le=1, description="Final interpolation weight between h and the bottleneck sample."
    )
    schedule: Literal["sigmoid", "linear", "constant"] = Field(
        default="sigmoid", description="How alpha rises from 0 to alpha_end over the run."
    )
    sigmoid_k: float = Field(default=10.0, gt=0, description="Steepness k of the sigmoid alpha schedule.")
    sigmoid_t0: float = Field(
        default=0.5, ge=0, le=1, description="Midpoint t0 of the sigmoid schedule, as a fraction of the run."
    )
    logvar_clamp: float = Field(
        default=2.3025, gt=0, description="Clamp log sigma^2 to [-c, c] (straight-through gradient)."
    )


class LoraSection(_Section):
    """LoRA adapters (peft) instead of full fine-tuning."""

    enabled: bool = Field(default=False, description="Train LoRA adapters instead of the full weights.")
    r: int = Field(default=128, ge=1, description="LoRA rank.")
    alpha: int = Field(default=256, ge=1, description="LoRA scaling alpha (effective scale alpha / r).")
    dropout: float = Field(default=0.05, ge=0, lt=1, description="Dropout on the LoRA input.")
    targets: list[Literal["language_model", "vision_tower", "projector"]] = Field(
        default_factory=lambda: ["language_model"], description="Model parts that get LoRA adapters."
    )
    modules: list[str] | None = Field(
        default=None,
        description="Explicit module names for peft target_modules; null = all linear layers of targets.",
    )


class QLoraSection(_Section):
    """Quantise the frozen base (bitsandbytes) and train LoRA on top."""

    enabled: bool = Field(default=False, description="Load the language model quantised (needs train.lora).")
    bits: Literal[4, 8] = Field(default=4, description="Quantisation bits.")
    quant_type: Literal["nf4", "fp4"] = Field(default="nf4", description="4-bit data type.")
    double_quant: bool = Field(default=True, description="Also quantise the quantisation constants.")
    compute_dtype: Literal["bfloat16", "float16", "float32"] = Field(
        default="bfloat16", description="Dtype of the matmuls on dequantised weights."
    )


class EvalSuiteSection(_Section):
    """An eval suite run while training (clean and shifted accuracy every train.eval_steps)."""

    name: str = Field(default="shapes-shift", description="Shipped suite name or suite YAML path.")
    limit: int = Field(default=20, ge=1, description="Questions per split of the suite.")
    variants: list[str] | None = Field(
        default=None, description="Variant names to run (clean always); null = all of the suite's."
    )
    batch_size: int = Field(default=16, ge=1, description="Questions per generation batch.")


class TrainSection(_Section):
    """Optimisation, precision, scale-out and adapters."""

    epochs: float = Field(
        default=1.0, ge=0, description="Passes over the training data (ignored if max_steps)."
    )
    max_steps: int | None = Field(
        default=None, ge=1, description="Stop after this many optimizer steps; null = use epochs."
    )
    per_device_batch_size: int = Field(default=16, ge=1, description="Samples per device per forward.")
    gradient_accumulation_steps: int = Field(default=1, ge=1, description="Forwards per optimizer step.")
    lr: float = Field(default=2e-5, gt=0, description="Peak learning rate.")
    scheduler: str = Field(
        default="cosine", description="Learning-rate schedule (a transformers SchedulerType)."
    )
    warmup_ratio: float = Field(default=0.03, ge=0, le=1, description="Fraction of steps for linear warmup.")
    weight_decay: float = Field(default=0.0, ge=0, description="AdamW weight decay.")
    max_grad_norm: float = Field(default=1.0, ge=0, description="Gradient clipping norm; 0 = off.")
    seed: int = Field(default=42, description="Random seed (data order, init, bottleneck noise).")
    gradient_checkpointing: bool = Field(default=False, description="Recompute activations to save memory.")
    precision: Literal["auto", "fp32", "bf16", "fp16"] = Field(
        default="auto", description="Mixed precision; auto = bf16 where supported, else fp32."
    )
    deepspeed: str | None = Field(
        default=None, description="DeepSpeed preset (zero2, zero3, zero3_offload) or a DeepSpeed JSON path."
    )
    logging_steps: int = Field(default=10, ge=1, description="Log loss, KL terms and alpha every N steps.")
    eval_steps: int = Field(
        default=200, ge=1, description="Eval loss on data.eval and train.eval_suite every N optimizer steps."
    )
    eval_suite: EvalSuiteSection | None = Field(
        default=None,
        description="Suite evaluated while training (a name is short for {name: ...}); null = none.",
    )
    optimizer: str = Field(
        default="adamw_torch",
        description="Optimizer: adamw_torch, adamw_torch_fused, adamw_8bit, paged_adamw_8bit, paged_adamw_32bit, "
        "adafactor or sgd (8-bit/paged ones need bitsandbytes).",
    )
    torch_compile: bool = Field(default=False, description="Compile the model with torch.compile.")
    liger_kernels: bool = Field(
        default=False, description="Use Liger's fused Triton kernels (needs the liger-kernel package, CUDA)."
    )
    lora: LoraSection = Field(default_factory=LoraSection, description="LoRA settings.")
    qlora: QLoraSection = Field(default_factory=QLoraSection, description="QLoRA settings.")

    @field_validator("eval_suite", mode="before")
    @classmethod
    def _suite_name(cls, value: Any) -> Any:
        return {"name": value} if isinstance(value, str) else value

    @field_validator("scheduler")
    @classmethod
    def _known_scheduler(cls, value: str) -> str:
        if value not in SCHEDULERS:
            raise ValueError(
                f"unknown scheduler {value!r}{did_you_mean(value, SCHEDULERS)}; use one of {', '.join(SCHEDULERS)}"
            )
        return value

    @field_validator("optimizer")
    @classmethod
    def _known_optimizer(cls, value: str) -> str:
        if value not in OPTIMIZERS:
            raise ValueError(
                f"unknown optimizer {value!r}{did_you_mean(value, OPTIMIZERS)}; use one of {', '.join(OPTIMIZERS)}"
            )
        return value

    @field_validator("deepspeed")
    @classmethod
    def _preset_or_json(cls, value: str | None) -> str | None:
        if value is not None and value not in DEEPSPEED_PRESETS and not value.endswith(".json"):
            raise ValueError(
                f"{value!r} is neither a preset ({', '.join(DEEPSPEED_PRESETS)}) nor a path to a .json file"
                f"{did_you_mean(value, DEEPSPEED_PRESETS)}"
            )
        return value

    @model_validator(mode="after")
    def _consistent(self) -> TrainSection:
        problems = []
        if self.qlora.enabled and not self.lora.enabled:
            problems.append(
                "train.qlora.enabled: QLoRA trains LoRA adapters on a quantised base; "
                "set train.lora.enabled=true (or train.qlora.enabled=false)"
            )
        if self.epochs <= 0 and self.max_steps is None:
            problems.append("train.epochs: nothing to train; set train.epochs > 0 or train.max_steps > 0")
        if problems:
            # One line per problem; _describe splits them back out.
            raise ValueError("\n".join(problems))
        return self


class OutputSection(_Section):
    """Where runs are written and how often they are checkpointed."""

    dir: str = Field(default="runs", description="Parent folder of run directories.")
    run_name: str | None = Field(
        default=None,
        description="Run folder name; null = the recipe file's name (recipes/tiny.yaml -> tiny).",
    )
    save_steps: int = Field(default=500, ge=1, description="Save a checkpoint every N optimizer steps.")
    save_total_limit: int | None = Field(
        default=None, ge=1, description="Keep only the newest N checkpoints."
    )
    report_to: list[str] = Field(
        default_factory=lambda: ["tensorboard"], description="Trainer loggers (tensorboard, wandb, none)."
    )


class Recipe(_Section):
    """A complete vittle recipe. `Recipe()` holds every default."""

    model: ModelSection = Field(default_factory=ModelSection, description="The model.")
    data: DataSection = Field(default_factory=DataSection, description="The data.")
    bottleneck: BottleneckSection = Field(default_factory=BottleneckSection, description="The bottleneck.")
    train: TrainSection = Field(default_factory=TrainSection, description="Training.")
    output: OutputSection = Field(default_factory=OutputSection, description="Outputs.")


# ----------------------------------------------------------------------------------------------------------
# The rest of the recipe API, importable from here (`from vittle_cli.recipe import load_recipe`). Resolved on
# first use, as in vittle_cli/data/__init__.py, because those modules import the sections above.

_EXPORTS = {
    "recipes_dir": "vittle_cli.recipe_files",
    "shipped_recipes": "vittle_cli.recipe_files",
    "resolve_recipe_path": "vittle_cli.recipe_files",
    "copy_recipe": "vittle_cli.recipe_files",
    "load_recipe": "vittle_cli.recipe_load",
    "dump_recipe": "vittle_cli.recipe_load",
    "recipe_reference_markdown": "vittle_cli.recipe_reference",
}


def __getattr__(name: str) -> Any:
    if name not in _EXPORTS:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return getattr(importlib.import_module(_EXPORTS[name]), name)
