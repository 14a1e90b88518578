"""A suite naming an unknown perturbation fails before anything is loaded (exit 2, with did-you-mean), for
every shipped suite, whatever its task family."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml
from cli_runner import run_cli

SUITES = sorted((Path(__file__).resolve().parents[2] / "recipes" / "suites").glob("*.yaml"))


def _mangled(suite: Path, tmp_path: Path) -> tuple[Path, str]:
    """A copy of `suite` whose first named perturbation lost its last letter."""
    doc = yaml.safe_load(suite.read_text(encoding="utf-8"))
    for variant in doc["variants"]:
        for kind in ("visual", "text"):
            spec = variant.get(kind)
            if isinstance(spec, dict) and spec.get("name"):
                good = spec["name"]
                spec["name"] = good[:-1]
                variant.pop("name", None)  # an explicit variant name may spell the old perturbation
                out = tmp_path / suite.name
                out.write_text(yaml.safe_dump(doc), encoding="utf-8")
                return out, good
    pytest.skip(f"{suite.name} has no perturbation")


@pytest.mark.parametrize("suite", SUITES, ids=lambda p: p.stem)
def test_unknown_perturbation_fails_before_loading_anything(suite, tmp_path, monkeypatch, capsys):
    import vittle_cli.model.checkpoint as checkpoint

    def must_not_load(*a, **k):
        raise AssertionError("the model was loaded before the suite was validated")

    monkeypatch.setattr(checkpoint, "load_vittle_model", must_not_load)
    bad, good = _mangled(suite, tmp_path)
    args = ["eval", "--suite", str(bad), "--model", "builtin:tiny-llava", "--out", str(tmp_path / "ev")]
    assert run_cli(args) == 2
    err = capsys.readouterr().err
    assert f"did you mean {good!r}" in err, err
    assert not (tmp_path / "ev" / "predictions.jsonl").exists()
