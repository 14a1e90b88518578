"""The typed recipe: pydantic sections, YAML loading with `a.b=c` overrides, validation, dump.

Recipes are data. Every field has a type, a default and a description (the docs table is generated from
them). `load_recipe` reports every problem at once as one RecipeError, each line naming its dotted key.
No torch here: `vittle inspect recipe` must start in well under a second.
"""

from __future__ import annotations

import difflib
import os
import re
import types
import typing
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from vittle_cli.errors import RecipeError, UsageError
from vittle_cli.fileio import write_text_atomic

SECTIONS = ("model", "data", "bottleneck", "train", "output")
DEEPSPEED_PRESETS = ("zero2", "zero3", "zero3_offload")
# transformers.SchedulerType values, copied so validation needs no transformers import.
SCHEDULERS = (
    "linear", "cosine", "cosine_with_restarts", "polynomial", "constant", "constant_with_warmup",
    "inverse_sqrt", "reduce_lr_on_plateau", "cosine_with_min_lr", "cosine_warmup_with_min_lr",
    "warmup_stable_decay",
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
    """The Vittle bottleneck (see METHOD.md): where it sits, its prior, weights and alpha schedule."""

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
                f"unknown scheduler {value!r}{_did_you_mean(value, SCHEDULERS)}; use one of {', '.join(SCHEDULERS)}"
            )
        return value

    @field_validator("deepspeed")
    @classmethod
    def _preset_or_json(cls, value: str | None) -> str | None:
        if value is not None and value not in DEEPSPEED_PRESETS and not value.endswith(".json"):
            raise ValueError(
                f"{value!r} is neither a preset ({', '.join(DEEPSPEED_PRESETS)}) nor a path to a .json file"
                f"{_did_you_mean(value, DEEPSPEED_PRESETS)}"
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
        default=None, description="Run folder name; null = derived from the recipe and time."
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
# Finding recipes


def recipes_dir() -> Path:
    """The repository's shipped recipes/ folder."""
    return Path(__file__).resolve().parent.parent / "recipes"


def _is_recipe_file(path: Path, root: Path) -> bool:
    # Eval suite definitions live in recipes/suites/ and are not training recipes.
    return path.suffix == ".yaml" and path.relative_to(root).parts[0] != "suites"


def _leading_comment(path: Path) -> str:
    """The recipe's leading comment as one line, without the `# vittle ...` command line: what the recipe
    does first, its `Hardware: ...` sentence last (so a shortened listing still says what it is)."""
    lines = []
    for line in path.read_text(encoding="utf-8").splitlines():
        if not line.startswith("#"):
            break
        text = line.lstrip("#").strip()
        if text and not text.startswith("vittle "):
            lines.append(text)
    sentences = re.split(r"(?<!e\.g\.)(?<!i\.e\.)(?<=\.)\s+(?=[A-Z])", " ".join(lines))
    sentences.sort(key=lambda text: text.startswith("Hardware:"))  # stable: keeps the order otherwise
    return " ".join(sentences)


def shipped_recipes() -> list[tuple[str, Path, str]]:
    """Shipped recipes as (name, path, description); name is the path under recipes/ without `.yaml`."""
    root = recipes_dir()
    if not root.is_dir():
        return []
    found = sorted(p for p in root.rglob("*.yaml") if _is_recipe_file(p, root))
    return [(p.relative_to(root).with_suffix("").as_posix(), p, _leading_comment(p)) for p in found]


def resolve_recipe_path(recipe: str | os.PathLike) -> Path:
    """Turn a path or a shipped name (`tiny`) into the recipe file's path.

    Raises:
        RecipeError: neither a file nor a shipped name (with a did-you-mean among shipped names).
    """
    path = Path(recipe)
    if path.is_file():
        return path
    shipped = {name: p for name, p, _ in shipped_recipes()}
    if str(recipe) in shipped:
        return shipped[str(recipe)]
    hint = _did_you_mean(str(recipe), list(shipped)) or (
        f"; shipped recipes: {', '.join(shipped)}" if shipped else ""
    )
    raise RecipeError(
        f"recipe file not found: {recipe}{hint} (pass a YAML path or a name from `vittle recipes ls`)"
    )


def copy_recipe(name: str, dest: str | os.PathLike, overwrite: bool = False) -> Path:
    """Copy the shipped recipe `name` to `dest` (a file, or a folder that gets `<name>.yaml`).

    Raises:
        UsageError: unknown name, or `dest` exists and `overwrite` is false.
    """
    shipped = {n: p for n, p, _ in shipped_recipes()}
    if name not in shipped:
        raise UsageError(
            f"no shipped recipe named {name!r}{_did_you_mean(name, list(shipped))}; see `vittle recipes ls`"
        )
    target = Path(dest)
    if target.is_dir():
        target = target / Path(name).with_suffix(".yaml").name
    if target.exists() and not overwrite:
        raise UsageError(f"{target} already exists; pass --overwrite to replace it or choose another path")
    write_text_atomic(target, shipped[name].read_text(encoding="utf-8"))
    return target


# ----------------------------------------------------------------------------------------------------------
# Loading, overrides, problems


def load_recipe(path: str | os.PathLike, overrides: list[str] | None = None) -> Recipe:
    """Load a recipe (path or shipped name), apply `a.b=c` overrides and validate.

    Override values are parsed as YAML (`1e-4`, `true`, `[a,b]`, `null`); string fields keep the text as given.

    Raises:
        RecipeError: every problem found (missing file, YAML syntax, bad override, unknown key, wrong type,
            inconsistent values), one line each naming its dotted key.
    """
    problems: list[str] = []
    data: dict[str, Any] = {}
    source = str(path)
    try:
        file = resolve_recipe_path(path)
    except RecipeError as e:
        problems.extend(e.problems)
        file = None
    if file is not None:
        data = _read_yaml(file, problems)
    from_override: dict[str, str] = {}
    for item in overrides or []:
        key = _apply_override(data, item, problems)
        if key is not None:
            from_override[key] = item
    recipe = None
    if file is not None or data:
        try:
            recipe = Recipe.model_validate(data)
        except ValidationError as e:
            problems.extend(line for err in e.errors() for line in _describe(err, from_override))
    if problems or recipe is None:
        raise RecipeError(problems, source=source)
    return recipe


def _read_yaml(file: Path, problems: list[str]) -> dict[str, Any]:
    try:
        loaded = yaml.safe_load(file.read_text(encoding="utf-8"))
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None)
        where = f"line {mark.line + 1}, column {mark.column + 1}" if mark else "unknown line"
        reason = getattr(e, "problem", None) or str(e).splitlines()[0]
        problems.append(f"YAML syntax error at {where}: {reason}; fix the YAML in {file}")
        return {}
    except OSError as e:
        problems.append(f"cannot read {file}: {e.strerror}")
        return {}
    if loaded is None:
        return {}
    if isinstance(loaded, dict):
        # An empty section (`train:` with nothing under it) means its defaults.
        return {key: value for key, value in loaded.items() if not (key in SECTIONS and value is None)}
    problems.append(
        f"the recipe must be a mapping with sections {', '.join(SECTIONS)}, got {type(loaded).__name__}"
    )
    return {}


