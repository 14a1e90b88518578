"""data.max_bad_fraction through `vittle train`: the pre-scan stop (exit 1, table), the dry-run check (exit 2),
the mid-run stop on corrupt images (checkpoint + exit 1), and the report of a run below the limit."""

from __future__ import annotations

import json

import pytest
from cli_runner import run_cli
from PIL import Image

pytestmark = pytest.mark.slow

FAST = [
    "train.logging_steps=1",
    "train.per_device_batch_size=4",
    "output.save_steps=100",
    "data.num_workers=0",
]


def _rows(n_good: int, bad_image: str | None, n_bad: int) -> list[dict]:
    def row(i, image):
        return {"id": f"s{i}", "image": image, "conversations": [
            {"from": "human", "value": "<image>\nIs there a red square?"}, {"from": "gpt", "value": "Yes"}]}  # fmt: skip

    return [row(i, "good.png") for i in range(n_good)] + [row(n_good + i, bad_image) for i in range(n_bad)]


@pytest.fixture()
def data_dir(tmp_path):
    Image.new("RGB", (32, 32), (220, 10, 10)).save(tmp_path / "good.png")
    (tmp_path / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\n not an image")
    return tmp_path


def _train(data_dir, rows, *extra):
    path = data_dir / "data.json"
    path.write_text(json.dumps(rows))
    return run_cli(["train", "recipes/tiny.yaml", f"data.train={path}", f"output.dir={data_dir / 'runs'}",
                    "output.run_name=r", *FAST, *extra])  # fmt: skip


def test_too_many_bad_samples_stop_before_step_one_with_the_table(data_dir, capsys):
    assert _train(data_dir, _rows(1, "missing.png", 19), "train.max_steps=2") == 1
    err = capsys.readouterr().err
    assert "19 of 20 samples are bad" in err and "data.max_bad_fraction=0.01" in err
    assert "missing_image" in err and "s1, s2, s3" in err
    assert not (data_dir / "runs" / "r" / "final").exists()


def test_the_dry_run_runs_the_pre_scan_and_exits_2(data_dir, capsys):
    assert _train(data_dir, _rows(1, "missing.png", 19), "--dry-run") == 2
    err = capsys.readouterr().err
    assert "--dry-run" in err and "19 of 20 samples are bad" in err and "missing_image" in err
    capsys.readouterr()
    assert _train(data_dir, _rows(1, "missing.png", 19), "--dry-run", "data.max_bad_fraction=0.99") == 0


def test_corrupt_images_found_while_training_stop_the_run_with_a_checkpoint(data_dir, capsys):
    code = _train(data_dir, _rows(10, "broken.png", 2), "train.max_steps=6")
    err = capsys.readouterr().err
    assert code == 1 and "during training" in err and "corrupt_image" in err
    run = data_dir / "runs" / "r"
    assert list(run.glob("checkpoint-*")) and not (run / "final").exists()
    report = json.loads((run / "data_report.json").read_text())
    assert report["counts"] == {"corrupt_image": 2} and report["total"] == 12


def test_below_the_limit_the_table_prints_at_the_end_and_is_saved(data_dir, capsys):
    code = _train(data_dir, _rows(10, "broken.png", 2), "train.max_steps=6", "data.max_bad_fraction=0.5")
    err = capsys.readouterr().err
    assert code == 0 and "2 of 12 samples bad" in err and "corrupt_image" in err
    report = json.loads((data_dir / "runs" / "r" / "data_report.json").read_text())
    assert report["bad"] == 2 and report["examples"]["corrupt_image"] == ["s10", "s11"]
