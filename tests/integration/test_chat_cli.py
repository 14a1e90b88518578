"""`vittle chat` through the in-process CLI on builtin:tiny-llava (random weights: answers are noise, but
they must be the answers the eval engine gives, and the shifted image must be the registry's)."""

import io
import random

import pytest

from tests.cli_runner import run_cli
from vittle_cli.data.shapes_draw import draw_image, place_objects, sample_objects
from vittle_cli.eval.chat import parse_visual_shift, questions_from, run_chat, shift_image

Q = "Is there a red circle in the image?"


@pytest.fixture(scope="module")
def image_path(tmp_path_factory):
    rng = random.Random(0)
    _, objects = sample_objects(rng)
    path = tmp_path_factory.mktemp("chat") / "shapes.png"
    draw_image(rng, place_objects(rng, objects)).save(path)
    return path


@pytest.fixture(scope="module")
def vittle_dir(tiny_vittle_model_dir):
    return tiny_vittle_model_dir


@pytest.mark.slow
def test_once_with_shift_matches_the_eval_engine(vittle_dir, image_path, capsys):
    from vittle_cli.eval.chat import load_image
    from vittle_cli.eval.generate import GenerationRequest, generate_one_at_a_time
    from vittle_cli.model.attach import get_bottleneck
    from vittle_cli.model.checkpoint import load_vittle_model

    args = ["chat", "-m", str(vittle_dir), "--image", str(image_path), "-q", Q, "--shift", "glass_blur@5"]
    assert run_cli(args + ["--max-new-tokens", "6", "--device", "cpu"]) == 0
    out = capsys.readouterr().out
    assert "Vittle bottleneck on (prior F)" in out and f"Q: {Q}" in out
    model, processor = load_vittle_model(vittle_dir)
    assert get_bottleneck(model) is not None
    clean = load_image(image_path)
    shifted = shift_image(clean, "glass_blur@5")
    assert shifted.tobytes() != clean.tobytes()
    ref = generate_one_at_a_time(
        model,
        processor,
        [GenerationRequest(clean, Q), GenerationRequest(shifted, Q)],
        max_new_tokens=6,
    )
    assert f"A (clean): {ref[0]}" in out
    assert f"A (glass_blur@5): {ref[1]}" in out


@pytest.mark.slow
def test_questions_from_stdin_until_eof(tiny_model_dir, image_path):
    from rich.console import Console

    stdin = io.StringIO("Is there a square?\n\n  What is in the image?  \n")
    got = run_chat(
        str(tiny_model_dir),
        image_path,
        stdin=stdin,
        max_new_tokens=3,
        device="cpu",
        console=Console(quiet=True),
    )
    assert [g["question"] for g in got] == ["Is there a square?", "What is in the image?"]
    assert all("shifted" not in g for g in got)


def test_stdin_without_terminal_never_prompts(capsys):
    assert list(questions_from(io.StringIO("a\nb"), ask=False)) == ["a", "b"]
    assert capsys.readouterr().out == ""
    assert list(questions_from(io.StringIO(""), ask=False)) == []


def test_shift_is_deterministic_and_parsed(image_path):
    from vittle_cli.eval.chat import load_image

    img = load_image(image_path)
    assert shift_image(img, "snow@2").tobytes() == shift_image(img, "snow@2").tobytes()
    assert parse_visual_shift("snow") == ("snow", 3)
    assert parse_visual_shift("gaussian_noise@5") == ("gaussian_noise", 5)


@pytest.mark.parametrize(
    "extra, needle",
    [
        (["--shift", "keyboard@3"], "unknown visual perturbation 'keyboard'"),
        (["--shift", "snow@9"], "severity must be 1-5"),
        (["--shift", "snow@x"], "must be a number"),
        (["--image", "missing.png"], "no such file"),
        (["--max-new-tokens", "0"], "at least 1"),
    ],
)
def test_bad_input_is_one_line(tiny_model_dir, image_path, extra, needle, capsys):
    args = ["chat", "-m", str(tiny_model_dir), "--image", str(image_path), "-q", Q]
    args = args[:3] + args[5:] + extra if extra[0] == "--image" else args + extra
    assert run_cli(args) == 2
    err = capsys.readouterr().err
    assert needle in err and "Traceback" not in err


def test_not_an_image(tiny_model_dir, tmp_path, capsys):
    bad = tmp_path / "x.png"
    bad.write_text("not an image")
    assert run_cli(["chat", "-m", str(tiny_model_dir), "--image", str(bad), "-q", Q]) == 2
    assert "not a readable image" in capsys.readouterr().err
