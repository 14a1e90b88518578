"""VittleTrainer: transformers.Trainer with the Vittle objective, vittle logging and vittle checkpoints.

What it changes, and why:
- compute_loss: CE (token mean over this micro-batch) + beta_v * KL_v + beta_t * KL_t via vittle_loss.
- log: adds ce / kl_v / kl_t / alpha / tokens_per_s (averaged over micro-batches and ranks) to every
  training log row, so metrics.jsonl, TensorBoard and the progress display all see them.
- _save: keeps vittle_bottleneck.* keys out of the base weight files and writes vittle_config.json +
  vittle_bottleneck.safetensors next to them, in every checkpoint and in final/.
- _save_checkpoint: writes checkpoint-N under .staging/ and renames it into place, so an interrupted save
  never leaves a half-written checkpoint-N that `--resume latest` would pick.
- _load_from_checkpoint: --resume restores the base weights through from_pretrained (transformers 5.x
  saves LLaVA in its original key layout, which Trainer's raw load silently misses) and the bottleneck.
- a blank-image pass for text-only batches under ZeRO-3 / multi-process, so all ranks run the same modules.
"""

from __future__ import annotations

import logging
import os
import shutil
from typing import Any

import torch
from transformers import Trainer, TrainerCallback
from transformers.trainer_callback import PrinterCallback, ProgressCallback
from transformers.trainer_utils import PREFIX_CHECKPOINT_DIR
from transformers.utils import logging as hf_logging

from vittle_cli.errors import ModelError
from vittle_cli.layout import STAGING_DIR
from vittle_cli.model.attach import BOTTLENECK_ATTR, get_bottleneck
from vittle_cli.model.checkpoint import load_vittle_weights, save_vittle, strip_vittle_keys
from vittle_cli.model.loss import vittle_loss
from vittle_cli.train.compat import require_trainer_internals, rotate_checkpoints, staging_output_dir
from vittle_cli.train.metrics import LossMeter

logger = logging.getLogger(__name__)


def _unwrap_peft(model: torch.nn.Module) -> torch.nn.Module:
    """The transformers model under a peft wrapper (or the model itself)."""
    return model.get_base_model() if hasattr(model, "get_base_model") else model


def _tensor_sum(obj: Any) -> torch.Tensor | None:
    """Sum of every floating tensor inside a model output / tuple / dict (None if there is none)."""
    if torch.is_tensor(obj):
        return obj.float().sum() if obj.is_floating_point() else None
    items = obj.values() if isinstance(obj, dict) else obj if isinstance(obj, (tuple, list)) else []
    parts = [s for s in (_tensor_sum(o) for o in items) if s is not None]
    return torch.stack(parts).sum() if parts else None


class _MeterClock(TrainerCallback):
    """Starts the tokens/s window when training starts (not when the trainer was built)."""

    def __init__(self, meter: LossMeter) -> None:
        self.meter = meter

    def on_train_begin(self, args, state, control, **kwargs):
        self.meter.restart_clock()


