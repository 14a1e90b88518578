"""train/compat.py: every Trainer internal vittle overrides or calls still looks the way vittle uses it.

These fail loudly when transformers changes one of them (CI also runs this file against the lowest
transformers version pyproject.toml allows: `make test-floor`).
"""

from __future__ import annotations

import pytest
import transformers

from vittle_cli.errors import VittleError
from vittle_cli.train import compat


def test_installed_transformers_matches_every_internal():
    assert compat.check_trainer_internals() == [], transformers.__version__


@pytest.mark.parametrize("name", sorted(compat.TRAINER_INTERNALS))
def test_vittle_overrides_use_the_same_parameters(name):
    """VittleTrainer's own overrides take what Trainer passes them."""
    import inspect

    from vittle_cli.train.trainer import VittleTrainer

    ours = getattr(VittleTrainer, name)
    if ours is getattr(transformers.Trainer, name):
        return  # swapped at run time, not overridden (_get_output_dir)
    assert tuple(inspect.signature(ours).parameters)[1:] == compat.TRAINER_INTERNALS[name]


def test_a_changed_internal_is_named():
    class Renamed(transformers.Trainer):
        def _save(self, directory=None, weights=None):  # what a future transformers might do
            pass

    problems = compat.check_trainer_internals(Renamed)
    assert len(problems) == 1 and "Trainer._save takes ('directory', 'weights')" in problems[0]
    with pytest.raises(VittleError, match=r"changed Trainer internals vittle relies on \(Trainer\._save"):
        compat.require_trainer_internals(Renamed)


def test_a_removed_internal_is_named(monkeypatch):
    class Gone(transformers.Trainer):
        pass

    monkeypatch.delattr(transformers.Trainer, "_get_output_dir")
    assert "Trainer._get_output_dir is gone" in compat.check_trainer_internals(Gone)


def test_staging_output_dir_is_what_save_checkpoint_asks_for():
    class Fake:
        def _get_output_dir(self, trial):
            return "real"

    fake = Fake()
    with compat.staging_output_dir(fake, "staged"):
        assert fake._get_output_dir(trial=None) == "staged"
    assert fake._get_output_dir(None) == "real"
