"""Several sources in one run: weights, limits, per-source settings, epoch size, list overrides."""

from __future__ import annotations

import json
from collections import Counter

import pytest
from PIL import Image

from vittle_cli.data import MixedDataset, build_train_dataset
from vittle_cli.data.mixture import epoch_indices, source_rows
from vittle_cli.recipe import DataSection, DataSourceEntry, load_recipe


@pytest.fixture(scope="module")
def processor(tiny_model_dir):
    from transformers import AutoProcessor

    return AutoProcessor.from_pretrained(tiny_model_dir)


def _llava(n: int, prefix: str, image: str | None = None) -> list[dict]:
    rows = []
    for i in range(n):
        row = {"id": f"{prefix}{i}", "conversations": [
            {"from": "human", "value": ("<image>\n" if image else "") + f"Question {i}?"},
            {"from": "gpt", "value": f"Answer {i}."}]}  # fmt: skip
        if image:
            row["image"] = image
        rows.append(row)
    return rows


@pytest.fixture()
def two_files(tmp_path):
    (tmp_path / "imgs").mkdir()
    Image.new("RGB", (16, 16), (200, 0, 0)).save(tmp_path / "imgs" / "r.png")
    a, b = tmp_path / "a.json", tmp_path / "b.json"
    a.write_text(json.dumps(_llava(10, "a", image="r.png")))
    b.write_text(json.dumps(_llava(6, "b")))
    return a, b


@pytest.mark.parametrize(
    ("n", "weight", "expected"), [(10, 1, 10), (10, 0.5, 5), (10, 2, 20), (10, 1.5, 15), (3, 0.5, 2)]
)
def test_weight_scales_a_source_share_of_an_epoch(n, weight, expected):
    picked = epoch_indices(n, weight, seed=0)
    assert len(picked) == expected == round(weight * n)
    counts = Counter(picked)
    whole = int(weight)
    # without replacement below one whole copy: every sample appears whole or whole+1 times
    assert set(counts.values()) <= {whole, whole + 1} and (whole == 0 or len(counts) == n)


def test_a_mixed_list_of_sources_with_weights(two_files, processor, tmp_path):
    a, b = two_files
    data = DataSection(
        train=[
            DataSourceEntry(path=str(a), weight=0.5, image_root=str(tmp_path / "imgs")),
            DataSourceEntry(path=str(b), weight=2),
        ]
    )
    dataset, report = build_train_dataset(data, processor, seed=3, cache_dir=tmp_path / "cache")
    assert isinstance(dataset, MixedDataset)
    assert len(dataset) == 5 + 12 and dataset.epoch_counts == [5, 12]
    ids = Counter(dataset.ids)
    assert (
        sum(n for i, n in ids.items() if i.startswith("a")) == 5
        and len([i for i in ids if i.startswith("a")]) == 5
    )
    assert all(ids[f"b{i}"] == 2 for i in range(6))
    assert dataset.has_image.count(True) == 5 and len(dataset.lengths) == 17
    assert report.total == 16 and report.counts == {}
    assert source_rows(dataset, report) == [(str(a), 10, 0, 0.5, 5), (str(b), 6, 0, 2.0, 12)]
    item = dataset[0]
    assert "input_ids" in item
    again, _ = build_train_dataset(data, processor, seed=3, cache_dir=tmp_path / "cache")
    assert again.ids == dataset.ids  # seeded


def test_limit_and_shuffle_per_source(two_files, processor, tmp_path):
    a, b = two_files
    first = DataSection(train=[DataSourceEntry(path=str(b), limit=3), str(b)])
    dataset, report = build_train_dataset(first, processor, cache_dir=tmp_path / "cache")
    assert dataset.ids == ["b0", "b1", "b2"] + [f"b{i}" for i in range(6)] and report.total == 9
    shuffled = DataSection(train=[DataSourceEntry(path=str(b), limit=3, shuffle=True)])
    picks = []
    for seed in range(1, 6):  # 3 of 6 rows: any one seed picks the first three with p = 1/20, all five never
        dataset, _ = build_train_dataset(shuffled, processor, seed=seed, cache_dir=tmp_path / "cache")
        assert len(set(dataset.ids)) == 3 and dataset.ids == sorted(dataset.ids)  # read in file order
        picks.append(dataset.ids)
    assert any(ids != ["b0", "b1", "b2"] for ids in picks)
    again, _ = build_train_dataset(shuffled, processor, seed=5, cache_dir=tmp_path / "cache")
    assert again.ids == picks[-1]  # seeded


def test_the_epoch_size_of_a_mix_sets_the_steps_in_the_dry_run(two_files, tmp_path, capsys):
    from cli_runner import run_cli

    a, b = two_files
    recipe = tmp_path / "mix.yaml"
    recipe.write_text(
        "data:\n  image_root: " + str(tmp_path / "imgs") + "\n  train:\n"
        f"    - {{path: {a}, weight: 0.5}}\n    - {{path: {b}, weight: 2}}\n"
        f"output:\n  dir: {tmp_path / 'runs'}\n"
        "train:\n  per_device_batch_size: 4\n  epochs: 1\n"
    )
    assert run_cli(["train", str(recipe), "--dry-run"]) == 0
    out = capsys.readouterr().out
    assert "training samples: 17" in out and "total optimizer steps: 5" in out  # ceil(17 / 4)
    assert "data sources" in out and "0.5" in out and "12" in out


def test_list_overrides_parse_as_lists_and_single_paths_stay_strings(tmp_path):
    recipe = tmp_path / "r.yaml"
    recipe.write_text("data:\n  train: builtin:shapes\n")
    assert load_recipe(recipe, ["data.train=[a.json,b.json]"]).data.train == ["a.json", "b.json"]
    assert load_recipe(recipe, ["data.train=a.json"]).data.train == "a.json"
    mixed = load_recipe(recipe, ["data.train=[{path: a.json, weight: 2}, b.json]"]).data.train
    assert mixed[0] == DataSourceEntry(path="a.json", weight=2) and mixed[1] == "b.json"
    from vittle_cli.recipe import dump_recipe

    resolved = tmp_path / "config.yaml"  # a run's config.yaml loads back to the same mix
    resolved.write_text(dump_recipe(load_recipe(recipe, ["data.train=[{path: a.json, weight: 2}, b.json]"])))
    assert load_recipe(resolved).data.train == mixed
    assert load_recipe(recipe, ["data.eval=[c.json]"]).data.eval == ["c.json"]
    assert load_recipe(recipe, ["output.report_to=none"]).output.report_to == ["none"]  # unchanged rule


def test_a_bad_source_entry_names_its_key(tmp_path):
    from vittle_cli.errors import RecipeError

    recipe = tmp_path / "r.yaml"
    recipe.write_text("data:\n  train:\n    - {path: a.json, weight: 0}\n")
    with pytest.raises(RecipeError, match=r"data\.train: entry 0: weight: Input should be greater than 0"):
        load_recipe(recipe)
