"""Run vittle's console entry point in-process (it maps VittleError to exit codes and always exits, like the
installed command) and return the exit code."""

import pytest

from vittle_cli.cli import main


def run_cli(args) -> int:
    with pytest.raises(SystemExit) as info:
        main(list(args))
    return int(info.value.code or 0)


def interrupt_training_at(monkeypatch, global_step: int):
    """Make the next `vittle train` raise KeyboardInterrupt in the training step that starts at `global_step`
    (as Ctrl-C would), after the steps before it have run normally. Returns the original method, to put back
    before a resume."""
    from vittle_cli.train.trainer import VittleTrainer

    original = VittleTrainer.training_step

    def stop_here(self, *a, **k):
        if self.state.global_step == global_step:
            raise KeyboardInterrupt
        return original(self, *a, **k)

    monkeypatch.setattr(VittleTrainer, "training_step", stop_here)
    return original
