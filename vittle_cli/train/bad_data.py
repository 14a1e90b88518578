"""Bad data while training: problems found in the data workers count toward data.max_bad_fraction.

Workers (and every rank) append the problems they meet to `bad_samples.jsonl` in the run directory
(TrainDataset.problem_log); this callback reads new lines after each step, counts each (source, sample)
once on top of the pre-scan's report, and when the share of bad samples crosses the limit asks the Trainer
to save a checkpoint and stop. run_train then raises BadDataError (exit 1). All ranks take the decision
together, so none is left waiting in a collective.
"""

from __future__ import annotations

import json
from pathlib import Path

from transformers import TrainerCallback

from vittle_cli.data.report import BadDataError, DataReport, SampleProblem

PROBLEM_LOG = "bad_samples.jsonl"
DATA_REPORT = "data_report.json"


class BadDataCallback(TrainerCallback):
    """Counts problems found during training and stops the run above `max_fraction`."""

    def __init__(self, report: DataReport, max_fraction: float, log_path: Path) -> None:
        self.report = report
        self.max_fraction = max_fraction
        self.log_path = Path(log_path)
        self._offset = 0
        self._seen: set[tuple[str, str]] = set()
        self.exceeded = False

    def read_new_problems(self) -> None:
        """Add the problems logged since the last call (each sample once)."""
        if not self.log_path.is_file():
            return
        with self.log_path.open("r", encoding="utf-8") as f:
            f.seek(self._offset)
            chunk = f.read()
        complete = chunk[: chunk.rfind("\n") + 1]  # a line still being written is read next time
        self._offset += len(complete.encode("utf-8"))
        for line in complete.splitlines():
            try:
                event = json.loads(line)
            except json.JSONDecodeError:
                continue
            key = (event.get("source", ""), event.get("id", ""))
            if key in self._seen or event.get("kind") == "truncated":
                continue
            self._seen.add(key)
            problem = SampleProblem(event["kind"], event.get("detail", ""))
            self.report.record(event["kind"], str(event.get("id")), problem)

    def _all_ranks_agree(self, over: bool) -> bool:
        import torch

        dist = torch.distributed
        if not (dist.is_available() and dist.is_initialized()) or dist.get_world_size() == 1:
            return over
        flag = torch.tensor([1.0 if over else 0.0])
        if dist.get_backend() == "nccl":
            flag = flag.cuda()
        dist.all_reduce(flag, op=dist.ReduceOp.MAX)
        return bool(flag.item() > 0)

    def on_step_end(self, args, state, control, **kwargs):
        self.read_new_problems()
        over = self.report.bad_fraction > self.max_fraction
        if self._all_ranks_agree(over):
            self.exceeded = True
            control.should_save = True
            control.should_training_stop = True
        return control

    def error(self) -> BadDataError:
        return BadDataError(self.report, self.max_fraction, "during training")


def write_data_report(run_dir: Path, report: DataReport, console=None) -> None:
    """Save the data report in the run directory; print the per-reason table (to `console`, default stderr)
    when there were problems."""
    from vittle_cli.fileio import write_text_atomic

    write_text_atomic(Path(run_dir) / DATA_REPORT, json.dumps(report.to_json(), indent=2) + "\n")
    if report.counts:
        from rich.console import Console
        from rich.markup import escape

        console = console or Console(stderr=True)

        console.print(
            f"data: {report.skipped} of {report.total} samples bad ({report.bad_fraction:.2%}, "
            f"limit data.max_bad_fraction) — saved in {DATA_REPORT}\n{escape(report.table())}",
            highlight=False,
        )
