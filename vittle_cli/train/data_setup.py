"""The data side of a training run: datasets after the pre-scan, the bad-data and suite-eval callbacks, and
how many DataLoader workers to start."""

from __future__ import annotations

import copy
import logging
from pathlib import Path

from vittle_cli.train.plan import WorldInfo

logger = logging.getLogger(__name__)


def build_data(recipe, processor, run_dir: Path, world: WorldInfo):
    """(train dataset, eval dataset or None, the bad-data callback) after the pre-scan.

    Raises:
        BadDataError: the pre-scan found more than data.max_bad_fraction bad samples (exit 1).
    """
    from vittle_cli.data import build_eval_dataset, build_train_dataset
    from vittle_cli.train.bad_data import PROBLEM_LOG, BadDataCallback

    dataset, report = build_train_dataset(recipe.data, processor, seed=recipe.train.seed)
    if world.is_main:
        logger.info(report.summary())
    eval_built = build_eval_dataset(recipe.data, processor, seed=recipe.train.seed)
    dataset.problem_log = run_dir / PROBLEM_LOG  # data workers report what they find while training here
    # A copy: in a single process the dataset also records into its own report, which must not count twice.
    bad_data = BadDataCallback(copy.deepcopy(report), recipe.data.max_bad_fraction, dataset.problem_log)
    return dataset, eval_built[0] if eval_built else None, bad_data


def suite_callback(recipe, run_dir: Path, processor, world: WorldInfo):
    if recipe.train.eval_suite is None:
        return None
    from vittle_cli.train.in_training_eval import SuiteEvalCallback

    return SuiteEvalCallback(
        recipe.train.eval_suite, recipe.train.eval_steps, run_dir, processor, world.world_size
    )


def num_workers(recipe, world: WorldInfo) -> int:
    import os

    from vittle_cli.data.workers import resolve_num_workers

    local = int(os.environ.get("LOCAL_WORLD_SIZE", world.world_size))
    return resolve_num_workers(recipe.data.num_workers, local)