def _apply_override(data: dict[str, Any], item: str, problems: list[str]) -> str | None:
    """Set `a.b=c` in `data`; return the dotted key, or None after recording a problem."""
    key, sep, raw = item.partition("=")
    key = key.strip()
    parts = key.split(".")
    if not sep or not key or any(not p for p in parts):
        problems.append(f"bad override {item!r}: expected key=value, e.g. train.lr=1e-4")
        return None
    node = data
    for depth, part in enumerate(parts[:-1]):
        where = tuple(parts[: depth + 1])
        annotation = _annotation_at(where)
        child = node.get(part)
        child = {} if child is None else child
        if not isinstance(child, dict) or (annotation is not None and _section_class(annotation) is None):
            problems.append(f"bad override {item!r}: {'.'.join(where)} is a value, not a section")
            return None
        node[part] = child
        node = child
    node[parts[-1]] = _parse_value(raw, _annotation_at(tuple(parts)))
    return key


def _parse_value(raw: str, annotation: Any) -> Any:
    """Parse an override value as YAML, guided by the field's type where it is known."""
    allowed = _plain_types(annotation)
    if raw.strip() in ("null", "~", ""):
        return None
    if allowed and allowed <= {str, type(None)}:
        return raw  # `run_name=yes` or `revision=1234abc` is text, not a bool or a number
    try:
        value = yaml.safe_load(raw)
    except yaml.YAMLError:
        return raw  # validation reports it against the field's type
    # YAML 1.1 reads 1e-4 as the string '1e-4'; pydantic's lax mode turns it into a float for float fields
    # (from files and overrides alike), and still rejects 'oops'.
    if list in allowed and str not in allowed and value is not None and not isinstance(value, list):
        return [value]  # `output.report_to=none` means [none]
    if list in allowed and str in allowed and not isinstance(value, list):
        return raw  # `data.train=a.json` stays the text given; `data.train=[a.json,b.json]` is a list
    return value


def _plain_types(annotation: Any) -> set[type]:
    """The concrete types an annotation admits (Literal values' types; list as list); empty if unknown."""
    if annotation is None:
        return set()
    origin = typing.get_origin(annotation)
    if origin in (typing.Union, types.UnionType):
        return set().union(*(_plain_types(a) for a in typing.get_args(annotation)))
    if origin is Literal:
        return {type(a) for a in typing.get_args(annotation)}
    if origin is not None:
        return {origin}
    return {annotation} if isinstance(annotation, type) else set()


def _section_class(annotation: Any) -> type[BaseModel] | None:
    for candidate in (annotation, *typing.get_args(annotation)):
        if isinstance(candidate, type) and issubclass(candidate, BaseModel):
            return candidate
    return None


def _model_at(loc: tuple) -> type[BaseModel] | None:
    """The section class found by walking `loc` from Recipe, or None if loc leaves the schema."""
    cls: type[BaseModel] | None = Recipe
    for part in loc:
        if cls is None or part not in cls.model_fields:
            return None
        cls = _section_class(cls.model_fields[part].annotation)
    return cls


