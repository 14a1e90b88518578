"""Evaluation while training: eval loss on data.eval (Trainer's own eval loop) and train.eval_suite's clean
and shifted accuracy, both every train.eval_steps, logged like the training rows (metrics.jsonl,
TensorBoard, the progress display, loss.png)."""

from __future__ import annotations

import io
import logging
from pathlib import Path

from transformers import TrainerCallback

logger = logging.getLogger(__name__)
SUITE_DIR = "eval_suite"  # run_dir/eval_suite/step-N/ holds each in-training evaluation's results


def eval_arguments(recipe, has_eval_dataset: bool) -> dict:
    """TrainingArguments for the eval-loss loop (nothing when there is no data.eval)."""
    if not has_eval_dataset:
        return {}
    return {
        "eval_strategy": "steps",
        "eval_steps": recipe.train.eval_steps,
        "per_device_eval_batch_size": recipe.train.per_device_batch_size,
        "prediction_loss_only": True,  # the loss is all that is logged: never gather vocabulary logits
    }


class SuiteEvalCallback(TrainerCallback):
    """Runs train.eval_suite on the live model every eval_steps (and at the last step) and logs
    suite_clean_accuracy / suite_shift_accuracy (+ F1) through the trainer. Set `.trainer` after building it.

    Single process only: generation under ZeRO-3 / DDP needs every rank in step, which the eval engine
    does not coordinate; with more processes the callback warns once and does nothing.
    """

    def __init__(self, section, eval_steps: int, run_dir: Path, processor, world_size: int = 1) -> None:
        self.section = section
        self.eval_steps = eval_steps
        self.run_dir = Path(run_dir)
        self.processor = processor
        self.trainer = None
        self.enabled = world_size == 1
        if not self.enabled:
            logger.warning(
                "train.eval_suite runs in single-process training only; skipped with %d", world_size
            )

    def _evaluate(self, model, step: int) -> dict[str, float]:
        import torch
        from rich.console import Console

        from vittle_cli.model.evaluators import get_evaluator

        evaluate = get_evaluator("suite")
        was_training = model.training
        model.eval()
        try:
            with torch.no_grad():
                quiet = Console(file=io.StringIO())  # the training progress display owns the terminal
                scores = evaluate(
                    model, self.processor, self.section, self.run_dir / SUITE_DIR / f"step-{step}", quiet
                )
        finally:
            model.train(was_training)
        return {f"suite_{k}": v for k, v in scores.items()}

    def on_step_end(self, args, state, control, model=None, **kwargs):
        step = state.global_step
        due = step % self.eval_steps == 0 or step >= state.max_steps
        if not (self.enabled and due and model is not None and self.trainer is not None):
            return control
        should_log = control.should_log  # Trainer.log clears it, which would drop this step's training row
        self.trainer.log(self._evaluate(model, step))
        control.should_log = should_log
        return control
