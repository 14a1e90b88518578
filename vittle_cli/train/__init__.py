"""Training: the Vittle Trainer, run directories, checkpoints, resume, logging and the launcher.

Entry points: `run_train(recipe, ...)` (vittle_cli.train.run) trains in this process;
`run_train_command(...)` (vittle_cli.train.entry) is what `vittle train` calls (dry run, re-launch, train).
Import them from their modules: this package must stay cheap to import.
"""
