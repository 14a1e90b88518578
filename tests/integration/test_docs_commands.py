"""Every `vittle` command in the code blocks of README.md and docs/getting-started.md runs, in order, through
the same CLI, at tiny sizes, so the docs stay true.

Substitutions (and nothing else): `vittle train` gets a few-step override; a command naming a 7B/13B recipe
runs with --dry-run and `data.train=builtin:shapes`; an eval of such a run (no weights, no POPE files here)
is not run, but its --model must be the run dir that recipe's dry run printed. A block written as
`$ vittle ...` followed by `error: ...` must fail with exit 2 and exactly that line. Synopsis lines
(`vittle train RECIPE [key=value ...]`) only check that the command exists (`--help`).
"""

from __future__ import annotations

import re
import shlex
from pathlib import Path

import pytest
from cli_runner import run_cli

REPO = Path(__file__).resolve().parents[2]
DOCS = ("README.md", "docs/getting-started.md")
TINY_TRAIN = ["train.max_steps=3", "data.limit=12", "train.per_device_batch_size=4", "output.save_steps=1000",
              "output.report_to=[]"]  # fmt: skip
BIG_RECIPE = re.compile(r"(7b|13b|2b)_", re.I)
PLACEHOLDER = re.compile(r"\b[A-Z][A-Z_]{2,}\b|\.\.\.|\|")


def doc_commands(text: str) -> list[tuple[str, str | None]]:
    """(command, expected error line or None) for every `vittle` line of the indented or fenced blocks."""
    lines = text.splitlines()
    out: list[tuple[str, str | None]] = []
    in_fence = False
    i = 0
    while i < len(lines):
        raw = lines[i]
        if raw.strip().startswith("```"):
            in_fence = not in_fence
            i += 1
            continue
        line = raw.strip() if in_fence or raw.startswith("    ") else ""
        line = line[2:] if line.startswith("$ ") else line
        if not line.startswith("vittle "):
            i += 1
            continue
        while line.endswith("\\") and i + 1 < len(lines):  # continuation lines
            i += 1
            line = line[:-1].rstrip() + " " + lines[i].strip()
        expected = None
        if i + 1 < len(lines) and lines[i + 1].strip().startswith("error:"):
            expected = lines[i + 1].strip()
        out.append((line.split("  #")[0].split(" # ")[0].strip(), expected))
        i += 1
    return out


def _run(args: list[str], capsys) -> tuple[int, str, str]:
    capsys.readouterr()
    code = run_cli(args)
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def test_the_docs_name_commands():
    for doc in DOCS:
        commands = [c for c, _ in doc_commands((REPO / doc).read_text(encoding="utf-8"))]
        assert len(commands) >= 4, doc


@pytest.mark.slow
@pytest.mark.parametrize("doc", DOCS)
def test_every_command_of_the_doc_runs(doc, tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv(
        "HF_HUB_OFFLINE", "1"
    )  # a 7B dry run reads no config; the plan comes from vittle's table
    (tmp_path / "recipes").symlink_to(REPO / "recipes")  # the docs run from the repository root
    dry_run_dirs: list[str] = []
    for command, expected in doc_commands((REPO / doc).read_text(encoding="utf-8")):
        synopsis = re.split(r"\s{3,}", command)[0]  # a table row: command, then its description
        args = shlex.split(synopsis)[1:]
        if synopsis != command or PLACEHOLDER.search(command):  # a synopsis: the command exists
            words = [w for w in args if re.fullmatch(r"[a-z]+", w)][:2]
            assert _run([*words, "--help"], capsys)[0] == 0, command
            continue
        if args[0] == "eval" and not Path(args[args.index("--model") + 1]).exists():
            model = args[args.index("--model") + 1].rstrip("/")
            assert model in dry_run_dirs, f"{doc}: {command}: --model is not a run dir the docs create"
            continue
        if args[0] == "train" and any(BIG_RECIPE.search(a) for a in args):
            args = [a for a in args if not a.startswith("data.")] + ["data.train=builtin:shapes", "--dry-run"]
        elif args[0] == "train":
            args += TINY_TRAIN
        elif args[0] == "eval":
            args += ["--limit", "2", "--batch-size", "4"]
        code, out, err = _run(args, capsys)
        if expected is not None:
            assert code == 2 and expected in err.splitlines(), f"{doc}: {command}\n{err}"
            continue
        assert code == 0, f"{doc}: {command} (run as {shlex.join(args)}) exited {code}\n{err[-3000:]}"
        dry_run_dirs += re.findall(r"^run dir: (\S+)$", out, flags=re.M)
