"""The training dataset: a source's rows, checked up front, rendered lazily into model inputs.

    dataset, report = build_train_dataset(recipe.data, processor, seed=recipe.train.seed)
    collator = DataCollator(processor)

Cheap problems (missing or escaping image paths, empty conversations, placeholder/image mismatches) are
found when the dataset is built; decoding and rendering problems appear in __getitem__. With
data.on_bad_sample=skip a bad sample is replaced by the next good one (deterministically) and counted in
the shared DataReport; with "error" the first one raises a DataError naming the sample.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch
from torch.utils.data import Dataset

from vittle_cli.data.conversation import Conversation, check_image_paths, load_images, parse_row, sample_id
from vittle_cli.data.render import image_token_estimate, render_conversation, template_text
from vittle_cli.data.report import DataReport, SampleProblem, problem_error
from vittle_cli.data.sources import Source, load_source
from vittle_cli.errors import DataError

LENGTH_CALIBRATION_SAMPLES = 64  # rows tokenised to turn character counts into token estimates


class TrainDataset(Dataset):
    """Map-style dataset of rendered samples: dicts of 1-D input_ids/labels (+ pixel_values etc.).

    Attributes:
        lengths: cheap token-length estimates per sample (for length-grouped sampling).
        has_image: whether each sample has at least one image (for modality-grouped sampling).
        report: the shared DataReport of this source.
        seed: the seed samplers built on this dataset should use by default.
    """

    def __init__(
        self,
        source: Source,
        processor: Any,
        rows: list[int],
        ids: list[str],
        lengths: list[int],
        has_image: list[bool],
        report: DataReport,
        max_length: int,
        on_bad_sample: str,
        seed: int,
    ):
        self.source = source
        self.processor = processor
        self.rows = rows
        self.ids = ids
        self.lengths = lengths
        self.has_image = has_image
        self.report = report
        self.max_length = max_length
        self.on_bad_sample = on_bad_sample
        self.seed = seed
        self._bad: set[int] = set()  # indices found bad lazily: counted once, skipped from then on
        self._truncated: set[int] = set()  # counted once, not once per epoch

    def __len__(self) -> int:
        return len(self.rows)

    def sample_id(self, index: int) -> str:
        return self.ids[index]

    def conversation(self, index: int) -> Conversation:
        """The parsed (not rendered) conversation of sample `index`, image paths resolved."""
        conv = parse_row(self.source.row(self.rows[index]), self.source.form, self.rows[index])
        check_image_paths(conv, self.source.image_root)
        return conv

    def render(self, index: int) -> dict[str, torch.Tensor]:
        """Render sample `index`, raising SampleProblem if it cannot be used."""
        conv = self.conversation(index)
        rendered = render_conversation(self.processor, conv.messages, load_images(conv), self.max_length)
        if rendered.truncated and index not in self._truncated:
            self._truncated.add(index)
            if self.report.record("truncated", conv.id):
                self.report.warn(["truncated"])
        return rendered.tensors

    def __getitem__(self, index: int) -> dict[str, torch.Tensor]:
        n = len(self.rows)
        for step in range(n):
            i = (index + step) % n  # skip mode: the next good sample stands in, the same one every time
            if i in self._bad:
                continue
            try:
                return self.render(i)
            except SampleProblem as problem:
                if self.on_bad_sample == "error":
                    raise problem_error(self.ids[i], problem) from None
                self._bad.add(i)
                if self.report.record(problem.kind, self.ids[i]):
                    self.report.warn([problem.kind])
        raise DataError(f"{self.report.source}: every sample is bad; see the warnings above and fix the data")


def _length_model(processor, convs: list[Conversation]) -> tuple[float, float]:
    """(tokens per character of message text, template tokens per message), measured on a few samples
    rendered with the chat template (images counted separately)."""
    tok = processor.tokenizer
    texts = [" ".join(c.get("text") or "" for m in conv.messages for c in m["content"]) for conv in convs]
    chars = sum(len(t) for t in texts)
    if not chars:
        return 0.25, 0.0
    ratio = sum(len(ids) for ids in tok(texts, add_special_tokens=False)["input_ids"]) / chars
    try:
        rendered = [template_text(processor, conv.messages) for conv in convs]
    except SampleProblem:  # such samples are counted when they are read; the estimate just gets cruder
        return ratio, 0.0
    total = sum(len(ids) for ids in tok(rendered)["input_ids"])
    n_messages = sum(len(conv.messages) for conv in convs)
    return ratio, max(0.0, (total - ratio * chars) / n_messages)


def build_dataset(
    spec: str, data: Any, processor: Any, seed: int = 0, cache_dir: Path | None = None
) -> tuple[TrainDataset, DataReport]:
    """Open `spec`, run the cheap checks on every sample and return the lazy dataset with its report.

    Args:
        spec: a data source (data.train / data.eval form).
        data: the recipe's data section (image_root, max_length, on_bad_sample, limit).
        processor: the model's processor (chat template, tokenizer, image processor).
        seed: default seed for samplers built on this dataset.
        cache_dir: cache folder for `datasets` (default: the vittle cache).

    Raises:
        DataError: unusable source; with on_bad_sample=error, the first bad sample.
    """
    if cache_dir is None:
        from vittle_cli.model.builtin import cache_root

        cache_dir = cache_root() / "datasets"
    source = load_source(spec, data.image_root, cache_dir)
    total = len(source) if data.limit is None else min(data.limit, len(source))
    report = DataReport(source=spec, total=total)
    rows, ids, chars, n_messages, n_images, sample_convs = [], [], [], [], [], []
    first_error: DataError | None = None
    for index, row in enumerate(source.iter_rows()):
        if index >= total:
            break
        try:
            conv = parse_row(row, source.form, index)
            check_image_paths(conv, source.image_root)
        except SampleProblem as problem:
            sid = sample_id(row, index)
            report.record(problem.kind, sid)
            first_error = first_error or problem_error(sid, problem)
            continue
        rows.append(index)
        ids.append(conv.id)
        chars.append(conv.n_chars)
        n_messages.append(len(conv.messages))
        n_images.append(len(conv.images))
        if len(sample_convs) < LENGTH_CALIBRATION_SAMPLES:
            sample_convs.append(conv)
    if first_error is not None and data.on_bad_sample == "error":
        others = report.skipped - 1
        raise DataError(str(first_error) + (f" ({others} more bad samples)" if others else ""))
    if report.counts:
        report.warn()
    if not rows:
        raise DataError(f"data source {spec}: no usable samples; fix the problems above")
    ratio, per_message = _length_model(processor, sample_convs)
    per_image = image_token_estimate(processor) if any(n_images) else 0
    lengths = [
        round(c * ratio + m * per_message) + n * per_image
        for c, m, n in zip(chars, n_messages, n_images, strict=True)
    ]
    has_image = [n > 0 for n in n_images]
    dataset = TrainDataset(
        source, processor, rows, ids, lengths, has_image, report, data.max_length, data.on_bad_sample, seed
    )
    return dataset, report


def build_train_dataset(
    data: Any, processor: Any, seed: int = 0, cache_dir: Path | None = None
) -> tuple[TrainDataset, DataReport]:
    """The training set of a recipe's data section (data.train). See build_dataset."""
    return build_dataset(data.train, data, processor, seed, cache_dir)
