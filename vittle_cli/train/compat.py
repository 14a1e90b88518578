"""The transformers.Trainer internals vittle relies on, all in one place.

VittleTrainer overrides four private Trainer methods and, while a checkpoint is saved, swaps a fifth
(`_get_output_dir`) so the checkpoint is written under .staging/ first. None of these is public API, so each
is listed here with the parameters vittle calls it with, and `check_trainer_internals` (run when a
VittleTrainer is built, and by tests/unit/test_train_compat.py) fails loudly, naming the method, when an
installed transformers no longer matches, instead of training with a silently skipped override.
"""

from __future__ import annotations

import contextlib
import inspect
from collections.abc import Iterator
from typing import Any

from vittle_cli.errors import VittleError

# Private Trainer methods -> the parameter names (after self) vittle's overrides and calls rely on.
TRAINER_INTERNALS: dict[str, tuple[str, ...]] = {
    "_get_train_sampler": ("train_dataset",),  # override: vittle's GroupedSampler
    "_save": ("output_dir", "state_dict"),  # override: vittle files beside the weights
    "_load_from_checkpoint": ("resume_from_checkpoint", "model"),  # override: --resume with the bottleneck
    "_save_checkpoint": ("model", "trial"),  # override: staged checkpoint-N
    "_get_output_dir": ("trial",),  # swapped during _save_checkpoint (staging_output_dir)
}
# Not checked here, because its meaning is tested by training itself: VittleTrainer sets
# model_accepts_loss_kwargs = False (read by every version in range) and loss_is_scaled_for_ga = False (a class
# attribute only from transformers 5.2x on), which both make Trainer divide the loss by the accumulation steps.
# transformers.trainer_utils.rotate_checkpoints keyword arguments vittle passes.
ROTATE_KWARGS = ("output_dir", "save_total_limit", "best_model_checkpoint", "use_mtime")


def check_trainer_internals(trainer_cls: Any = None) -> list[str]:
    """One line per Trainer internal that no longer looks the way vittle uses it ([] when all match)."""
    import transformers
    from transformers import trainer_utils

    trainer_cls = trainer_cls or transformers.Trainer
    problems = []
    for name, params in TRAINER_INTERNALS.items():
        method = getattr(trainer_cls, name, None)
        if not callable(method):
            problems.append(f"Trainer.{name} is gone")
            continue
        found = tuple(inspect.signature(method).parameters)[1:]
        if found[: len(params)] != params:
            problems.append(f"Trainer.{name} takes {found}, vittle expects {params}")
    rotate = getattr(trainer_utils, "rotate_checkpoints", None)
    if rotate is None:
        problems.append("transformers.trainer_utils.rotate_checkpoints is gone")
    else:
        missing = [k for k in ROTATE_KWARGS if k not in inspect.signature(rotate).parameters]
        if missing:
            problems.append(f"rotate_checkpoints lost the arguments {missing}")
    return problems


def require_trainer_internals(trainer_cls: Any = None) -> None:
    """Raise VittleError naming every mismatch (see check_trainer_internals).

    Raises:
        VittleError: the installed transformers changed a Trainer internal vittle overrides or calls.
    """
    problems = check_trainer_internals(trainer_cls)
    if problems:
        import transformers

        raise VittleError(
            f"transformers {transformers.__version__} changed Trainer internals vittle relies on "
            f"({'; '.join(problems)}); install the transformers version pyproject.toml allows "
            "(see vittle_cli/train/compat.py)"
        )


@contextlib.contextmanager
def staging_output_dir(trainer: Any, directory: str) -> Iterator[None]:
    """Make Trainer._save_checkpoint write checkpoint-N under `directory` (it asks _get_output_dir)."""
    trainer._get_output_dir = lambda trial=None: directory  # instance attribute shadows the method
    try:
        yield
    finally:
        del trainer._get_output_dir


def rotate_checkpoints(trainer: Any, run_dir: str) -> None:
    """Delete the oldest checkpoint-N folders beyond save_total_limit (Trainer's own rule)."""
    from transformers.trainer_utils import rotate_checkpoints as rotate

    rotate(
        output_dir=run_dir,
        save_total_limit=trainer.args.save_total_limit,
        # The checkpoint a resume started from is kept too: it is the user's way back.
        best_model_checkpoint=trainer.state.best_model_checkpoint
        or getattr(trainer, "protected_checkpoint", None),
        use_mtime=False,
    )