class VittleTrainer(Trainer):
    """Trainer for one Vittle (or baseline) run. Extra keyword: `train_sampler` (a Sampler to use instead
    of the default random one, e.g. vittle's GroupedSampler); `zero3` (whether DeepSpeed ZeRO-3 is on)."""

    def __init__(self, *args, train_sampler=None, zero3: bool = False, **kwargs):
        require_trainer_internals()  # the overrides below would be silently skipped otherwise
        super().__init__(*args, **kwargs)
        # CE is the token mean of each micro-batch (METHOD.md §1); Trainer divides by the accumulation steps.
        self.model_accepts_loss_kwargs = False
        self.loss_is_scaled_for_ga = False
        self.meter = LossMeter()
        self._train_sampler = train_sampler
        self._zero3 = zero3
        self._dummy_pending = False
        self._dummy_sum: torch.Tensor | None = None
        self._dummy_hook = self._install_dummy_vision_hook()
        self.protected_checkpoint: str | None = None  # never rotated away (set for --resume)
        # vittle shows its own rich progress and writes its own log lines.
        self.remove_callback(PrinterCallback)
        self.remove_callback(ProgressCallback)
        self.add_callback(_MeterClock(self.meter))

    # ---- data ----------------------------------------------------------------------------------------
    def _get_train_sampler(self, train_dataset=None):
        if self._train_sampler is not None:
            return self._train_sampler
        return super()._get_train_sampler(train_dataset)

    # ---- loss ----------------------------------------------------------------------------------------
    def compute_loss(self, model, inputs, return_outputs: bool = False, num_items_in_batch=None):
        """CE from the model (labels in `inputs`) plus the bottleneck's KL terms; logs the parts."""
        self._dummy_pending = self._dummy_hook is not None and "pixel_values" not in inputs
        try:
            outputs = model(**inputs)
        finally:
            self._dummy_pending = False
        ce = outputs.loss
        bottleneck = get_bottleneck(self.model)
        if bottleneck is not None and bottleneck.training:
            parts = vittle_loss(ce, bottleneck, inputs["labels"], inputs["attention_mask"])
            loss, kl_v, kl_t = parts.loss, parts.kl_v, parts.kl_t
        else:
            loss, kl_v, kl_t = ce, 0.0, 0.0
        if self._dummy_sum is not None:  # the blank-image pass could not join the decoder input
            loss = loss + self._dummy_sum
            self._dummy_sum = None
        if model.training:
            self.meter.add(ce, kl_v, kl_t, inputs["attention_mask"].sum())
        return (loss, outputs) if return_outputs else loss

    def _install_dummy_vision_hook(self):
        """Give text-only batches a pass through the vision tower + projector on a blank image (the LLaVA
        reference trick), so every rank runs the same modules in the same order.

        Under ZeRO-3 each module's forward gathers its parameters collectively, and under DDP every
        trainable parameter must get a gradient; one rank with a text-only batch breaks both. The pass
        runs in a pre-hook of the language model, i.e. exactly where LLaVA runs the image features
        (after the token embedding, before the decoder), and 0 * sum(features) is added to the decoder
        input. Returns the hook handle, or None when nothing needs it.
        """
        base = _unwrap_peft(self.model)
        cfg = getattr(base, "config", None)
        vision_cfg = getattr(cfg, "vision_config", None)
        inner = getattr(base, "model", base)
        tower = getattr(inner, "vision_tower", None)
        if vision_cfg is None or tower is None or not hasattr(base, "get_decoder"):
            return None
        parts = [tower, getattr(inner, "multi_modal_projector", None)]
        trainable = any(p.requires_grad for m in parts if m is not None for p in m.parameters())
        if not (self._zero3 or (trainable and self.args.world_size > 1)):
            return None
        size = getattr(vision_cfg, "image_size", None)
        if getattr(cfg, "model_type", None) != "llava" or not isinstance(size, int):
            logger.warning(
                "model type %s: no blank-image pass for text-only batches; under ZeRO-3 or DDP a rank with "
                "a text-only batch may stall while the others have images",
                getattr(cfg, "model_type", "?"),
            )
            return None
        channels = getattr(vision_cfg, "num_channels", 3)

        def run_blank_image(module, args, kwargs):
            if not self._dummy_pending:
                return None
            self._dummy_pending = False
            ref = next(tower.parameters())
            blank = torch.zeros(1, channels, size, size, dtype=ref.dtype, device=self.args.device)
            feats = inner.get_image_features(
                pixel_values=blank,
                vision_feature_layer=cfg.vision_feature_layer,
                vision_feature_select_strategy=cfg.vision_feature_select_strategy,
            )
            # Only the projected features, as in the real path: summing other outputs (e.g. CLIP's pooled
            # post-layernorm state) would run backward through modules the image path never reaches.
            total = _tensor_sum(getattr(feats, "pooler_output", feats))
            if total is None:
                return None
            zero = 0.0 * total
            embeds = kwargs.get("inputs_embeds")
            if not torch.is_tensor(embeds):
                self._dummy_sum = zero
                return None
            # Feed the decoder input through the blank features, as image features are fed: backward then
            # also runs through the first layer's frozen weights (LoRA) exactly as on the image ranks.
            return args, {**kwargs, "inputs_embeds": embeds + zero.to(embeds.dtype)}

        return base.get_decoder().register_forward_pre_hook(run_blank_image, with_kwargs=True)

    # ---- logging -------------------------------------------------------------------------------------
    def log(self, logs: dict[str, float], start_time: float | None = None) -> None:
        """Add the loss parts, alpha and tokens/s to every training log row (collective: all ranks)."""
        if "loss" in logs:
            parts = self.meter.drain(lambda t: self.accelerator.reduce(t, reduction="sum"), self.args.device)
            if parts is not None:
                bottleneck = get_bottleneck(self.model)
                if bottleneck is None:
                    parts.pop("kl_v")
                    parts.pop("kl_t")
                else:
                    parts["alpha"] = float(bottleneck.alpha)
                logs.update(parts)
        super().log(logs, start_time)

    # ---- saving --------------------------------------------------------------------------------------
    def _save(self, output_dir: str | None = None, state_dict: dict | None = None) -> None:
        """Save model/adapter + processor (Trainer's way) and the vittle files beside them."""
        output_dir = output_dir if output_dir is not None else self.args.output_dir
        # transformers' per-save "Writing model shards" bars would break vittle's progress display.
        bars = hf_logging.is_progress_bar_enabled()
        hf_logging.disable_progress_bar()
        try:
            self._save_with_vittle(output_dir, state_dict)
        finally:
            if bars:
                hf_logging.enable_progress_bar()

    def _save_with_vittle(self, output_dir: str, state_dict: dict | None) -> None:
        bottleneck = get_bottleneck(self.model)
        if bottleneck is None:
            return super()._save(output_dir, state_dict=state_dict)
        if state_dict is None and self.args.should_save:
            state_dict = self.model.state_dict()
        is_peft = hasattr(self.model, "peft_config")
        # A PEFT adapter legitimately carries the bottleneck (modules_to_save); base weights never do.
        base_state = state_dict if is_peft or state_dict is None else strip_vittle_keys(state_dict)
        super()._save(output_dir, state_dict=base_state)
        if self._zero3:
            # The consolidated dict exists on rank 0 only (and is empty when 16-bit gathering is off), so
            # every rank gathers the small bottleneck itself; rank 0 writes.
            save_vittle(self.model, output_dir)
        elif self.args.should_save:
            save_vittle(self.model, output_dir, state_dict=state_dict)

    def _load_from_checkpoint(self, resume_from_checkpoint: str, model=None) -> None:
        """Restore model weights for --resume, including the bottleneck (kept in its own file).

        transformers 5.x saves LLaVA-style models in their original key layout, which Trainer's raw
        load_state_dict cannot map back (every key is silently missed), so plain models are re-read with
        from_pretrained and copied over. PEFT adapters load the usual way.
        """
        from transformers import PreTrainedModel

        model = model if model is not None else self.model
        if isinstance(model, PreTrainedModel) and not self.is_fsdp_enabled:
            ref = next(model.parameters())
            fresh = type(model).from_pretrained(resume_from_checkpoint, dtype=ref.dtype)
            result = model.load_state_dict(fresh.state_dict(), strict=False)
            del fresh
            missing = [k for k in result.missing_keys if not k.startswith(BOTTLENECK_ATTR + ".")]
            if missing or result.unexpected_keys:
                raise ModelError(
                    f"checkpoint {resume_from_checkpoint} does not fit this model (missing {missing[:3]}, "
                    f"unexpected {result.unexpected_keys[:3]}); resume with the recipe that wrote it"
                )
        else:
            super()._load_from_checkpoint(resume_from_checkpoint, model)
        if get_bottleneck(model) is not None:
            load_vittle_weights(model, resume_from_checkpoint)

    def _save_checkpoint(self, model, trial) -> None:
        """Trainer's checkpoint, written under .staging/ and renamed to checkpoint-N when complete."""
        run_dir = self.args.output_dir
        staging = os.path.join(run_dir, STAGING_DIR)
        name = f"{PREFIX_CHECKPOINT_DIR}-{self.state.global_step}"
        with staging_output_dir(self, staging):
            super()._save_checkpoint(model, trial)
        self.accelerator.wait_for_everyone()
        if self.args.should_save:
            final = os.path.join(run_dir, name)
            if os.path.isdir(final):  # the same step saved again (e.g. re-running after a resume)
                shutil.rmtree(final)
            os.replace(os.path.join(staging, name), final)
            shutil.rmtree(staging, ignore_errors=True)
            rotate_checkpoints(self, run_dir)
        self.accelerator.wait_for_everyone()