def _annotation_at(loc: tuple) -> Any:
    parent = _model_at(loc[:-1])
    if parent is None or loc[-1] not in parent.model_fields:
        return None
    return parent.model_fields[loc[-1]].annotation


def _did_you_mean(word: str, choices: typing.Iterable[str]) -> str:
    close = difflib.get_close_matches(word, list(choices), n=1, cutoff=0.6)
    return f" (did you mean {close[0]!r}?)" if close else ""


_EXPECTED = {
    "float_parsing": "a number", "float_type": "a number", "finite_number": "a finite number",
    "int_parsing": "an integer", "int_type": "an integer", "int_from_float": "an integer",
    "bool_parsing": "true or false", "bool_type": "true or false",
    "string_type": "a string", "list_type": "a list", "model_type": "a mapping",
    "model_attributes_type": "a mapping", "dict_type": "a mapping",
}  # fmt: skip
_BOUNDS = {"greater_than_equal": ">=", "greater_than": ">", "less_than_equal": "<=", "less_than": "<"}


def _describe(err: dict[str, Any], from_override: dict[str, str]) -> list[str]:
    """Fix-it lines for one pydantic error, each naming its dotted key."""
    loc = tuple(str(p) for p in err["loc"])
    key = ".".join(loc) or "recipe"
    kind, given, ctx = err["type"], err.get("input"), err.get("ctx") or {}
    if kind == "extra_forbidden":
        parent = _model_at(loc[:-1])
        known = list(parent.model_fields) if parent else []
        hint = _did_you_mean(loc[-1], known) or (f"; known keys here: {', '.join(known)}" if known else "")
        line = f"{key}: unknown key{hint}"
    elif kind == "missing":
        line = f"{key}: required, but not given; add it to the recipe"
    elif kind == "literal_error":
        line = f"{key}: expected one of {ctx.get('expected', '')}, got {given!r}"
    elif kind in _BOUNDS:
        limit = next(iter(ctx.values()), "?")
        line = f"{key}: must be {_BOUNDS[kind]} {limit}, got {given!r}"
    elif kind == "value_error" and _model_at(loc) is not None:
        # A section validator: its lines already name their keys.
        return str(ctx.get("error", err["msg"])).splitlines()
    elif kind == "value_error":
        line = f"{key}: {ctx.get('error', err['msg'])}"
    elif kind in _EXPECTED:
        line = f"{key}: expected {_EXPECTED[kind]}, got {given!r}"
    else:
        line = f"{key}: {err['msg'][0].lower()}{err['msg'][1:]}, got {given!r}"
    # Name the override behind a problem, where exactly one override set this key (or lies under it).
    origin = [item for k, item in from_override.items() if k == key or k.startswith(key + ".")]
    return [f"{line} (from override {origin[0]!r})" if len(origin) == 1 else line]


# ----------------------------------------------------------------------------------------------------------
# Dump and reference


def dump_recipe(recipe: Recipe) -> str:
    """The resolved recipe as YAML, sections and keys in schema order (loads back to an equal Recipe)."""
    return yaml.safe_dump(
        recipe.model_dump(mode="json"), sort_keys=False, default_flow_style=False, width=110
    )


def _type_name(annotation: Any) -> str:
    origin = typing.get_origin(annotation)
    args = typing.get_args(annotation)
    if origin in (typing.Union, types.UnionType):
        return " or ".join(_type_name(a) for a in args)
    if origin is Literal:
        return " / ".join(str(a) for a in args)
    if origin is list:
        return f"list of ({_type_name(args[0])})" if args else "list"
    if annotation is type(None):
        return "null"
    return getattr(annotation, "__name__", str(annotation))


def _default_text(field: Any) -> str:
    if field.is_required():
        return "(required)"
    value = field.get_default(call_default_factory=True)
    if isinstance(value, BaseModel):
        return "(section)"
    return yaml.safe_dump(value, default_flow_style=True, width=1000).strip().removesuffix("...").strip()


def recipe_reference_markdown() -> str:
    """The recipe reference as Markdown tables (one per section), generated from the schema."""
    out: list[str] = []

    def table(prefix: str, cls: type[BaseModel]) -> None:
        out.append(f"### `{prefix}`\n\n{cls.__doc__}\n")
        out.append("| key | type | default | description |")
        out.append("|---|---|---|---|")
        nested = []
        for name, field in cls.model_fields.items():
            sub = _section_class(field.annotation)
            if sub is not None:
                nested.append((f"{prefix}.{name}", sub))
                if sub is field.annotation:
                    continue  # an always-present subsection: only its own table
            type_text = f"section ({sub.__name__}) or null" if sub else _type_name(field.annotation)
            cells = [f"`{prefix}.{name}`", type_text, f"`{_default_text(field)}`", field.description or ""]
            out.append("| " + " | ".join(c.replace("|", "\\|") for c in cells) + " |")
        out.append("")
        for sub_prefix, sub in nested:
            table(sub_prefix, sub)

    for section in SECTIONS:
        table(section, _section_class(Recipe.model_fields[section].annotation))
    return "\n".join(out).rstrip() + "\n"
