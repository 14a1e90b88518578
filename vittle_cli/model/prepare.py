"""Make a loaded model trainable as the recipe says: freeze by component, wrap in LoRA (peft)."""

from __future__ import annotations

from typing import TYPE_CHECKING

from torch import nn

from vittle_cli.errors import ModelError
from vittle_cli.model.components import component_of, component_roots

if TYPE_CHECKING:
    from vittle_cli.recipe import Recipe

# The decoder's attention + MLP linears (Llama, Mistral, Qwen2, Vicuna ...): LoRA's `language_model` target.
LM_LORA_SUFFIXES = ("q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj")


def set_trainable(model: nn.Module, *, vision_tower: bool, projector: bool, language_model: bool) -> None:
    """Freeze or unfreeze every parameter by component. lm_head belongs to the language model; the
    bottleneck always trains; unrecognised parameters follow the language model."""
    wanted = {
        "vision_tower": vision_tower,
        "projector": projector,
        "language_model": language_model,
        "lm_head": language_model,
        "bottleneck": True,
        "other": language_model,
    }
    for name, param in model.named_parameters():
        # 4-bit / 8-bit weights cannot take gradients; prepare_model_for_kbit_training froze them already.
        if param.dtype.is_floating_point:
            param.requires_grad_(wanted[component_of(name)])


def set_trainable_as_recipe(model: nn.Module, recipe: Recipe) -> None:
    """set_trainable with the recipe's model.train_* flags."""
    m = recipe.model
    set_trainable(
        model,
        vision_tower=m.train_vision_tower,
        projector=m.train_projector,
        language_model=m.train_language_model,
    )


def lora_target_modules(model: nn.Module, targets: list[str]) -> list[str]:
    """Full paths of the linear layers LoRA wraps for `targets` (train.lora.targets).

    language_model: the decoder's attention + MLP projections only (never lm_head, never the vision tower);
    projector / vision_tower: every linear layer inside that component.
    """
    found = []
    for name, module in model.named_modules():
        if not isinstance(module, nn.Linear):  # bitsandbytes' Linear4bit / Linear8bitLt subclass nn.Linear
            continue
        component = component_of(name)
        if component not in targets:
            continue
        if component == "language_model" and name.rpartition(".")[2] not in LM_LORA_SUFFIXES:
            continue
        found.append(name)
    return found


def apply_lora(model: nn.Module, recipe: Recipe) -> nn.Module:
    """Wrap `model` in a peft LoRA model per train.lora; the bottleneck (and the projector or vision tower
    when they train but carry no adapters) go to `modules_to_save` and train fully.

    Raises:
        ModelError: no module matched the targets.
    """
    from peft import LoraConfig, get_peft_model

    lora = recipe.train.lora
    targets = lora.modules or lora_target_modules(model, list(lora.targets))
    if not targets:
        raise ModelError(
            f"LoRA found no linear layers for train.lora.targets={list(lora.targets)} in "
            f"{type(model).__name__}; list them in train.lora.modules (e.g. [q_proj, v_proj])"
        )
    roots = component_roots(model)
    to_save = list(roots.get("bottleneck", []))
    for component, trains in (
        ("vision_tower", recipe.model.train_vision_tower),
        ("projector", recipe.model.train_projector),
    ):
        if trains and component not in lora.targets:
            # A projector inside the vision tower (Qwen2-VL's visual.merger) is already in its copy.
            to_save += [
                p for p in roots.get(component, []) if not any(p.startswith(f"{s}.") for s in to_save)
            ]
    config = LoraConfig(
        r=lora.r,
        lora_alpha=lora.alpha,
        lora_dropout=lora.dropout,
        target_modules=targets,
        modules_to_save=to_save or None,
    )
    return get_peft_model(model, config)


def prepare_for_training(model: nn.Module, recipe: Recipe) -> nn.Module:
    """Attach the bottleneck (when bottleneck.enabled), freeze by component and wrap in LoRA (when
    train.lora.enabled): the one sequence that training and `vittle train --dry-run` both run.

    The order matters: the bottleneck is attached after quantisation (done while loading) so it is never
    quantised, and before peft so `modules_to_save` trains it fully.

    Returns:
        The model to train (a PeftModel when LoRA is on).
    """
    from vittle_cli.model.attach import attach_bottleneck
    from vittle_cli.model.bottleneck import VittleConfig

    if recipe.bottleneck.enabled:
        attach_bottleneck(model, VittleConfig.from_section(recipe.bottleneck))
    set_trainable_as_recipe(model, recipe)
    if recipe.train.lora.enabled:
        model = apply_lora(model, recipe)
    return model
